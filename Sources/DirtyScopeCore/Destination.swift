import DirtyScopeModel
import KVM
#if canImport(Glibc)
import Glibc
#endif

/// The consumer's side of a pre-copy migration: a sparse copy of every data slot,
/// plus which pages have ever been copied. Pages cost host memory only once copied.
final class Destination {
    let memory: [GuestMemory]
    /// Pages copied at least once, per slot.
    private(set) var copied: [DirtyBitmap]
    let pageSize = PageSize.system

    init(slots: [MemorySlot]) throws(KVMError) {
        var m: [GuestMemory] = []
        for (i, s) in slots.enumerated() {
            m.append(try GuestMemory(bytes: s.byteCount, what: "destination of memslot \(i)"))
        }
        memory = m
        copied = slots.map { DirtyBitmap(pageCount: $0.pageCount) }
    }

    /// How a reported page compares with its last copy.
    enum Verdict { case changed, falsePositive, initial }

    /// Classifies page `page` of `slot` against the source, just before it is copied:
    /// unchanged since the last copy is a false positive; unchanged and never copied is
    /// an initial report (INITIALLY_SET); anything else changed. A page never copied is
    /// zero here, so its destination is not read (that would fault it in for nothing).
    @inline(__always)
    func classify(slot: Int, page: Int, source: GuestMemory, method: FalsePositiveMethod) -> Verdict {
        let src = source.page(page)
        let wasCopied = copied[slot][page]
        let same: Bool
        switch method {
        case .stamp:
            // The guest stores its stamp as one aligned 8-byte write at offset 0.
            let stamp = src.load(as: UInt64.self)
            same = stamp == (wasCopied ? memory[slot].page(page).load(as: UInt64.self) : 0)
        case .content:
            same = wasCopied ? memcmp(src, memory[slot].page(page), pageSize) == 0 : isZero(src)
        }
        if !same { return .changed }
        return wasCopied ? .falsePositive : .initial
    }

    private func isZero(_ p: UnsafeMutableRawPointer) -> Bool {
        let words = p.assumingMemoryBound(to: UInt64.self)
        for i in 0..<(pageSize / 8) where words[i] != 0 { return false }
        return true
    }

    /// Copies page `page` of `slot` from the source.
    @inline(__always)
    func copy(slot: Int, page: Int, source: GuestMemory) {
        // Safe: both pointers come from GuestMemory.page (bounds-checked), whole pages apart.
        memcpy(memory[slot].page(page), source.page(page), pageSize)
        copied[slot][page] = true
    }

    /// Compares every page of the source slot with its copy (skipping pages resident in
    /// neither, which are zero on both sides), re-copies the ones that differ and returns
    /// them, and how many pages were compared; `every256Pages` runs between pages (the
    /// session's mid-round commands).
    func verify(slot: Int, source: GuestMemory, every256Pages: () -> Void = {}) -> (differing: DirtyBitmap, compared: Int) {
        var candidates = source.residentPages()
        candidates.formUnion(memory[slot].residentPages())
        var differing = DirtyBitmap(pageCount: candidates.pageCount)
        var n = 0
        candidates.forEachSetPage { page in
            n &+= 1
            if n & 255 == 0 { every256Pages() }
            if memcmp(source.page(page), memory[slot].page(page), pageSize) != 0 {
                differing[page] = true
                copy(slot: slot, page: page, source: source)
            }
        }
        return (differing, candidates.count)
    }

    /// Host memory the destination holds, in pages.
    var residentPages: Int { memory.reduce(0) { $0 + $1.residentPages().count } }
}

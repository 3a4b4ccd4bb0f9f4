import DirtyScopeModel
import DirtyScopeRecording
import KVM
import Pages
#if canImport(Glibc)
import Glibc
#endif

/// Where the consumer's copies go, and what each reported page is judged against: a
/// copy in this process (`Destination`), or a migration stream to another one
/// (`StreamSink`). A send can fail (a socket breaks); the harvester ends the round and
/// says why, and the guest runs on.
///
/// Three parts, each kept where it can be trusted: `send` is the copy; `classify` is the
/// ground truth, always on the source side (the in-memory copy itself, or the
/// fingerprints of what the stream carried); `verify` finds, with the vCPUs stopped, what
/// the source holds that was never sent (a memcmp against the copy, or fingerprints; the
/// stream's switch-over compares hashes across it as well). Used generically, so each
/// sink's calls are specialised into the copy loop.
protocol PageSink: AnyObject {
    /// How page `page` of data slot `slot`, as the source holds it now, compares with
    /// what was last sent of it. Read just before the page is sent.
    func classify(slot: Int, page: Int, source: GuestMemory, method: FalsePositiveMethod) -> Destination.Verdict
    /// Sends page `page` of data slot `slot` as it is now.
    func send(slot: Int, page: Int, source: GuestMemory) throws(MigrationError)
    /// Hands on what is queued; called at the end of every chunk's copy.
    func flush() throws(MigrationError)
    /// With the vCPUs stopped: the pages of `slot` whose source differs from what was last
    /// sent (written and never reported), sent again; and how many pages were compared.
    /// `every256Pages` runs between pages (the session's mid-round commands).
    func verify(slot: Int, source: GuestMemory, every256Pages: () -> Void) throws(MigrationError) -> (differing: DirtyBitmap, compared: Int)
}

extension Destination: PageSink {
    @inline(__always)
    func send(slot: Int, page: Int, source: GuestMemory) { copy(slot: slot, page: page, source: source) }
    @inline(__always)
    func flush() {}
}

/// What the source knows of every page it sent: a fingerprint of the page at its last
/// send (its stamp, for a guest that stamps; else a hash of its bytes) and whether it was
/// ever sent. False positives and missed pages are judged against it, whatever the sink,
/// so the ground truth stays on the source side. Fingerprints are kept in chunks made as
/// pages are first sent: a large sparse guest costs only where it was written.
final class GroundTruth {
    let method: FalsePositiveMethod
    let pageSize: Int
    private var fingerprints: [SparseWords]
    /// Pages sent at least once, per slot.
    private(set) var sent: [DirtyBitmap]

    init(slots: [MemorySlot], method: FalsePositiveMethod) {
        self.method = method
        pageSize = PageSize.system
        fingerprints = slots.map { SparseWords(pages: $0.pageCount) }
        sent = slots.map { DirtyBitmap(pageCount: $0.pageCount) }
    }

    /// A page's fingerprint now.
    @inline(__always)
    func fingerprint(_ page: UnsafeRawPointer) -> UInt64 {
        switch method {
        case .stamp: return page.load(as: UInt64.self)
        case .content: return MigrationWire.hash(page, bytes: pageSize)
        }
    }

    /// How a reported page compares with its last send: unchanged is a false positive,
    /// unchanged and never sent an initial report (a page never written is zero: its stamp
    /// 0, its content the zero page's).
    @inline(__always)
    func classify(slot: Int, page: Int, fingerprint now: UInt64, zeroFingerprint: UInt64) -> Destination.Verdict {
        let wasSent = sent[slot][page]
        let last = wasSent ? fingerprints[slot][page] : zeroFingerprint
        guard now == last else { return .changed }
        return wasSent ? .falsePositive : .initial
    }

    /// Notes that page `page` of `slot` was sent with `fingerprint`.
    @inline(__always)
    func noteSent(slot: Int, page: Int, fingerprint: UInt64) {
        fingerprints[slot][page] = fingerprint
        sent[slot][page] = true
    }

    /// The fingerprint of a zero page for this method.
    var zeroFingerprint: UInt64 { method == .stamp ? 0 : MigrationWire.zeroHash(bytes: pageSize) }

    /// Pages of `slot` whose fingerprint now differs from their last send (or that were
    /// written and never sent): changed but never reported, found with the vCPUs stopped.
    func changedSinceSent(slot: Int, source: GuestMemory, every256Pages: () -> Void = {}) -> (changed: DirtyBitmap, compared: Int) {
        var changed = DirtyBitmap(pageCount: source.pageCount)
        let zero = zeroFingerprint
        var candidates = source.residentPages()
        candidates.formUnion(sent[slot])
        var n = 0
        candidates.forEachSetPage { page in
            n &+= 1
            if n & 255 == 0 { every256Pages() }
            let now = fingerprint(source.page(page))
            let last = sent[slot][page] ? fingerprints[slot][page] : zero
            if now != last { changed[page] = true }
        }
        return (changed, candidates.count)
    }

    /// Pages of `slot` ever sent.
    func sentCount(slot: Int) -> Int { sent[slot].count }
}

/// The migration stream as a sink: each page goes to the `MigrationSender` (which keeps
/// its hash as sent, for the switch-over), and its fingerprint as sent to the ground truth.
final class StreamSink: PageSink {
    let sender: MigrationSender
    let truth: GroundTruth
    private let zeroFingerprint: UInt64
    /// The user gave up (harvest thread only): the next send fails.
    var cancelled = false

    init(_ sender: MigrationSender, truth: GroundTruth) {
        self.sender = sender
        self.truth = truth
        zeroFingerprint = truth.zeroFingerprint
    }

    @inline(__always)
    func classify(slot: Int, page: Int, source: GuestMemory, method: FalsePositiveMethod) -> Destination.Verdict {
        truth.classify(slot: slot, page: page, fingerprint: truth.fingerprint(source.page(page)), zeroFingerprint: zeroFingerprint)
    }

    @inline(__always)
    func send(slot: Int, page: Int, source: GuestMemory) throws(MigrationError) {
        if cancelled { throw MigrationError("cancelled by the user") }
        let sent = try sender.send(slot: UInt32(slot), page: page)
        truth.noteSent(slot: slot, page: page, fingerprint: truth.method == .stamp ? sent.stamp : sent.hash)
    }

    func flush() throws(MigrationError) { try sender.flush() }

    func verify(slot: Int, source: GuestMemory, every256Pages: () -> Void) throws(MigrationError) -> (differing: DirtyBitmap, compared: Int) {
        let (changed, compared) = truth.changedSinceSent(slot: slot, source: source, every256Pages: every256Pages)
        var failure: MigrationError?
        changed.forEachSetPage { page in
            guard failure == nil else { return }
            do throws(MigrationError) { try send(slot: slot, page: page, source: source) } catch { failure = error }
        }
        if let failure { throw failure }
        try sender.flush()
        return (changed, compared)
    }
}

/// One word per page, made in chunks of 4096 pages as pages are first set; every word of
/// a chunk never made reads 0 (0 is a value like any other here).
struct SparseWords {
    static let chunkShift = 12
    private var chunks: [UnsafeMutablePointer<UInt64>?]
    private let owner: Owner

    /// Frees the chunks when the last copy of the table goes.
    private final class Owner {
        var chunks: [UnsafeMutablePointer<UInt64>] = []
        deinit { for c in chunks { c.deallocate() } }
    }

    init(pages: Int) {
        chunks = Array(repeating: nil, count: (pages + (1 << Self.chunkShift) - 1) >> Self.chunkShift)
        owner = Owner()
    }

    subscript(page: Int) -> UInt64 {
        @inline(__always) get {
            guard let chunk = chunks[page >> Self.chunkShift] else { return 0 }
            return chunk[page & ((1 << Self.chunkShift) - 1)]
        }
        @inline(__always) set {
            let c = page >> Self.chunkShift
            if chunks[c] == nil {
                let chunk = UnsafeMutablePointer<UInt64>.allocate(capacity: 1 << Self.chunkShift)
                chunk.initialize(repeating: 0, count: 1 << Self.chunkShift)
                owner.chunks.append(chunk)
                chunks[c] = chunk
            }
            // Safe: the index is below the chunk's 4096 words; the chunk lives as long as `owner`.
            chunks[c]![page & ((1 << Self.chunkShift) - 1)] = newValue
        }
    }
}

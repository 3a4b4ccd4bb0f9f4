import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// A vCPU's dirty ring (api.rst 8.29): an array of `struct kvm_dirty_gfn` shared with
/// the kernel. The kernel publishes an entry by setting KVM_DIRTY_GFN_F_DIRTY; userspace
/// reads it with acquire ordering, collects (slot, offset), and hands the entry back by
/// storing KVM_DIRTY_GFN_F_RESET with release ordering. KVM_RESET_DIRTY_RINGS then
/// re-arms tracking for the reset entries.
///
/// One harvester at a time: `harvest` advances a private fetch index.
public final class DirtyRing: @unchecked Sendable {
    private let mapping: Mapping
    /// Entries in the ring (a power of two).
    public let entries: Int
    public let vcpu: Int
    /// Next entry to look at; grows without wrapping, like the kernel's indices.
    public private(set) var fetchIndex: UInt64 = 0
    /// Entries collected over the ring's life.
    public private(set) var harvested: UInt64 = 0

    init(vcpuFD: FileDescriptor, bytes: Int, vcpu: Int) throws(KVMError) {
        self.vcpu = vcpu
        entries = bytes / Int(CKVM_SIZEOF_DIRTY_GFN)
        let offset = Int(KVM_DIRTY_LOG_PAGE_OFFSET) * PageSize.system
        mapping = try vcpuFD.withRaw { (raw) throws(KVMError) in
            try Mapping(length: bytes, protection: PROT_READ | PROT_WRITE, flags: MAP_SHARED, fd: raw, offset: offset,
                        what: "dirty ring of vCPU \(vcpu)")
        }
    }

    /// Collects every published entry, in order, calling `body(slot, pageOffset)` for each,
    /// and marks it for reset. Returns how many were collected; the caller must then call
    /// `VirtualMachine.resetDirtyRings()`, which should reset exactly that many in total.
    @discardableResult
    public func harvest(_ body: (_ slot: UInt32, _ pageOffset: UInt64) -> Void) -> Int {
        let gfns = mapping.base.assumingMemoryBound(to: kvm_dirty_gfn.self)
        var count = 0
        while count < entries {
            let entry = gfns + Int(fetchIndex & UInt64(entries - 1))
            // Safe: `flags` is the entry's first field; the kernel writes it last, with release.
            let flagsPointer = UnsafeMutableRawPointer(entry).assumingMemoryBound(to: UInt32.self)
            let flags = ckvm_load_acquire_u32(flagsPointer)
            guard flags & ckvm_DIRTY_GFN_F_DIRTY != 0 else { break }
            body(entry.pointee.slot, entry.pointee.offset)
            ckvm_store_release_u32(flagsPointer, ckvm_DIRTY_GFN_F_RESET)
            fetchIndex &+= 1
            count += 1
        }
        harvested &+= UInt64(count)
        return count
    }
}

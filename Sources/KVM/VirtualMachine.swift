import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// A VM (made only by `KVMSystem.makeVM`). Owns its fd, memslots and vCPUs.
///
/// Dirty-log calls (`getDirtyLog`, `clearDirtyLog`, `resetDirtyRings`) may be made from
/// any thread while vCPUs run; memslot and capability setup belongs before the vCPUs start.
public final class VirtualMachine: @unchecked Sendable {
    public let system: KVMSystem
    let fd: FileDescriptor
    /// Memslots by id.
    public private(set) var slots: [UInt32: MemorySlot] = [:]
    /// Flags currently enabled with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2.
    public private(set) var manualProtect: ManualProtectFlags = []
    /// Dirty ring size in bytes per vCPU, 0 when rings are off.
    public private(set) var dirtyRingBytes: Int = 0
    public private(set) var vcpuCount = 0

    init(system: KVMSystem, fd: FileDescriptor) {
        self.system = system
        self.fd = fd
    }

    /// KVM_CHECK_EXTENSION on the VM fd (some capabilities differ per VM).
    public func check(_ capability: Capability) -> Int {
        let r = fd.withRaw { ckvm_ioctl_val($0, ckvm_KVM_CHECK_EXTENSION, capability.rawValue) }
        return r < 0 ? 0 : Int(r)
    }

    // MARK: Memslots

    /// Adds memslot `id` at `guestPhysicalAddress` backed by `memory`
    /// (KVM_SET_USER_MEMORY_REGION), with KVM_MEM_LOG_DIRTY_PAGES when `logDirtyPages`.
    ///
    /// Checks up front: page alignment, overlap with existing slots, and the host's slot limit.
    @discardableResult
    public func addSlot(id: UInt32, guestPhysicalAddress: UInt64, memory: GuestMemory, logDirtyPages: Bool) throws(KVMError) -> MemorySlot {
        let call = "KVM_SET_USER_MEMORY_REGION"
        let page = UInt64(PageSize.system)
        guard guestPhysicalAddress % page == 0 else {
            throw .invalidArgument(call: call, reason: "slot \(id): guest address 0x\(String(guestPhysicalAddress, radix: 16)) is not a multiple of the page size \(page)")
        }
        let limit = system.maxMemslots
        guard limit == 0 || Int(id) < limit else {
            throw .invalidArgument(call: call, reason: "slot \(id) is beyond this host's limit of \(limit) memslots")
        }
        guard slots[id] == nil else {
            throw .invalidArgument(call: call, reason: "slot \(id) already exists")
        }
        let end = guestPhysicalAddress + UInt64(memory.byteCount)
        for other in slots.values where guestPhysicalAddress < other.guestPhysicalEnd && other.guestPhysicalAddress < end {
            throw .invalidArgument(call: call, reason: "slot \(id) [0x\(String(guestPhysicalAddress, radix: 16)), 0x\(String(end, radix: 16))) overlaps slot \(other.id) [0x\(String(other.guestPhysicalAddress, radix: 16)), 0x\(String(other.guestPhysicalEnd, radix: 16)))")
        }
        var region = kvm_userspace_memory_region(
            slot: id, flags: logDirtyPages ? UInt32(KVM_MEM_LOG_DIRTY_PAGES) : 0,
            guest_phys_addr: guestPhysicalAddress, memory_size: UInt64(memory.byteCount),
            userspace_addr: UInt64(UInt(bitPattern: memory.base)))
        let r = fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_SET_USER_MEMORY_REGION, &region) }
        guard r >= 0 else { throw .ioctl(call: call, context: "slot \(id)", errno: Int32(-r)) }
        let slot = MemorySlot(id: id, guestPhysicalAddress: guestPhysicalAddress, memory: memory, logsDirtyPages: logDirtyPages)
        slots[id] = slot
        return slot
    }

    /// Turns dirty logging of memslot `id` on or off while the guest runs
    /// (KVM_SET_USER_MEMORY_REGION with the same range and KVM_MEM_LOG_DIRTY_PAGES set or
    /// cleared: KVM allows a flags-only change of an existing slot). Turning it on starts
    /// from an empty log (a full one with INITIALLY_SET); writes made while it was off
    /// are never reported.
    public func setDirtyLogging(slot id: UInt32, _ on: Bool) throws(KVMError) {
        let call = "KVM_SET_USER_MEMORY_REGION"
        guard let s = slots[id] else { throw .invalidArgument(call: call, reason: "slot \(id) does not exist") }
        guard s.logsDirtyPages != on else { return }
        var region = kvm_userspace_memory_region(
            slot: id, flags: on ? UInt32(KVM_MEM_LOG_DIRTY_PAGES) : 0,
            guest_phys_addr: s.guestPhysicalAddress, memory_size: UInt64(s.byteCount),
            userspace_addr: UInt64(UInt(bitPattern: s.memory.base)))
        let r = fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_SET_USER_MEMORY_REGION, &region) }
        guard r >= 0 else { throw .ioctl(call: call, context: "slot \(id) (dirty logging \(on ? "on" : "off"))", errno: Int32(-r)) }
        slots[id] = MemorySlot(id: id, guestPhysicalAddress: s.guestPhysicalAddress, memory: s.memory, logsDirtyPages: on)
    }

    // MARK: Manual protect

    /// Enables or disables manual dirty-log protect (KVM_ENABLE_CAP of
    /// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2). Pass `[]` to turn it off; KVM allows
    /// switching while the guest runs.
    public func setManualProtect(_ flags: ManualProtectFlags) throws(KVMError) {
        let supported = system.manualProtectFlags
        guard supported.contains(flags) else {
            throw .unsupported(capability: "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2",
                               detail: "asked for \(flags.names.joined(separator: "|")), host offers \(supported.names.isEmpty ? "none" : supported.names.joined(separator: "|"))")
        }
        try enableCap(Capability.manualDirtyLogProtect2.rawValue, args: [flags.rawValue], name: "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2")
        manualProtect = flags
    }

    /// KVM_ENABLE_CAP on the VM fd.
    func enableCap(_ cap: UInt, args: [UInt64], name: String) throws(KVMError) {
        var request = kvm_enable_cap()
        request.cap = UInt32(cap)
        withUnsafeMutableBytes(of: &request.args) { raw in
            for (i, a) in args.prefix(4).enumerated() { raw.storeBytes(of: a, toByteOffset: i * 8, as: UInt64.self) }
        }
        let r = fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_ENABLE_CAP, &request) }
        guard r >= 0 else { throw .ioctl(call: "KVM_ENABLE_CAP(\(name))", context: "VM", errno: Int32(-r)) }
    }

    // MARK: Dirty log

    /// Fills `bitmap` with slot `slot`'s dirty pages (KVM_GET_DIRTY_LOG). Without manual
    /// protect the kernel also clears its bitmap and write-protects the pages it returns.
    /// Returns how long the ioctl itself took, in nanoseconds: the figure
    /// dirty_log_perf_test times, without this wrapper's lookups.
    @discardableResult
    public func getDirtyLog(slot: UInt32, into bitmap: inout DirtyBitmap) throws(KVMError) -> UInt64 {
        guard let s = slots[slot] else {
            throw .invalidArgument(call: "KVM_GET_DIRTY_LOG", reason: "slot \(slot) does not exist")
        }
        guard bitmap.pageCount == s.pageCount else {
            throw .invalidArgument(call: "KVM_GET_DIRTY_LOG", reason: "slot \(slot): bitmap covers \(bitmap.pageCount) pages, the slot has \(s.pageCount)")
        }
        var nanos: UInt64 = 0
        let r: Int = bitmap.withUnsafeMutableWords { words in
            var log = kvm_dirty_log()
            log.slot = slot
            log.dirty_bitmap = UnsafeMutableRawPointer(words.baseAddress)
            return fd.withRaw { fd in
                let start = monotonicNanos()
                let r = ckvm_ioctl_ptr(fd, ckvm_KVM_GET_DIRTY_LOG, &log)
                nanos = monotonicNanos() &- start
                return r
            }
        }
        guard r >= 0 else { throw .ioctl(call: "KVM_GET_DIRTY_LOG", context: "slot \(slot)", errno: Int32(-r)) }
        return nanos
    }

    /// Checks a KVM_CLEAR_DIRTY_LOG range against the kernel's rules (api.rst 4.117):
    /// `firstPage` a multiple of 64; `numPages` a multiple of 64 unless the range ends
    /// at the end of the slot; the range inside the slot.
    public func validateClearRange(slot: UInt32, firstPage: Int, numPages: Int) throws(KVMError) {
        let call = "KVM_CLEAR_DIRTY_LOG"
        guard let s = slots[slot] else { throw .invalidArgument(call: call, reason: "slot \(slot) does not exist") }
        guard firstPage >= 0, numPages >= 0 else {
            throw .invalidArgument(call: call, reason: "slot \(slot): first_page \(firstPage) and num_pages \(numPages) must not be negative")
        }
        guard firstPage % 64 == 0 else {
            throw .invalidArgument(call: call, reason: "slot \(slot): first_page \(firstPage) is not a multiple of 64")
        }
        guard firstPage <= s.pageCount, numPages <= s.pageCount - firstPage else {
            throw .invalidArgument(call: call, reason: "slot \(slot): first_page \(firstPage) + num_pages \(numPages) would run past the slot's \(s.pageCount) pages")
        }
        guard numPages % 64 == 0 || firstPage + numPages == s.pageCount else {
            throw .invalidArgument(call: call, reason: "slot \(slot): num_pages \(numPages) is not a multiple of 64 and does not end at the slot's end (\(s.pageCount) pages)")
        }
    }

    /// Clears the dirty bits (and re-arms write protection) of the pages set in `mask`
    /// within `[firstPage, firstPage + numPages)` of slot `slot` (KVM_CLEAR_DIRTY_LOG).
    /// `mask`'s bit 0 is page `firstPage`; it needs at least `ceil(numPages / 64)` words.
    ///
    /// The 64-page rules are checked first (`validateClearRange`); `validate: false`
    /// sends the range to the kernel unchecked, so its own errno comes back.
    public func clearDirtyLog(slot: UInt32, firstPage: Int, numPages: Int, mask: UnsafeBufferPointer<UInt64>, validate: Bool = true) throws(KVMError) {
        if validate {
            try validateClearRange(slot: slot, firstPage: firstPage, numPages: numPages)
            guard mask.count * 64 >= numPages else {
                throw .invalidArgument(call: "KVM_CLEAR_DIRTY_LOG", reason: "slot \(slot): mask has \(mask.count * 64) bits for \(numPages) pages")
            }
        }
        guard numPages > 0 else { return }
        guard let base = mask.baseAddress else {
            throw .invalidArgument(call: "KVM_CLEAR_DIRTY_LOG", reason: "slot \(slot): empty mask for \(numPages) pages")
        }
        if let error = clearDirtyLogUnchecked(slot: slot, firstPage: firstPage, numPages: numPages, mask: base) { throw error }
    }

    /// KVM_CLEAR_DIRTY_LOG with no checks and no allocation, for hot loops whose ranges are
    /// aligned by construction: `mask` points at the word of page `firstPage`. Returns the
    /// error instead of throwing, so the call costs what the ioctl costs.
    public func clearDirtyLogUnchecked(slot: UInt32, firstPage: Int, numPages: Int, mask: UnsafePointer<UInt64>) -> KVMError? {
        var log = kvm_clear_dirty_log()
        log.slot = slot
        log.num_pages = UInt32(truncatingIfNeeded: numPages)
        log.first_page = UInt64(truncatingIfNeeded: firstPage)
        log.dirty_bitmap = UnsafeMutableRawPointer(mutating: mask)
        let r = fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_CLEAR_DIRTY_LOG, &log) }
        guard r < 0 else { return nil }
        return .ioctl(call: "KVM_CLEAR_DIRTY_LOG", context: "slot \(slot) first_page \(firstPage) num_pages \(numPages)", errno: Int32(-r))
    }

    /// Clears the pages of `bitmap` (a whole-slot bitmap) in `[firstPage, firstPage + numPages)`.
    public func clearDirtyLog(slot: UInt32, firstPage: Int, numPages: Int, from bitmap: DirtyBitmap) throws(KVMError) {
        try validateClearRange(slot: slot, firstPage: firstPage, numPages: numPages)
        guard numPages > 0 else { return }
        try bitmap.withUnsafeWords { (words) throws(KVMError) in
            let first = firstPage / 64
            let slice = UnsafeBufferPointer(rebasing: words[first..<min(words.count, first + (numPages + 63) / 64)])
            try clearDirtyLog(slot: slot, firstPage: firstPage, numPages: numPages, mask: slice, validate: false)
        }
    }

    // MARK: Dirty ring

    /// Turns on per-vCPU dirty rings of `bytes` each (KVM_ENABLE_CAP of
    /// KVM_CAP_DIRTY_LOG_RING_ACQ_REL, else KVM_CAP_DIRTY_LOG_RING). Must come before any vCPU.
    public func enableDirtyRing(bytes: Int) throws(KVMError) {
        let maxBytes = system.maxDirtyRingBytes
        guard maxBytes > 0 else {
            throw .unsupported(capability: "KVM_CAP_DIRTY_LOG_RING", detail: "dirty rings are not offered by this host")
        }
        let entrySize = Int(CKVM_SIZEOF_DIRTY_GFN)
        guard bytes >= PageSize.system, bytes & (bytes - 1) == 0, bytes <= maxBytes else {
            throw .invalidArgument(call: "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING)",
                                   reason: "ring of \(bytes / entrySize) entries (\(bytes) bytes) must be a power of two between \(PageSize.system / entrySize) and \(maxBytes / entrySize) entries")
        }
        guard vcpuCount == 0 else {
            throw .invalidArgument(call: "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING)", reason: "rings must be enabled before the first vCPU is created")
        }
        let acqRel = check(.dirtyLogRingAcqRel) > 0
        let cap = acqRel ? Capability.dirtyLogRingAcqRel : .dirtyLogRing
        try enableCap(cap.rawValue, args: [UInt64(bytes)], name: cap.name)
        dirtyRingBytes = bytes
    }

    /// Re-arms dirty tracking for every ring entry marked reset (KVM_RESET_DIRTY_RINGS).
    /// Returns how many entries the kernel reset.
    @discardableResult
    public func resetDirtyRings() throws(KVMError) -> Int {
        let r = fd.withRaw { ckvm_ioctl_val($0, ckvm_KVM_RESET_DIRTY_RINGS, 0) }
        guard r >= 0 else { throw .ioctl(call: "KVM_RESET_DIRTY_RINGS", context: "VM", errno: Int32(-r)) }
        return r
    }

    // MARK: vCPUs and stats

    /// Creates vCPU `id` (KVM_CREATE_VCPU) with its `kvm_run` mapping and, when rings
    /// are on, its dirty ring mapping.
    public func makeVCPU(id: Int) throws(KVMError) -> VCPU {
        let limit = system.maxVCPUs
        guard id >= 0, id < limit else {
            throw .invalidArgument(call: "KVM_CREATE_VCPU", reason: "vCPU \(id) is beyond this host's limit of \(limit) vCPUs")
        }
        let r = fd.withRaw { ckvm_ioctl_val($0, ckvm_KVM_CREATE_VCPU, UInt(id)) }
        guard r >= 0 else { throw .ioctl(call: "KVM_CREATE_VCPU", context: "vCPU \(id)", errno: Int32(-r)) }
        let vcpuFD = FileDescriptor(owning: Int32(r))
        let vcpu = try VCPU(vm: self, id: id, fd: vcpuFD)
        vcpuCount += 1
        return vcpu
    }

    /// The VM's binary statistics (KVM_GET_STATS_FD).
    public func stats() throws(KVMError) -> BinaryStats {
        try BinaryStats(owner: fd, context: "VM")
    }
}

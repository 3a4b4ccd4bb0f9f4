import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// General-purpose registers, flags and the instruction pointer (struct kvm_regs).
public typealias Registers = kvm_regs
/// Segment, control and descriptor-table registers (struct kvm_sregs).
public typealias SpecialRegisters = kvm_sregs

/// Why `VCPU.run()` returned.
public enum VCPUExit: Equatable, Sendable {
    /// The guest executed HLT.
    case halt
    /// The guest wrote `value` (`size` bytes) to `port` with OUT.
    case portOut(port: UInt16, size: Int, value: UInt32)
    /// The guest read `port` with IN; `VCPU.completePortIn` supplies the value.
    case portIn(port: UInt16, size: Int)
    /// KVM_RUN was interrupted (a kick: signal or immediate_exit). Re-enter to go on.
    case interrupted
    /// The vCPU's dirty ring is full (KVM_EXIT_DIRTY_RING_FULL): harvest and reset first.
    case dirtyRingFull
    /// Triple fault or similar (KVM_EXIT_SHUTDOWN).
    case shutdown
    /// KVM could not handle the exit (KVM_EXIT_INTERNAL_ERROR).
    case internalError(suberror: UInt32)
    /// VM entry failed (KVM_EXIT_FAIL_ENTRY).
    case failEntry(reason: UInt64)
    /// The guest touched guest-physical memory no memslot backs (KVM_EXIT_MMIO): a
    /// `length`-byte read or write at `address`.
    case mmio(address: UInt64, length: Int, isWrite: Bool)
    /// Any other exit reason, by number.
    case other(reason: UInt32)

    /// True for exits that end the guest: it cannot go on.
    public var isFault: Bool {
        switch self {
        case .shutdown, .internalError, .failEntry, .mmio, .other: return true
        default: return false
        }
    }
}

/// A vCPU (made only by `VirtualMachine.makeVCPU`). Owns its fd, its `kvm_run`
/// mapping and its dirty ring, and keeps its VM alive: the VM owns the memslots' host
/// mappings, which KVM_RUN reads and writes. `run` belongs to one thread; `kick` may
/// come from any.
public final class VCPU: @unchecked Sendable {
    public let id: Int
    let fd: FileDescriptor
    /// The VM, and through it every memslot's mapping, for as long as this vCPU can run.
    private let vm: VirtualMachine
    private let runMapping: Mapping
    /// The dirty ring, when the VM has rings on.
    public let dirtyRing: DirtyRing?

    init(vm: VirtualMachine, id: Int, fd: FileDescriptor) throws(KVMError) {
        self.id = id
        self.fd = fd
        self.vm = vm
        let size = vm.system.vcpuMmapSize
        runMapping = try fd.withRaw { (raw) throws(KVMError) in
            try Mapping(length: size, protection: PROT_READ | PROT_WRITE, flags: MAP_SHARED, fd: raw, what: "kvm_run of vCPU \(id)")
        }
        if vm.dirtyRingBytes > 0 {
            dirtyRing = try DirtyRing(vcpuFD: fd, bytes: vm.dirtyRingBytes, vcpu: id)
        } else {
            dirtyRing = nil
        }
    }

    /// The kvm_run structure shared with the kernel.
    private var shared: UnsafeMutablePointer<kvm_run> {
        runMapping.base.assumingMemoryBound(to: kvm_run.self)
    }

    // MARK: Registers

    /// KVM_GET_REGS.
    public func registers() throws(KVMError) -> Registers {
        var regs = kvm_regs()
        try ioctl(ckvm_KVM_GET_REGS, &regs, "KVM_GET_REGS")
        return regs
    }

    /// KVM_SET_REGS.
    public func setRegisters(_ regs: Registers) throws(KVMError) {
        var r = regs
        try ioctl(ckvm_KVM_SET_REGS, &r, "KVM_SET_REGS")
    }

    /// KVM_GET_SREGS.
    public func specialRegisters() throws(KVMError) -> SpecialRegisters {
        var sregs = kvm_sregs()
        try ioctl(ckvm_KVM_GET_SREGS, &sregs, "KVM_GET_SREGS")
        return sregs
    }

    /// KVM_SET_SREGS.
    public func setSpecialRegisters(_ sregs: SpecialRegisters) throws(KVMError) {
        var s = sregs
        try ioctl(ckvm_KVM_SET_SREGS, &s, "KVM_SET_SREGS")
    }

    /// KVM_SET_CPUID2 with the entries KVM supports.
    public func setCPUID(_ cpuid: CPUID) throws(KVMError) {
        try ioctl(ckvm_KVM_SET_CPUID2, cpuid.raw, "KVM_SET_CPUID2")
    }

    /// KVM_SET_MSRS: writes each model-specific register `index` to `value`, as the host
    /// (KVM accepts host-initiated writes of MSRs the guest could not write itself).
    /// Throws naming the first MSR KVM refused.
    public func setMSRs(_ msrs: [(index: UInt32, value: UInt64)]) throws(KVMError) {
        guard !msrs.isEmpty else { return }
        guard let raw = ckvm_msrs_alloc(UInt32(msrs.count)) else {
            throw .mapping(what: "kvm_msrs", bytes: msrs.count * Int(CKVM_SIZEOF_MSR_ENTRY), errno: ENOMEM)
        }
        defer { free(raw) }
        let entries = ckvm_msrs_entries(raw)!
        for (i, m) in msrs.enumerated() { entries[i] = kvm_msr_entry(index: m.index, reserved: 0, data: m.value) }
        let r = fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_SET_MSRS, raw) }
        guard r >= 0 else { throw .ioctl(call: "KVM_SET_MSRS", context: "vCPU \(id)", errno: Int32(-r)) }
        // KVM returns how many it set, stopping at the first it refused.
        guard r == msrs.count else {
            throw .ioctl(call: "KVM_SET_MSRS", context: "vCPU \(id): MSR 0x\(String(msrs[r].index, radix: 16)) refused", errno: EINVAL)
        }
    }

    /// KVM_GET_MSRS: the values of the model-specific registers `indices`.
    public func msrs(_ indices: [UInt32]) throws(KVMError) -> [UInt64] {
        guard !indices.isEmpty else { return [] }
        guard let raw = ckvm_msrs_alloc(UInt32(indices.count)) else {
            throw .mapping(what: "kvm_msrs", bytes: indices.count * Int(CKVM_SIZEOF_MSR_ENTRY), errno: ENOMEM)
        }
        defer { free(raw) }
        let entries = ckvm_msrs_entries(raw)!
        for (i, index) in indices.enumerated() { entries[i] = kvm_msr_entry(index: index, reserved: 0, data: 0) }
        let r = fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_GET_MSRS, raw) }
        guard r >= 0 else { throw .ioctl(call: "KVM_GET_MSRS", context: "vCPU \(id)", errno: Int32(-r)) }
        guard r == indices.count else {
            throw .ioctl(call: "KVM_GET_MSRS", context: "vCPU \(id): MSR 0x\(String(indices[r], radix: 16)) refused", errno: EINVAL)
        }
        return (0..<indices.count).map { entries[$0].data }
    }

    /// KVM_GET_TSC_KHZ: the guest's time-stamp counter frequency in kHz.
    public func tscKHz() throws(KVMError) -> UInt64 {
        let r = fd.withRaw { ckvm_ioctl_val($0, ckvm_KVM_GET_TSC_KHZ, 0) }
        guard r > 0 else { throw .ioctl(call: "KVM_GET_TSC_KHZ", context: "vCPU \(id)", errno: r == 0 ? EINVAL : Int32(-r)) }
        return UInt64(r)
    }

    private func ioctl<T>(_ request: UInt, _ arg: UnsafeMutablePointer<T>, _ name: String) throws(KVMError) {
        let r = fd.withRaw { ckvm_ioctl_ptr($0, request, arg) }
        guard r >= 0 else { throw .ioctl(call: name, context: "vCPU \(id)", errno: Int32(-r)) }
    }

    // MARK: Running

    /// Enters the guest (KVM_RUN) until the next exit, and decodes it. EINTR (a kick)
    /// comes back as `.interrupted`, so the caller can look at its own flags and re-enter.
    public func run() throws(KVMError) -> VCPUExit {
        let r = fd.withRaw { ckvm_ioctl_val($0, ckvm_KVM_RUN, 0) }
        if r == -Int(EINTR) || r == -Int(EAGAIN) {
            ckvm_run_set_immediate_exit(shared, 0)
            return .interrupted
        }
        guard r >= 0 else { throw .ioctl(call: "KVM_RUN", context: "vCPU \(id)", errno: Int32(-r)) }
        let reason = Int32(shared.pointee.exit_reason)
        switch reason {
        case KVM_EXIT_HLT:
            return .halt
        case KVM_EXIT_IO:
            let size = Int(ckvm_run_io_size(shared))
            let port = ckvm_run_io_port(shared)
            let data = UnsafeRawPointer(runMapping.base) + Int(ckvm_run_io_data_offset(shared))
            if ckvm_run_io_direction(shared) == UInt8(KVM_EXIT_IO_OUT) {
                var value: UInt32 = 0
                withUnsafeMutableBytes(of: &value) { dst in
                    dst.copyMemory(from: UnsafeRawBufferPointer(start: data, count: min(4, size)))
                }
                return .portOut(port: port, size: size, value: value)
            }
            return .portIn(port: port, size: size)
        case KVM_EXIT_INTR:
            return .interrupted
        case KVM_EXIT_DIRTY_RING_FULL:
            return .dirtyRingFull
        case KVM_EXIT_SHUTDOWN:
            return .shutdown
        case KVM_EXIT_INTERNAL_ERROR:
            return .internalError(suberror: ckvm_run_internal_suberror(shared))
        case KVM_EXIT_FAIL_ENTRY:
            return .failEntry(reason: ckvm_run_fail_entry_reason(shared))
        case KVM_EXIT_MMIO:
            return .mmio(address: ckvm_run_mmio_address(shared), length: Int(ckvm_run_mmio_length(shared)),
                         isWrite: ckvm_run_mmio_is_write(shared) != 0)
        default:
            return .other(reason: UInt32(reason))
        }
    }

    /// Supplies the value of a pending port read before the next `run`.
    public func completePortIn(_ value: UInt32) {
        let data = runMapping.base + Int(ckvm_run_io_data_offset(shared))
        let size = Int(ckvm_run_io_size(shared))
        withUnsafeBytes(of: value) { src in
            data.copyMemory(from: src.baseAddress!, byteCount: min(4, size))
        }
    }

    /// Makes the current or next KVM_RUN return at once (immediate_exit); pair it with
    /// a signal to the vCPU's thread (`VCPUKick.signal`) to interrupt a running guest.
    public func requestImmediateExit() {
        ckvm_run_set_immediate_exit(shared, 1)
    }

    /// This vCPU's binary statistics (KVM_GET_STATS_FD).
    public func stats() throws(KVMError) -> BinaryStats {
        try BinaryStats(owner: fd, context: "vCPU \(id)")
    }
}

/// Kicks vCPU threads out of KVM_RUN with a signal whose handler does nothing, installed
/// without SA_RESTART so KVM_RUN returns EINTR.
public enum VCPUKick {
    /// The signal used for kicks.
    public static let signalNumber: Int32 = SIGUSR1

    /// Installs the no-op handler (idempotent; call before starting vCPU threads).
    public static func installHandler() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(signalNumber, &action, nil)
    }

    /// Sends the kick signal to `thread`.
    public static func signal(_ thread: pthread_t) {
        pthread_kill(thread, signalNumber)
    }
}

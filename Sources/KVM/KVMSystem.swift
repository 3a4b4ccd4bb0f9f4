import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// KVM capabilities DirtyScope cares about (values of `KVM_CAP_*`).
public enum Capability: UInt, CaseIterable, Sendable {
    case nrVCPUs = 9                        // KVM_CAP_NR_VCPUS (recommended)
    case nrMemslots = 10                    // KVM_CAP_NR_MEMSLOTS
    case maxVCPUs = 66                      // KVM_CAP_MAX_VCPUS
    case manualDirtyLogProtect2 = 168       // KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
    case multiAddressSpace = 118            // KVM_CAP_MULTI_ADDRESS_SPACE
    case dirtyLogRing = 192                 // KVM_CAP_DIRTY_LOG_RING
    case dirtyLogRingAcqRel = 223           // KVM_CAP_DIRTY_LOG_RING_ACQ_REL
    case dirtyLogRingWithBitmap = 225       // KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP
    case binaryStatsFD = 203                // KVM_CAP_BINARY_STATS_FD
    case immediateExit = 136                // KVM_CAP_IMMEDIATE_EXIT
    case userMemory = 3                     // KVM_CAP_USER_MEMORY
    case readonlyMem = 81                   // KVM_CAP_READONLY_MEM
    case xsave2 = 208                       // KVM_CAP_XSAVE2 (the size of struct kvm_xsave)

    /// The kernel's name for it.
    public var name: String {
        switch self {
        case .nrVCPUs: return "KVM_CAP_NR_VCPUS"
        case .nrMemslots: return "KVM_CAP_NR_MEMSLOTS"
        case .maxVCPUs: return "KVM_CAP_MAX_VCPUS"
        case .manualDirtyLogProtect2: return "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2"
        case .multiAddressSpace: return "KVM_CAP_MULTI_ADDRESS_SPACE"
        case .dirtyLogRing: return "KVM_CAP_DIRTY_LOG_RING"
        case .dirtyLogRingAcqRel: return "KVM_CAP_DIRTY_LOG_RING_ACQ_REL"
        case .dirtyLogRingWithBitmap: return "KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP"
        case .binaryStatsFD: return "KVM_CAP_BINARY_STATS_FD"
        case .immediateExit: return "KVM_CAP_IMMEDIATE_EXIT"
        case .userMemory: return "KVM_CAP_USER_MEMORY"
        case .readonlyMem: return "KVM_CAP_READONLY_MEM"
        case .xsave2: return "KVM_CAP_XSAVE2"
        }
    }
}

/// Flags of `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2` (api.rst 7.18).
public struct ManualProtectFlags: OptionSet, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE: GET no longer write-protects; CLEAR does.
    public static let enable = ManualProtectFlags(rawValue: 1)
    /// KVM_DIRTY_LOG_INITIALLY_SET: bitmaps start all set, pages start unprotected.
    public static let initiallySet = ManualProtectFlags(rawValue: 2)

    public var names: [String] {
        var n: [String] = []
        if contains(.enable) { n.append("MANUAL_PROTECT_ENABLE") }
        if contains(.initiallySet) { n.append("INITIALLY_SET") }
        let rest = rawValue & ~3
        if rest != 0 { n.append("0x" + String(rest, radix: 16)) }
        return n
    }
}

/// The system handle: an open /dev/kvm. Makes VMs; asks what the host offers.
public final class KVMSystem: @unchecked Sendable {
    let fd: FileDescriptor
    /// The KVM API version (12 on every supported kernel).
    public let apiVersion: Int
    /// Size of each vCPU's `kvm_run` mapping (KVM_GET_VCPU_MMAP_SIZE).
    public let vcpuMmapSize: Int

    /// Opens `path` (default /dev/kvm) and checks the API version (KVM_GET_API_VERSION).
    public init(path: String = "/dev/kvm") throws(KVMError) {
        let raw = open(path, O_RDWR | O_CLOEXEC)
        guard raw >= 0 else { throw .deviceUnavailable(path: path, errno: errno) }
        fd = FileDescriptor(owning: raw)
        let version = fd.withRaw { ckvm_ioctl_val($0, ckvm_KVM_GET_API_VERSION, 0) }
        guard version >= 0 else { throw .notKVM(path: path, errno: Int32(-version)) }
        guard version == 12 else { throw .apiVersion(Int(version)) }
        apiVersion = Int(version)
        let size = fd.withRaw { ckvm_ioctl_val($0, ckvm_KVM_GET_VCPU_MMAP_SIZE, 0) }
        guard size > 0 else { throw .ioctl(call: "KVM_GET_VCPU_MMAP_SIZE", context: "", errno: Int32(-size)) }
        vcpuMmapSize = Int(size)
    }

    /// KVM_CHECK_EXTENSION on the system fd: 0 when absent, else the capability's value.
    public func check(_ capability: Capability) -> Int {
        let r = fd.withRaw { ckvm_ioctl_val($0, ckvm_KVM_CHECK_EXTENSION, capability.rawValue) }
        return r < 0 ? 0 : Int(r)
    }

    /// Maximum vCPUs per VM (KVM_CAP_MAX_VCPUS, falling back to KVM_CAP_NR_VCPUS, then 4).
    public var maxVCPUs: Int {
        let m = check(.maxVCPUs)
        if m > 0 { return m }
        let n = check(.nrVCPUs)
        return n > 0 ? n : 4
    }

    /// User memslots per address space (KVM_CAP_NR_MEMSLOTS).
    public var maxMemslots: Int { check(.nrMemslots) }

    /// Supported manual-protect flags (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2).
    public var manualProtectFlags: ManualProtectFlags { ManualProtectFlags(rawValue: UInt64(check(.manualDirtyLogProtect2))) }

    /// Largest dirty ring in bytes (KVM_CAP_DIRTY_LOG_RING_ACQ_REL, else KVM_CAP_DIRTY_LOG_RING), 0 if none.
    public var maxDirtyRingBytes: Int { max(check(.dirtyLogRingAcqRel), check(.dirtyLogRing)) }

    /// The CPUID entries KVM can present to a guest (KVM_GET_SUPPORTED_CPUID).
    public func supportedCPUID() throws(KVMError) -> CPUID {
        var entries: UInt32 = 64
        while entries <= 4096 {
            guard let c = ckvm_cpuid2_alloc(entries) else { throw .mapping(what: "cpuid", bytes: Int(entries) * 40, errno: ENOMEM) }
            let r = fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_GET_SUPPORTED_CPUID, c) }
            if r == -Int(E2BIG) {
                free(c)
                entries *= 2
                continue
            }
            guard r >= 0 else { free(c); throw .ioctl(call: "KVM_GET_SUPPORTED_CPUID", context: "", errno: Int32(-r)) }
            return CPUID(owning: c)
        }
        throw .ioctl(call: "KVM_GET_SUPPORTED_CPUID", context: "", errno: E2BIG)
    }

    /// The MSRs KVM saves and restores for a guest (KVM_GET_MSR_INDEX_LIST): what a
    /// migration carries.
    public func msrIndexList() throws(KVMError) -> [UInt32] {
        var entries: UInt32 = 256
        while entries <= 65536 {
            guard let list = ckvm_msr_list_alloc(entries) else { throw .mapping(what: "kvm_msr_list", bytes: Int(entries) * 4, errno: ENOMEM) }
            defer { free(list) }
            let r = fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_GET_MSR_INDEX_LIST, list) }
            if r == -Int(E2BIG) {
                entries = max(entries * 2, list.pointee.nmsrs)
                continue
            }
            guard r >= 0 else { throw .ioctl(call: "KVM_GET_MSR_INDEX_LIST", context: "", errno: Int32(-r)) }
            let n = Int(min(list.pointee.nmsrs, entries))
            let indices = ckvm_msr_list_indices(list)!
            return (0..<n).map { indices[$0] }
        }
        throw .ioctl(call: "KVM_GET_MSR_INDEX_LIST", context: "", errno: E2BIG)
    }

    /// Creates a VM (KVM_CREATE_VM, default machine type).
    public func makeVM() throws(KVMError) -> VirtualMachine {
        let r = fd.withRaw { ckvm_ioctl_val($0, ckvm_KVM_CREATE_VM, 0) }
        guard r >= 0 else { throw .ioctl(call: "KVM_CREATE_VM", context: "", errno: Int32(-r)) }
        return VirtualMachine(system: self, fd: FileDescriptor(owning: Int32(r)))
    }
}

/// An owned `struct kvm_cpuid2` from KVM_GET_SUPPORTED_CPUID.
public final class CPUID: @unchecked Sendable {
    let raw: UnsafeMutablePointer<kvm_cpuid2>
    init(owning raw: UnsafeMutablePointer<kvm_cpuid2>) { self.raw = raw }
    deinit { free(raw) }
    /// Number of entries.
    public var count: Int { Int(raw.pointee.nent) }
}

#if canImport(Glibc)
import Glibc
#endif

/// Everything the KVM layer can fail with, in words a user understands: which call,
/// which object, which errno, and where it helps, the fix.
public enum KVMError: Error, Equatable, CustomStringConvertible {
    /// /dev/kvm could not be opened.
    case deviceUnavailable(path: String, errno: Int32)
    /// The device opened but is not KVM (KVM_GET_API_VERSION failed).
    case notKVM(path: String, errno: Int32)
    /// KVM_GET_API_VERSION returned something other than 12.
    case apiVersion(Int)
    /// A capability this operation needs is missing.
    case unsupported(capability: String, detail: String)
    /// An argument was rejected before the kernel saw it (the kernel would say EINVAL).
    case invalidArgument(call: String, reason: String)
    /// An ioctl failed; `context` names the object ("slot 1", "vCPU 0").
    case ioctl(call: String, context: String, errno: Int32)
    /// mmap failed.
    case mapping(what: String, bytes: Int, errno: Int32)

    /// The errno behind the error: EINVAL for arguments rejected up front.
    public var errno: Int32? {
        switch self {
        case .deviceUnavailable(_, let e), .notKVM(_, let e), .ioctl(_, _, let e), .mapping(_, _, let e): return e
        case .invalidArgument: return EINVAL
        case .apiVersion, .unsupported: return nil
        }
    }

    public var description: String {
        switch self {
        case .deviceUnavailable(let path, let e):
            switch e {
            case ENOENT:
                return "\(path) does not exist: load the kvm module (modprobe kvm_intel or kvm_amd) or run where KVM is available"
            case EACCES, EPERM:
                return "permission denied opening \(path): add yourself to the kvm group (sudo usermod -aG kvm $USER, then log in again) or run as root"
            default:
                return "cannot open \(path): \(errnoText(e))"
            }
        case .notKVM(let path, let e):
            return "\(path) is not a KVM device: KVM_GET_API_VERSION failed with \(errnoText(e))"
        case .apiVersion(let v):
            return "KVM API version is \(v), expected 12"
        case .unsupported(let cap, let detail):
            return "this host's KVM lacks \(cap): \(detail)"
        case .invalidArgument(let call, let reason):
            return "\(call): \(reason)"
        case .ioctl(let call, let context, let e):
            return context.isEmpty ? "\(call) failed: \(errnoText(e))" : "\(call) on \(context) failed: \(errnoText(e))"
        case .mapping(let what, let bytes, let e):
            return "cannot map \(what) (\(bytes) bytes): \(errnoText(e))"
        }
    }
}

/// "EINVAL (Invalid argument)".
public func errnoText(_ e: Int32) -> String {
    let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", E2BIG: "E2BIG", EBADF: "EBADF",
        EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT", EBUSY: "EBUSY",
        EEXIST: "EEXIST", ENODEV: "ENODEV", EINVAL: "EINVAL", ENOSPC: "ENOSPC", ENOTTY: "ENOTTY",
        ENXIO: "ENXIO", EOPNOTSUPP: "EOPNOTSUPP", ERANGE: "ERANGE",
    ]
    let text = String(cString: strerror(e))
    return names[e].map { "\($0) (\(text))" } ?? "errno \(e) (\(text))"
}

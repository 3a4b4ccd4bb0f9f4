import KVM

/// What a session can fail with. `invalidArgument` and KVM argument errors are the
/// user's to fix (exit code 2); the rest are environment or guest problems (exit code 1).
public enum SessionError: Error, CustomStringConvertible {
    /// Bad input: names the value and the limit.
    case invalidArgument(String)
    case kvm(KVMError)
    case guestFault(GuestFault)
    case io(String)
    /// A migration's stream failed (the peer went away, or refused).
    case migration(MigrationError)

    public var description: String {
        switch self {
        case .invalidArgument(let m): return m
        case .kvm(let e): return e.description
        case .guestFault(let f): return "guest fault: \(f)"
        case .io(let m): return m
        case .migration(let e): return "migration: \(e.description)"
        }
    }

    /// 2 for bad input, 1 otherwise.
    public var exitCode: Int32 {
        switch self {
        case .invalidArgument: return 2
        case .kvm(let e):
            switch e {
            case .invalidArgument, .unsupported: return 2
            default: return 1
            }
        default: return 1
        }
    }
}

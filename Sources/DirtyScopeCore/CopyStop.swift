import Foundation

/// A request, from any thread, that a copy running at a bandwidth stop pacing: a stop
/// must not wait out a copy that `--bandwidth 1` would stretch over days. The consumer
/// sleeps in slices of at most `CopyStop.sliceNanos` and checks it between them; once
/// asked, it copies the rest at memory speed (so the round stays whole).
public final class CopyStop: @unchecked Sendable {
    /// Longest sleep between two checks.
    public static let sliceNanos: UInt64 = 100_000_000
    private let lock = NSLock()
    private var requested = false

    public init() {}

    public func request() {
        lock.lock()
        requested = true
        lock.unlock()
    }

    public var isRequested: Bool {
        lock.lock()
        defer { lock.unlock() }
        return requested
    }
}

import Synchronization

/// A thread-safe queue of session records: the session's harvest thread appends,
/// the UI thread drains. Several readers may subscribe; each has its own queue.
public final class RecordQueue: Sendable {
    private let pending = Mutex<[SessionRecord]>([])

    public init() {}

    /// Appends one record (any thread).
    public func push(_ record: SessionRecord) {
        pending.withLock { $0.append(record) }
    }

    /// Takes every record queued so far, oldest first (any thread).
    public func drain() -> [SessionRecord] {
        pending.withLock { queue in
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
    }
}

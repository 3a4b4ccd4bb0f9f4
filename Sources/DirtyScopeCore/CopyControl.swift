import Synchronization

/// What a paced copy looks at while it runs, set from other threads: a stop request (a
/// stop must not wait out a copy that `--bandwidth 1` would stretch over days), and a
/// poke saying the session has commands that must act now, not when the round ends.
///
/// The consumer checks both every 16 pages (two relaxed loads) and sleeps at most
/// `sliceNanos` at a time, waking at once when poked; on a poke it calls `interrupt` on
/// its own thread, the harvest thread, where the session applies the commands that are
/// safe in the middle of a round (pause, resume, bandwidth, interval, workload). Once a
/// stop is asked, the rest of the round is copied at memory speed (the round stays whole).
public final class CopyControl: @unchecked Sendable {
    /// Longest sleep between two looks.
    public static let sliceNanos: UInt64 = 100_000_000
    private let stopFlag = Atomic<Bool>(false)
    private let pokeFlag = Atomic<Bool>(false)
    private let condition = MonotonicCondition()
    /// Called on the copying thread after a poke: the session's mid-round commands.
    /// Set before the harvest thread starts; never changed while it runs.
    var interrupt: (() -> Void)?
    /// A bandwidth set by `interrupt` for the copy in progress (harvest thread only).
    private var bandwidthChange: UInt64?

    public init() {}

    /// Asks the copy to stop pacing (from any thread).
    public func request() {
        stopFlag.store(true, ordering: .releasing)
        wake()
    }

    public var isRequested: Bool { stopFlag.load(ordering: .acquiring) }

    /// Says commands are waiting (from any thread): a sleeping copy wakes, a running one
    /// sees it within 16 pages.
    func poke() {
        pokeFlag.store(true, ordering: .releasing)
        wake()
    }

    @inline(__always)
    var isPoked: Bool { pokeFlag.load(ordering: .relaxed) }

    /// On the copying thread: runs `interrupt` if poked since the last call.
    func serviceIfPoked() {
        guard pokeFlag.exchange(false, ordering: .acquiring) else { return }
        interrupt?()
    }

    /// On the harvest thread: the copy in progress paces at `bytesPerSecond` from now.
    func changeBandwidth(_ bytesPerSecond: UInt64) { bandwidthChange = bytesPerSecond }

    /// The bandwidth `changeBandwidth` set since the last call, if any.
    func takeBandwidthChange() -> UInt64? {
        defer { bandwidthChange = nil }
        return bandwidthChange
    }

    /// Sleeps until `deadline` (monotonic nanoseconds), a stop or a poke.
    func sleep(untilNanos deadline: UInt64) {
        condition.lock()
        if !isRequested && !pokeFlag.load(ordering: .acquiring) { condition.wait(untilNanos: deadline) }
        condition.unlock()
    }

    private func wake() {
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }
}

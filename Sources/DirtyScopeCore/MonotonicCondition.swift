import DirtyScopeModel
#if canImport(Glibc)
import Glibc
#endif

/// A mutex and a condition variable whose timed waits run on `CLOCK_MONOTONIC`, so a
/// wall-clock step (NTP, `date -s`) can neither stretch nor cut a wait short, as it can
/// for `NSCondition.wait(until: Date)`. Owns both pthread objects.
final class MonotonicCondition: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    func broadcast() { pthread_cond_broadcast(cond) }

    /// Waits (the lock held) until a broadcast; spurious wakeups happen, so callers loop.
    func wait() { pthread_cond_wait(cond, mutex) }

    /// Waits (the lock held) for a broadcast or until `monotonicNanos()` reaches
    /// `deadline`; returns false on the deadline.
    @discardableResult
    func wait(untilNanos deadline: UInt64) -> Bool {
        var ts = timespec(tv_sec: Int(min(deadline / 1_000_000_000, UInt64(Int.max))), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(cond, mutex, &ts) == 0
    }

    /// Waits (the lock held) at most `nanos`, at most an hour, or until a broadcast.
    @discardableResult
    func wait(nanos: UInt64) -> Bool {
        wait(untilNanos: monotonicNanos() &+ min(nanos, 3_600_000_000_000))
    }
}

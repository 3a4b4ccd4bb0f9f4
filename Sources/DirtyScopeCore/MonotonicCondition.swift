import Glibc

/// A mutex and a condition variable whose timed waits run on `CLOCK_MONOTONIC`, so a
/// wall-clock step (NTP, `date -s`) can neither stretch nor cut a wait short, as it can
/// for `NSCondition.wait(until: Date)`. Owns both pthread objects.
final class MonotonicCondition: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
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

    /// Waits (the lock held) at most `nanos` on the monotonic clock, or until a broadcast.
    func wait(nanos: UInt64) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        // At most an hour: keeps the sum far from overflowing time_t.
        let total = UInt64(now.tv_nsec) + min(nanos, 3_600_000_000_000)
        var deadline = timespec(tv_sec: now.tv_sec + Int(total / 1_000_000_000), tv_nsec: Int(total % 1_000_000_000))
        pthread_cond_timedwait(cond, mutex, &deadline)
    }
}

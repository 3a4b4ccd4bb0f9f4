#if canImport(Glibc)
import Glibc
#endif

/// A mutex and condition variable whose timed waits run on CLOCK_MONOTONIC, so a step
/// of the wall clock (NTP, `date -s`) neither stalls nor hurries a wait. The same
/// lock/unlock/broadcast shape as `NSCondition`, whose `wait(until: Date)` is wall-clock.
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

    /// With the lock held: waits for a broadcast or until `monotonicNanos()` reaches
    /// `deadline`; returns false on the deadline.
    @discardableResult
    func wait(untilNanos deadline: UInt64) -> Bool {
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(cond, mutex, &ts) == 0
    }

    /// With the lock held: waits at most `nanos` nanoseconds.
    @discardableResult
    func wait(forNanos nanos: UInt64) -> Bool {
        let now = monotonicNanos()
        return wait(untilNanos: now > UInt64.max - nanos ? .max : now + nanos)
    }
}

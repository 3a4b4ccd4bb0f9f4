#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC in nanoseconds: the one clock for round times, ioctl latencies, waits,
/// pacing and benchmarks (the wall clock may step; this one does not). Here, at the
/// bottom of the layers, so the KVM wrappers time their ioctls with it too.
@inlinable
public func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

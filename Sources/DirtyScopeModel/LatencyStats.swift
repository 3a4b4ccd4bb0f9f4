/// Latency of a kind of ioctl call: count, total, max and a log2 histogram.
public struct LatencyStats: Equatable, Codable, Sendable {
    /// Buckets: bucket `i` counts calls that took [2^i, 2^(i+1)) nanoseconds
    /// (bucket 0 also takes 0 and 1 ns); the last bucket takes everything longer.
    public static let bucketCount = 40

    public var count: UInt64 = 0
    public var totalNanos: UInt64 = 0
    public var maxNanos: UInt64 = 0
    /// The last call's duration.
    public var lastNanos: UInt64 = 0
    public var histogram: [UInt64] = []

    public init() {}

    /// Adds one call that took `nanos`.
    public mutating func record(_ nanos: UInt64) {
        count &+= 1
        totalNanos &+= nanos
        maxNanos = max(maxNanos, nanos)
        lastNanos = nanos
        if histogram.isEmpty { histogram = [UInt64](repeating: 0, count: Self.bucketCount) }
        let bucket = nanos <= 1 ? 0 : min(Self.bucketCount - 1, 63 - nanos.leadingZeroBitCount)
        histogram[bucket] &+= 1
    }

    /// Adds every call of `other` (sums wrap rather than trap: they may come from a file).
    public mutating func merge(_ other: LatencyStats) {
        guard other.count > 0 else { return }
        count &+= other.count
        totalNanos &+= other.totalNanos
        maxNanos = max(maxNanos, other.maxNanos)
        lastNanos = other.lastNanos
        if histogram.isEmpty { histogram = [UInt64](repeating: 0, count: Self.bucketCount) }
        for (i, n) in other.histogram.enumerated() where i < histogram.count { histogram[i] &+= n }
    }

    /// Mean call duration in nanoseconds (0 with no calls).
    public var meanNanos: UInt64 { count == 0 ? 0 : totalNanos / count }

    /// An upper bound of the p-th percentile (0...1) from the histogram, in nanoseconds.
    /// Counts may come from a file: the target and the running sum saturate, never trap.
    public func percentileUpperBound(_ p: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let wanted = (Double(count) * min(1, max(0, p))).rounded(.up)
        // Double(UInt64.max) rounds up to 2^64, which UInt64 cannot hold.
        let target = wanted >= 0x1p64 ? UInt64.max : max(1, UInt64(wanted))
        var seen: UInt64 = 0
        for (i, n) in histogram.enumerated() {
            let (sum, overflow) = seen.addingReportingOverflow(n)
            seen = overflow ? .max : sum
            if seen >= target { return min(maxNanos, i >= 63 ? .max : (UInt64(1) << UInt64(i + 1)) - 1) }
        }
        return maxNanos
    }
}

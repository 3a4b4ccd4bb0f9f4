import Pages

/// Result of a verification point: vCPUs paused, log harvested, every page of
/// source and destination compared.
public struct Verification: Equatable, Codable, Sendable {
    /// Most blocks listed per slot in `missedBlocks`; the counts stay exact past it.
    public static let maxListedBlocks = 4096

    /// Pages that differed between source and destination, per slot.
    public var missedPerSlot: [Int]
    /// Pages compared.
    public var comparedPages: Int
    /// Per slot, the 64-page blocks that held missed pages (sorted, at most
    /// `maxListedBlocks`); nil where the file or the caller did not say.
    public var missedBlocks: [[Int]]?

    public init(missedPerSlot: [Int], comparedPages: Int, missedBlocks: [[Int]]? = nil) {
        self.missedPerSlot = missedPerSlot
        self.comparedPages = comparedPages
        self.missedBlocks = missedBlocks
    }

    public var missed: Int { missedPerSlot.reduce(0, +) }
}

/// Where a round's false positives came from, from the harvester's own clock: a false
/// positive is a page reported again although it had not changed since its last copy.
/// Either a guest write landed after the page was re-protected (by GET in legacy mode, by
/// its CLEAR in manual mode) and before that copy (the race of the seed patch, with the
/// window between re-protection and copy measured per 64-page block), or the page's
/// dirty bit was never cleared after the copy (the `hand` policy), so GET kept it.
public struct FalsePositiveOrigins: Equatable, Codable, Sendable {
    /// Buckets of `byWindow`: bucket i holds windows of [2^(i+10), 2^(i+11)) ns, about
    /// 1 µs to 16 s, with shorter windows in bucket 0 and longer ones in the last.
    public static let bucketCount = 24

    /// Raced false positives by the window of their last copy.
    public var byWindow: [Int]
    /// False positives whose dirty bit was not cleared after their last copy.
    public var neverCleared: Int

    public init(byWindow: [Int] = [Int](repeating: 0, count: FalsePositiveOrigins.bucketCount), neverCleared: Int = 0) {
        self.byWindow = byWindow
        self.neverCleared = neverCleared
    }

    /// False positives from the race, over all windows.
    public var raced: Int { byWindow.reduce(0, +) }
    public var isEmpty: Bool { neverCleared == 0 && byWindow.allSatisfy { $0 == 0 } }

    /// The bucket of a window of `nanos` nanoseconds.
    public static func bucket(nanos: UInt64) -> Int {
        let log2 = 63 - max(1, nanos).leadingZeroBitCount
        return min(bucketCount - 1, max(0, log2 - 10))
    }

    /// The shortest window bucket `i` holds, in nanoseconds (0 for bucket 0).
    public static func lowerBoundNanos(bucket i: Int) -> UInt64 { i <= 0 ? 0 : 1 << UInt64(i + 10) }

    /// Adds `other` bucket by bucket.
    public mutating func add(_ other: FalsePositiveOrigins) {
        for i in byWindow.indices where i < other.byWindow.count { byWindow[i] &+= other.byWindow[i] }
        neverCleared &+= other.neverCleared
    }
}

/// One memslot's bitmaps in a harvest round (its counts are in `RoundMetrics.slots`).
public struct SlotBitmaps: Equatable, Sendable {
    /// Pages the dirty log (or ring) reported this round.
    public var reported: DirtyBitmap
    /// Reported pages that had not changed since they were last copied.
    public var falsePositives: DirtyBitmap

    public init(reported: DirtyBitmap, falsePositives: DirtyBitmap) {
        self.reported = reported
        self.falsePositives = falsePositives
    }

    /// Empty bitmaps for a slot of `pages` pages.
    public init(pages: Int) {
        self.init(reported: DirtyBitmap(pageCount: pages), falsePositives: DirtyBitmap(pageCount: pages))
    }
}

/// One harvest round: its metrics, and each slot's bitmaps (`bitmaps[i]` belongs to
/// `metrics.slots[i]`). Counts are ground truth: the guest stamps every page it writes, so
/// the host knows which reported pages really changed. The metrics' fields read through
/// (`round.index`, `round.mode`).
@dynamicMemberLookup
public struct Round: Equatable, Sendable {
    public var metrics: RoundMetrics
    public var bitmaps: [SlotBitmaps]

    /// A round of `metrics` with these bitmaps, one pair per slot of `metrics`, whose
    /// counts the metrics already hold.
    public init(metrics: RoundMetrics, bitmaps: [SlotBitmaps]) {
        precondition(metrics.slots.count == bitmaps.count, "one bitmap pair per slot")
        self.metrics = metrics
        self.bitmaps = bitmaps
    }

    /// A round of `metrics` with these bitmaps; each slot's reported and false-positive
    /// counts are set from its bitmaps.
    public init(counting metrics: RoundMetrics, bitmaps: [SlotBitmaps]) {
        self.init(metrics: metrics, bitmaps: bitmaps)
        for i in bitmaps.indices {
            self.metrics.slots[i][.reportedPages] = bitmaps[i].reported.count
            self.metrics.slots[i][.falsePositivePages] = bitmaps[i].falsePositives.count
        }
    }

    /// A metric's value (`RoundMetrics` subscript).
    public subscript(metric: Metric) -> UInt64 {
        get { metrics[metric] }
        set { metrics[metric] = newValue }
    }

    /// A metric as an `Int`.
    public func count(_ metric: Metric) -> Int { metrics.count(metric) }

    public subscript<T>(dynamicMember path: KeyPath<RoundMetrics, T>) -> T { metrics[keyPath: path] }
    public subscript<T>(dynamicMember path: WritableKeyPath<RoundMetrics, T>) -> T {
        get { metrics[keyPath: path] }
        set { metrics[keyPath: path] = newValue }
    }
}

import Pages

/// One memslot's share of a harvest round. Counts are ground truth: the guest stamps
/// every page it writes, so the host knows which reported pages really changed.
public struct SlotRound: Equatable, Sendable {
    /// Index into `SessionInfo.slots`.
    public var slot: Int
    /// Pages the dirty log (or ring) reported this round.
    public var reported: DirtyBitmap
    /// Reported pages that had not changed since they were last copied.
    public var falsePositives: DirtyBitmap
    /// Reported pages never copied before (the first, bulk copy); neither true nor false.
    public var initialCount: Int
    /// Pages copied to the destination this round.
    public var copiedPages: Int
    /// Pages that changed but were never reported, found at a verification point;
    /// nil when this round did not verify. Must be 0: anything else is a KVM (or ring) loss.
    public var missed: Int?
    /// Reported and false-positive pages inside the blocks the user last cleared (`c`),
    /// so the effect of a manual CLEAR can be compared with the slot as a whole.
    public var watched: WatchedBlocks?

    public init(slot: Int, reported: DirtyBitmap, falsePositives: DirtyBitmap, initialCount: Int = 0,
                copiedPages: Int = 0, missed: Int? = nil, watched: WatchedBlocks? = nil) {
        self.slot = slot
        self.reported = reported
        self.falsePositives = falsePositives
        self.initialCount = initialCount
        self.copiedPages = copiedPages
        self.missed = missed
        self.watched = watched
    }

    public var reportedCount: Int { reported.count }
    public var falsePositiveCount: Int { falsePositives.count }
    /// Reported pages that really changed.
    public var truePositiveCount: Int { reportedCount - falsePositiveCount - initialCount }
}

/// Counts inside the set of blocks the user cleared by hand.
public struct WatchedBlocks: Equatable, Codable, Sendable {
    /// How many blocks are watched.
    public var blocks: Int
    public var reported: Int
    public var falsePositives: Int

    public init(blocks: Int, reported: Int, falsePositives: Int) {
        self.blocks = blocks
        self.reported = reported
        self.falsePositives = falsePositives
    }
}

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

/// One harvest round: every memslot harvested, reported pages copied and classified.
public struct Round: Equatable, Sendable {
    /// 1-based round number.
    public var index: UInt64
    /// Start of the round, nanoseconds since the session started.
    public var startNanos: UInt64
    /// Wall time from the start of the harvest to the end of the copy.
    public var durationNanos: UInt64
    public var mode: HarvestMode
    public var clearChunk: ClearChunk
    /// Who cleared, and when (manual mode; `.auto` otherwise).
    public var clearPolicy: ClearPolicy
    public var slots: [SlotRound]
    /// `KVM_GET_DIRTY_LOG` calls (ring mode: ring harvests) this round.
    public var getLatency: LatencyStats
    /// `KVM_CLEAR_DIRTY_LOG` calls (ring mode: `KVM_RESET_DIRTY_RINGS`) this round.
    public var clearLatency: LatencyStats
    public var bytesCopied: UInt64
    /// Time spent copying pages, including bandwidth pacing.
    public var copyNanos: UInt64
    /// Userspace bookkeeping: walking bitmaps, the false-positive check, statistics.
    public var bookkeepingNanos: UInt64
    /// Guest page writes during the round (all vCPUs, from the guest's own counters).
    public var guestWrites: UInt64
    /// Write-protect faults taken by the vCPUs during the round (KVM binary stats).
    public var writeProtectFaults: UInt64
    /// vCPU exits during the round (KVM binary stats).
    public var exits: UInt64
    /// Ring mode: entries harvested, and times a vCPU stopped on a full ring.
    public var ringEntries: UInt64
    public var ringFullExits: UInt64
    /// Set when this round ended at a verification point.
    public var verification: Verification?
    /// Where this round's false positives came from.
    public var origins: FalsePositiveOrigins
    /// Pages whose write landed between their copy and their CLEAR (the after-copy
    /// policy), found right after the CLEAR: KVM will never report them. A verification
    /// point counts those still wrong as missed.
    public var lostPages: Int

    public init(index: UInt64, startNanos: UInt64, durationNanos: UInt64, mode: HarvestMode, clearChunk: ClearChunk,
                clearPolicy: ClearPolicy = .auto, slots: [SlotRound], getLatency: LatencyStats = LatencyStats(), clearLatency: LatencyStats = LatencyStats(),
                bytesCopied: UInt64 = 0, copyNanos: UInt64 = 0, bookkeepingNanos: UInt64 = 0, guestWrites: UInt64 = 0,
                writeProtectFaults: UInt64 = 0, exits: UInt64 = 0, ringEntries: UInt64 = 0, ringFullExits: UInt64 = 0,
                verification: Verification? = nil, origins: FalsePositiveOrigins = FalsePositiveOrigins(),
                lostPages: Int = 0) {
        self.index = index
        self.startNanos = startNanos
        self.durationNanos = durationNanos
        self.mode = mode
        self.clearChunk = clearChunk
        self.clearPolicy = HarvestSetting(mode: mode, policy: clearPolicy).policy
        self.slots = slots
        self.getLatency = getLatency
        self.clearLatency = clearLatency
        self.bytesCopied = bytesCopied
        self.copyNanos = copyNanos
        self.bookkeepingNanos = bookkeepingNanos
        self.guestWrites = guestWrites
        self.writeProtectFaults = writeProtectFaults
        self.exits = exits
        self.ringEntries = ringEntries
        self.ringFullExits = ringFullExits
        self.verification = verification
        self.origins = origins
        self.lostPages = lostPages
    }

    /// Mode and policy as one label.
    public var setting: HarvestSetting { HarvestSetting(mode: mode, policy: clearPolicy) }

    public var reported: Int { slots.reduce(0) { $0 + $1.reportedCount } }
    public var falsePositives: Int { slots.reduce(0) { $0 + $1.falsePositiveCount } }
    public var initial: Int { slots.reduce(0) { $0 + $1.initialCount } }
    public var copiedPages: Int { slots.reduce(0) { $0 + $1.copiedPages } }
    /// Missed pages found at this round's verification point, or nil if it did not verify.
    public var missed: Int? { verification?.missed }

    /// False positives over the reported pages that were not first copies (0...1).
    public var falsePositiveRate: Double {
        let base = reported - initial
        return base > 0 ? Double(falsePositives) / Double(base) : 0
    }
}

import Pages

/// A round without its bitmaps: every count, latency and time it recorded. The reader gets
/// these without decoding bitmaps, so timelines, totals, `inspect` and CSV export are cheap.
public struct RoundMetrics: Equatable, Sendable {
    /// One slot's counts (the `SlotRound` fields, with the bitmaps reduced to their counts).
    public struct Slot: Equatable, Sendable {
        public var slot: Int
        public var reportedCount: Int
        public var falsePositiveCount: Int
        public var initialCount: Int
        public var copiedPages: Int
        public var missed: Int?
        public var watched: WatchedBlocks?

        public init(slot: Int, reportedCount: Int, falsePositiveCount: Int, initialCount: Int, copiedPages: Int,
                    missed: Int?, watched: WatchedBlocks?) {
            self.slot = slot
            self.reportedCount = reportedCount
            self.falsePositiveCount = falsePositiveCount
            self.initialCount = initialCount
            self.copiedPages = copiedPages
            self.missed = missed
            self.watched = watched
        }
    }

    public var index: UInt64
    public var startNanos: UInt64
    public var durationNanos: UInt64
    public var mode: HarvestMode
    public var clearChunk: ClearChunk
    public var clearPolicy: ClearPolicy
    public var slots: [Slot]
    public var getLatency: LatencyStats
    public var clearLatency: LatencyStats
    public var bytesCopied: UInt64
    public var copyNanos: UInt64
    public var bookkeepingNanos: UInt64
    public var guestWrites: UInt64
    public var writeProtectFaults: UInt64
    public var exits: UInt64
    public var ringEntries: UInt64
    public var ringFullExits: UInt64
    public var verification: Verification?
    public var origins: FalsePositiveOrigins
    public var lostPages: Int

    /// The metrics of `round` (counts its bitmaps).
    public init(_ round: Round) {
        self.init(round, counts: round.slots.map { ($0.reportedCount, $0.falsePositiveCount) })
    }

    /// The metrics of `round`, whose slots' bitmaps have these counts.
    public init(_ round: Round, counts: [(reported: Int, falsePositives: Int)]) {
        index = round.index
        startNanos = round.startNanos
        durationNanos = round.durationNanos
        mode = round.mode
        clearChunk = round.clearChunk
        clearPolicy = round.clearPolicy
        slots = zip(round.slots, counts).map { s, c in
            Slot(slot: s.slot, reportedCount: c.reported, falsePositiveCount: c.falsePositives,
                 initialCount: s.initialCount, copiedPages: s.copiedPages, missed: s.missed, watched: s.watched)
        }
        getLatency = round.getLatency
        clearLatency = round.clearLatency
        bytesCopied = round.bytesCopied
        copyNanos = round.copyNanos
        bookkeepingNanos = round.bookkeepingNanos
        guestWrites = round.guestWrites
        writeProtectFaults = round.writeProtectFaults
        exits = round.exits
        ringEntries = round.ringEntries
        ringFullExits = round.ringFullExits
        verification = round.verification
        origins = round.origins
        lostPages = round.lostPages
    }

    /// An all-zero round in `mode`, to be filled by a decoder.
    public init(mode: HarvestMode, clearChunk: ClearChunk, clearPolicy: ClearPolicy = .auto) {
        index = 0
        startNanos = 0
        durationNanos = 0
        self.mode = mode
        self.clearChunk = clearChunk
        self.clearPolicy = HarvestSetting(mode: mode, policy: clearPolicy).policy
        slots = []
        getLatency = LatencyStats()
        clearLatency = LatencyStats()
        bytesCopied = 0
        copyNanos = 0
        bookkeepingNanos = 0
        guestWrites = 0
        writeProtectFaults = 0
        exits = 0
        ringEntries = 0
        ringFullExits = 0
        verification = nil
        origins = FalsePositiveOrigins()
        lostPages = 0
    }

    /// The round with these metrics and the given slot bitmaps (one `SlotRound` per `slots` entry).
    public func round(reported: [DirtyBitmap], falsePositives: [DirtyBitmap]) -> Round {
        let slotRounds = slots.indices.map { i in
            SlotRound(slot: slots[i].slot, reported: reported[i], falsePositives: falsePositives[i],
                      initialCount: slots[i].initialCount, copiedPages: slots[i].copiedPages,
                      missed: slots[i].missed, watched: slots[i].watched)
        }
        return Round(index: index, startNanos: startNanos, durationNanos: durationNanos, mode: mode,
                     clearChunk: clearChunk, clearPolicy: clearPolicy, slots: slotRounds, getLatency: getLatency, clearLatency: clearLatency,
                     bytesCopied: bytesCopied, copyNanos: copyNanos, bookkeepingNanos: bookkeepingNanos,
                     guestWrites: guestWrites, writeProtectFaults: writeProtectFaults, exits: exits,
                     ringEntries: ringEntries, ringFullExits: ringFullExits, verification: verification, origins: origins,
                     lostPages: lostPages)
    }

    public var reported: Int { slots.reduce(0) { $0 + $1.reportedCount } }
    public var falsePositives: Int { slots.reduce(0) { $0 + $1.falsePositiveCount } }
    public var initial: Int { slots.reduce(0) { $0 + $1.initialCount } }
    public var copiedPages: Int { slots.reduce(0) { $0 + $1.copiedPages } }
    /// Missed pages found at this round's verification point, or nil if it did not verify.
    public var missed: Int? { verification?.missed }
    /// Mode and policy as one label.
    public var setting: HarvestSetting { HarvestSetting(mode: mode, policy: clearPolicy) }

    /// False positives over the reported pages that were not first copies (0...1), as `Round`.
    public var falsePositiveRate: Double {
        let base = reported - initial
        return base > 0 ? Double(falsePositives) / Double(base) : 0
    }
}

/// Running sums over rounds: what the UI shows as "total" and `inspect` summarises.
public struct RoundTotals: Equatable, Codable, Sendable {
    public var rounds: UInt64 = 0
    public var reported: UInt64 = 0
    public var falsePositives: UInt64 = 0
    public var initial: UInt64 = 0
    public var copiedPages: UInt64 = 0
    public var bytesCopied: UInt64 = 0
    public var guestWrites: UInt64 = 0
    public var writeProtectFaults: UInt64 = 0
    /// Sum of `missed` over rounds that verified.
    public var missed: UInt64 = 0
    public var verifications: UInt64 = 0
    public var ringFullExits: UInt64 = 0
    public var get = LatencyStats()
    public var clear = LatencyStats()
    /// Nanoseconds covered by the rounds (sum of durations).
    public var durationNanos: UInt64 = 0
    /// Where the false positives came from.
    public var origins = FalsePositiveOrigins()
    /// Pages lost between copy and CLEAR (after-copy), as found when it happened.
    public var lostPages: UInt64 = 0

    public init() {}

    /// Adds one round.
    public mutating func add(_ round: Round) {
        add(RoundMetrics(round))
    }

    /// Adds one round from its metrics. Sums wrap rather than trap: they may come from a file.
    public mutating func add(_ m: RoundMetrics) {
        rounds &+= 1
        reported &+= UInt64(m.reported)
        falsePositives &+= UInt64(m.falsePositives)
        initial &+= UInt64(m.initial)
        copiedPages &+= UInt64(m.copiedPages)
        bytesCopied &+= m.bytesCopied
        guestWrites &+= m.guestWrites
        writeProtectFaults &+= m.writeProtectFaults
        ringFullExits &+= m.ringFullExits
        if let missed = m.missed {
            self.missed &+= UInt64(missed)
            verifications &+= 1
        }
        get.merge(m.getLatency)
        clear.merge(m.clearLatency)
        durationNanos &+= m.durationNanos
        origins.add(m.origins)
        lostPages &+= UInt64(m.lostPages)
    }

    /// False positives over reported pages that were not first copies (0...1).
    public var falsePositiveRate: Double {
        let base = reported &- initial
        return base > 0 && base <= reported ? Double(falsePositives) / Double(base) : 0
    }
}

/// A recorded session opened for replay: random access by round. Implemented by the
/// recording reader; the UI's replay view reads through it and needs no /dev/kvm.
public protocol RecordedSession: AnyObject {
    /// The header: what was recorded, on which host, with which settings.
    var info: SessionInfo { get }
    /// Whole rounds in the file.
    var roundCount: Int { get }
    /// Round `i` (0-based) with the events recorded after round `i - 1` and before it.
    func entry(at i: Int) throws -> (events: [TimedEvent], round: Round)
    /// Events after the last round.
    var trailingEvents: [TimedEvent] { get }
    /// Totals over rounds `0...i`, without decoding their bitmaps (cheap: for seeking).
    func totals(through i: Int) -> RoundTotals
    /// Every event recorded before round `i` (0-based), without decoding any round: a seek
    /// folds them, so settings changed long before its window of rounds still show.
    func events(before i: Int) -> [TimedEvent]
    /// What went wrong while opening (truncation, corrupt records skipped), a line each.
    var warnings: [String] { get }
}

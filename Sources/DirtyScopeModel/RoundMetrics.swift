/// One memslot's counts in a round: the per-slot metrics of the table (`Metric.perSlot`).
public struct SlotMetrics: Equatable, Sendable {
    /// Index into `SessionInfo.slots`.
    public var slot: Int
    private var counts = [Int](repeating: 0, count: Metric.slotPositions)

    /// A slot with these counts (the others 0).
    public init(slot: Int, _ values: [Metric: Int] = [:]) {
        self.slot = slot
        for (metric, value) in values { self[metric] = value }
    }

    /// A per-slot metric's count.
    public subscript(metric: Metric) -> Int {
        get { counts[metric.slotPosition] }
        set { counts[metric.slotPosition] = newValue }
    }

    /// Reported pages that really changed.
    public var truePositives: Int { self[.reportedPages] - self[.falsePositivePages] - self[.initialPages] }
}

/// One vCPU's share of a round's guest cost (from its timeline): what the per-vCPU
/// throughput strip draws.
public struct VCPUCost: Equatable, Sendable {
    public var vcpu: Int
    /// Page writes its timeline timed, and the work time they took (stalls included).
    public var writes: UInt64 = 0
    public var workNanos: UInt64 = 0
    public var stallNanos: UInt64 = 0
    /// Time its thread waited for a host CPU while it worked (steal time).
    public var cpuWaitNanos: UInt64 = 0
    /// What its stall time was spent beside, in `GuestStallCause` order (nil: no stall).
    public var mainCause: GuestStallCause?

    public init(vcpu: Int, writes: UInt64 = 0, workNanos: UInt64 = 0, stallNanos: UInt64 = 0, cpuWaitNanos: UInt64 = 0,
                mainCause: GuestStallCause? = nil) {
        self.vcpu = vcpu
        self.writes = writes
        self.workNanos = workNanos
        self.stallNanos = stallNanos
        self.cpuWaitNanos = cpuWaitNanos
        self.mainCause = mainCause
    }

    /// Page writes per second of work time (0 without work).
    public var throughput: Double { workNanos > 0 ? Double(writes) * 1e9 / Double(workNanos) : 0 }
}

/// A round without its bitmaps: what it was (index, time, mode) and every metric's value.
/// The reader gets these without decoding bitmaps, so timelines, totals, `inspect` and the
/// CSV export are cheap.
public struct RoundMetrics: Equatable, Sendable {
    /// 1-based round number.
    public var index: UInt64 = 0
    /// Start of the round, nanoseconds since the session started.
    public var startNanos: UInt64 = 0
    public var mode: HarvestMode
    public var clearChunk: ClearChunk
    /// Who cleared, and when (manual mode; `.auto` otherwise).
    public var clearPolicy: ClearPolicy
    /// Each slot's counts; their sums are the round's per-slot metrics in `values`.
    public var slots: [SlotMetrics] = []
    /// Set when this round ended at a verification point.
    public var verification: Verification?
    /// Each vCPU's guest cost this round, when the guest logs a timeline (ABI 3).
    public var vcpus: [VCPUCost] = []
    /// The round fields, latencies and origins (`values` adds the slots' sums and tallies).
    private var fields = MetricValues()

    /// Every metric's value for this round: the slots summed, `rounds` 1, `verifications`
    /// 1 if it verified.
    public var values: MetricValues {
        var v = fields
        for metric in Metric.perSlot {
            v[metric] = slots.reduce(0) { $0 &+ UInt64(truncatingIfNeeded: $1[metric]) }
        }
        v[.rounds] = 1
        v[.verifications] = verification == nil ? 0 : 1
        return v
    }

    /// An empty round in `mode`.
    public init(mode: HarvestMode, clearChunk: ClearChunk, clearPolicy: ClearPolicy = .auto) {
        self.mode = mode
        self.clearChunk = clearChunk
        self.clearPolicy = HarvestSetting(mode: mode, policy: clearPolicy).policy
    }

    /// A summed metric's value; the per-slot ones are the sums of `slots`, the tallies
    /// follow the round (`rounds` 1, `verifications` 1 if it verified).
    public subscript(metric: Metric) -> UInt64 {
        get {
            switch metric.spec.storage {
            case .round: return fields[metric]
            case .slot: return slots.reduce(0) { $0 &+ UInt64(truncatingIfNeeded: $1[metric]) }
            default: return values[metric]
            }
        }
        set {
            if case .round = metric.spec.storage { fields[metric] = newValue }
            else { preconditionFailure("\(metric) is not a round field: set it through slots or verification") }
        }
    }

    public var getDirtyLog: LatencyStats {
        get { fields.getDirtyLog }
        set { fields.getDirtyLog = newValue }
    }
    public var clearDirtyLog: LatencyStats {
        get { fields.clearDirtyLog }
        set { fields.clearDirtyLog = newValue }
    }
    public var guestStall: LatencyStats {
        get { fields.guestStall }
        set { fields.guestStall = newValue }
    }
    /// Where this round's false positives came from.
    public var origins: FalsePositiveOrigins {
        get { fields.origins }
        set { fields.origins = newValue }
    }

    /// Mode and policy as one label.
    public var setting: HarvestSetting { HarvestSetting(mode: mode, policy: clearPolicy) }
    /// Missed pages found at this round's verification point, or nil if it did not verify.
    public var missed: Int? { verification?.missed }
    /// False positives over the reported pages that were not first copies (0...1).
    public var falsePositiveFraction: Double { values.falsePositiveFraction }
    /// A metric as an `Int` (round counts are bounded by the slots' pages).
    public func count(_ metric: Metric) -> Int { Int(truncatingIfNeeded: self[metric]) }
}

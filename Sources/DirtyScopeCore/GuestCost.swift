import DirtyScopeModel

/// What the host does that can cost the guest: the spans the harvester records, on the
/// host's monotonic clock, to match with the guest's stalls.
public enum HostActivity: Int, CaseIterable, Sendable {
    /// KVM_GET_DIRTY_LOG (the slot's write protection, in legacy mode).
    case get
    /// KVM_CLEAR_DIRTY_LOG (the re-protection of a chunk).
    case clear
    /// Collecting the dirty rings and KVM_RESET_DIRTY_RINGS.
    case ring
    /// The consumer copying pages.
    case copy
    /// A verification point: the vCPUs stopped while every page is compared.
    case verify

    /// The stall cause a stall beside this activity is counted under.
    public var cause: GuestStallCause {
        switch self {
        case .get: return .get
        case .clear: return .clear
        case .ring: return .ring
        case .copy: return .copy
        case .verify: return .verify
        }
    }
}

/// Why the host held a vCPU out of KVM_RUN.
public enum ParkReason: Sendable, Equatable {
    /// Paused by the user, or at the round limit: the guest is not meant to run, so the
    /// time is neither work nor a stall.
    case paused
    /// Stopped for a verification point: a stall the session imposed.
    case verification
    /// Waiting for the rings to be reset after a full dirty ring: a stall tracking imposed.
    case ringFull
}

/// A span of time a vCPU was held out of KVM_RUN.
public struct Park: Equatable, Sendable {
    public var vcpu: Int
    public var start: UInt64
    public var end: UInt64
    public var reason: ParkReason

    public init(vcpu: Int, start: UInt64, end: UInt64, reason: ParkReason) {
        self.vcpu = vcpu
        self.start = start
        self.end = end
        self.reason = reason
    }
}

/// Spans of one kind of host work in the order they happened. One thread records them,
/// so they never overlap; prefix sums make the time they overlap any interval two binary
/// searches, however many small CLEARs a round makes.
struct SpanList {
    private(set) var starts: [UInt64] = []
    private(set) var ends: [UInt64] = []
    /// cumulative[i]: the total length of spans 0..<i.
    private var cumulative: [UInt64] = [0]

    var count: Int { starts.count }

    /// Appends [start, end); a span that starts before the last one ended is cut to begin there.
    mutating func append(_ start: UInt64, _ end: UInt64) {
        let s = max(start, ends.last ?? 0)
        guard end > s else { return }
        starts.append(s)
        ends.append(end)
        cumulative.append(cumulative.last! &+ (end - s))
    }

    /// How long the spans overlap [a, b).
    func overlap(_ a: UInt64, _ b: UInt64) -> UInt64 {
        guard b > a, !starts.isEmpty else { return 0 }
        let i = firstIndex(in: ends) { $0 > a }      // first span ending after a
        let j = firstIndex(in: starts) { $0 >= b }   // first span starting at or after b
        guard i < j else { return 0 }
        var total = cumulative[j] - cumulative[i]
        if starts[i] < a { total -= a - starts[i] }
        if ends[j - 1] > b { total -= ends[j - 1] - b }
        return total
    }

    /// The total length of every span.
    var totalNanos: UInt64 { cumulative.last! }

    /// Drops the spans that ended before `t`.
    mutating func drop(endingBefore t: UInt64) {
        let k = firstIndex(in: ends) { $0 >= t }
        guard k > 0 else { return }
        let base = cumulative[k]
        starts.removeFirst(k)
        ends.removeFirst(k)
        cumulative.removeFirst(k)
        for i in cumulative.indices { cumulative[i] -= base }
    }

    /// The first index whose value satisfies `test` (which holds from some index on).
    private func firstIndex(in values: [UInt64], where test: (UInt64) -> Bool) -> Int {
        var lo = 0, hi = values.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if test(values[mid]) { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }
}

/// When a chunk of guest writes counts as a stall: it took longer than its expected time
/// (its writes at the vCPU's usual cost per write) by more than the largest of
/// `minimumNanos`, `fraction` of the expected time and `allowanceWrites` writes' worth
/// (the loop around a chunk costs a few writes' time, which matters for small chunks).
public struct StallRule: Sendable, Equatable {
    public var minimumNanos: UInt64
    public var fraction: Double
    public var allowanceWrites: Double

    public init(minimumNanos: UInt64, fraction: Double, allowanceWrites: Double) {
        self.minimumNanos = minimumNanos
        self.fraction = fraction
        self.allowanceWrites = allowanceWrites
    }

    /// 20 µs, a quarter of the chunk's expected time, or 16 writes' worth, whichever is
    /// largest (README, "What tracking costs the guest").
    public static let standard = StallRule(minimumNanos: 20_000, fraction: 0.25, allowanceWrites: 16)

    /// The excess over `expected` (ns) beyond which a chunk is a stall, for a vCPU whose
    /// usual cost is `perWrite` ns a write.
    func threshold(expected: UInt64, perWrite: Double) -> UInt64 {
        max(minimumNanos, UInt64(min(Double(expected) * fraction, 1e18)), UInt64(min(perWrite * allowanceWrites, 1e18)))
    }
}

/// A round's guest cost as it is added up, then written into the round's metrics.
public struct GuestCost: Equatable, Sendable {
    public var stalls = LatencyStats()
    public var byCause = [UInt64](repeating: 0, count: GuestStallCause.allCases.count)
    public var stallCPUWaitNanos: UInt64 = 0
    public var workNanos: UInt64 = 0
    public var timedWrites: UInt64 = 0
    public var cpuWaitNanos: UInt64 = 0
    public var lostRecords: UInt64 = 0
    /// Every stall's length, in order, when the analyzer keeps them (`bench`'s exact percentiles).
    public var durations: [UInt64] = []
    public var vcpus: [VCPUCost]
    /// Per vCPU, its stall time by cause (for `VCPUCost.mainCause`).
    var vcpuCauses: [[UInt64]]

    public init(vcpus: Int) {
        self.vcpus = (0..<vcpus).map { VCPUCost(vcpu: $0) }
        vcpuCauses = Array(repeating: [UInt64](repeating: 0, count: GuestStallCause.allCases.count), count: vcpus)
    }

    /// The stall time, all causes.
    public var stallNanos: UInt64 { byCause.reduce(0, &+) }

    mutating func stall(vcpu: Int, cause: GuestStallCause, _ nanos: UInt64) {
        guard nanos > 0 else { return }
        byCause[cause.rawValue] &+= nanos
        vcpus[vcpu].stallNanos &+= nanos
        vcpuCauses[vcpu][cause.rawValue] &+= nanos
    }

    /// Writes the round's guest-cost metrics into `m`; a vCPU with nothing timed is left out.
    public func write(into m: inout RoundMetrics) {
        m.guestStall = stalls
        for cause in GuestStallCause.allCases { m[cause.metric] = byCause[cause.rawValue] }
        m[.guestStallCPUWait] = stallCPUWaitNanos
        m[.guestWorkNanos] = workNanos
        m[.guestTimedWrites] = timedWrites
        m[.guestCPUWaitNanos] = cpuWaitNanos
        m[.guestTimelineLost] = lostRecords
        m.vcpus = vcpus.indices.compactMap { i in
            var v = vcpus[i]
            guard v.workNanos > 0 || v.stallNanos > 0 else { return nil }
            let causes = vcpuCauses[i]
            if let top = causes.indices.max(by: { causes[$0] < causes[$1] }), causes[top] > 0 {
                v.mainCause = GuestStallCause(rawValue: top)
            }
            return v
        }
    }
}

/// Turns each vCPU's timeline into what the guest paid, and says what the host was doing
/// then. A timeline is a run of work intervals (a chunk's writes and how long they took,
/// on the host's clock) broken by host calls the guest made. Each vCPU's usual cost per
/// write is the median of its recent intervals' (time less steal time) per write; an
/// interval longer than its expected time by more than the stall rule allows is a stall
/// of that excess. Time the host held the vCPU (a verification point, a full dirty ring)
/// is a stall of its own; time the user paused it is neither work nor a stall.
///
/// A stall is matched with the host's spans it overlaps: the excess is split between
/// GET, CLEAR, ring work and copying in proportion to how long each overlapped it (each
/// at most its overlap), the rest is `other`. The part of a stall the vCPU's thread spent
/// waiting for a host CPU (steal time, from KVM) is counted too: on a host with as many
/// busy threads as cores, that is the host's own threads taking the guest's CPU.
///
/// Not thread-safe: the harvesting thread owns it.
final class GuestCostAnalyzer {
    /// Samples of the usual cost per write kept per vCPU, and how many are needed first.
    static let baselineSamples = 64
    static let baselineMinimum = 8
    /// Intervals with fewer writes than this do not feed the baseline (a paced guest's
    /// small chunks are dominated by the loop around them).
    static let baselineMinimumWrites: UInt32 = 16

    let rule: StallRule
    /// Keep every stall's length in `GuestCost.durations`.
    var keepsDurations = false
    private var spans = [SpanList](repeating: SpanList(), count: HostActivity.allCases.count)
    private var parks: [[Park]]

    private struct VCPUState {
        /// The last record's host time and steal time, or nil where the run is broken.
        var last: (time: UInt64, steal: UInt64)?
        var samples: [Double] = []
        var next = 0
        var sinceMedian = 0
        var median: Double?
    }
    private var states: [VCPUState]

    init(vcpus: Int, rule: StallRule = .standard) {
        self.rule = rule
        states = Array(repeating: VCPUState(), count: vcpus)
        parks = Array(repeating: [], count: vcpus)
    }

    var vcpuCount: Int { states.count }

    // MARK: The host's side

    /// Notes that the host did `activity` from `start` to `end` (monotonic ns).
    func record(_ activity: HostActivity, start: UInt64, end: UInt64) {
        spans[activity.rawValue].append(start, end)
    }

    /// Time spent in `activity` within [a, b).
    func time(in activity: HostActivity, from a: UInt64, to b: UInt64) -> UInt64 {
        spans[activity.rawValue].overlap(a, b)
    }

    /// Notes that a vCPU was held out of KVM_RUN.
    func park(_ p: Park) {
        guard p.vcpu >= 0, p.vcpu < parks.count, p.end > p.start else { return }
        parks[p.vcpu].append(p)
    }

    /// Forgets every vCPU's usual cost per write (the workload changed).
    func resetBaselines() {
        for i in states.indices {
            states[i].samples.removeAll()
            states[i].next = 0
            states[i].sinceMedian = 0
            states[i].median = nil
        }
    }

    /// Drops spans and parks that no interval still to come can overlap: those that ended
    /// before every vCPU's last record (and anything older than `horizon` ns before `now`,
    /// so a silent vCPU cannot make them pile up).
    func prune(now: UInt64, horizon: UInt64 = 10_000_000_000) {
        let oldest = states.compactMap { $0.last?.time }.min() ?? now
        let cut = max(oldest, now > horizon ? now - horizon : 0)
        for i in spans.indices { spans[i].drop(endingBefore: cut) }
        for v in parks.indices { parks[v].removeAll { $0.end < cut } }
    }

    // MARK: The guest's side

    /// Adds one timeline record of `vcpu` (nil: the run breaks) placed on the host's
    /// clock by `clock`, into `cost`.
    func add(vcpu v: Int, _ record: TimelineRecord?, clock: GuestClock, into cost: inout GuestCost) {
        guard v >= 0, v < states.count else { return }
        guard let r = record, clock.isCalibrated else { states[v].last = nil; return }
        let t = clock.hostNanos(tsc: r.tsc)
        defer { states[v].last = (t, r.steal) }
        guard let last = states[v].last, r.kind == .work, t > last.time else { return }
        let steal = r.steal >= last.steal ? r.steal - last.steal : 0
        interval(vcpu: v, from: last.time, to: t, writes: r.writes, steal: steal, into: &cost)
    }

    /// One work interval: `writes` page writes in [a, b), `steal` ns of it spent waiting for a CPU.
    func interval(vcpu v: Int, from a: UInt64, to b: UInt64, writes: UInt32, steal: UInt64, into cost: inout GuestCost) {
        var paused: UInt64 = 0, verification: UInt64 = 0, ringFull: UInt64 = 0
        for p in parks[v] where p.end > a && p.start < b {
            let o = min(p.end, b) - max(p.start, a)
            switch p.reason {
            case .paused: paused += o
            case .verification: verification += o
            case .ringFull: ringFull += o
            }
        }
        let length = b - a
        guard length > paused else { return }
        let work = length - paused
        let held = min(work, verification + ringFull)
        let running = work - held
        let waited = min(steal, running)
        cost.workNanos &+= work
        cost.timedWrites &+= UInt64(writes)
        cost.cpuWaitNanos &+= waited
        cost.vcpus[v].workNanos &+= work
        cost.vcpus[v].writes &+= UInt64(writes)
        cost.vcpus[v].cpuWaitNanos &+= waited

        var excess: UInt64 = 0
        if let perWrite = states[v].median {
            let expected = UInt64(min(Double(running), perWrite * Double(writes)))
            let over = running - expected
            if over > rule.threshold(expected: expected, perWrite: perWrite) { excess = over }
        }
        let stall = excess + held
        if stall > 0 {
            cost.stalls.record(stall)
            if keepsDurations { cost.durations.append(stall) }
            cost.stall(vcpu: v, cause: .verify, min(verification, held))
            cost.stall(vcpu: v, cause: .ring, held - min(verification, held))
        }
        if excess > 0 {
            let shared: [HostActivity] = [.get, .clear, .ring, .copy]
            let overlaps = shared.map { spans[$0.rawValue].overlap(a, b) }
            let overlapped = overlaps.reduce(0, +)
            var given: UInt64 = 0
            if overlapped > 0 {
                let scale = min(1, Double(excess) / Double(overlapped))
                for (activity, o) in zip(shared, overlaps) where o > 0 {
                    let part = min(excess - given, UInt64(Double(o) * scale))
                    cost.stall(vcpu: v, cause: activity.cause, part)
                    given += part
                }
            }
            cost.stall(vcpu: v, cause: .other, excess - given)
            cost.stallCPUWaitNanos &+= min(waited, excess)
        }
        // The interval feeds the baseline after it was judged by it.
        if writes >= Self.baselineMinimumWrites, held == 0 {
            addSample(vcpu: v, Double(running - waited) / Double(writes))
        }
    }

    private func addSample(vcpu v: Int, _ perWrite: Double) {
        var s = states[v]
        if s.samples.count < Self.baselineSamples {
            s.samples.append(perWrite)
        } else {
            s.samples[s.next] = perWrite
        }
        s.next = (s.next + 1) % Self.baselineSamples
        s.sinceMedian += 1
        if s.samples.count >= Self.baselineMinimum && (s.median == nil || s.sinceMedian >= 16) {
            let sorted = s.samples.sorted()
            s.median = sorted[sorted.count / 2]
            s.sinceMedian = 0
        }
        states[v] = s
    }

    /// A vCPU's usual cost per write in ns, once it has enough samples.
    func baseline(vcpu: Int) -> Double? { states[vcpu].median }
}

/// Reads every vCPU's timeline and clock exchanges from the guest each round and adds
/// up what the guest paid (`GuestCost`), matched with the spans the harvester recorded.
/// A guest that logs no timeline (ABI 2, or a user's guest) costs nothing here and its
/// rounds carry no guest cost.
final class GuestCostMeter {
    /// Clock exchanges asked for at the start (the best of them anchors the clock), and
    /// how often one more is asked for after that.
    static let initialExchanges: UInt64 = 3
    static let exchangeEvery: UInt64 = 1_000_000_000

    let analyzer: GuestCostAnalyzer
    private let machine: GuestMachine
    private var rings: [TimelineRing]
    private(set) var clocks: [GuestClock]
    private var lastExchange: [UInt64]

    init(machine: GuestMachine, rule: StallRule = .standard) {
        self.machine = machine
        let n = machine.vcpus.count
        analyzer = GuestCostAnalyzer(vcpus: n, rule: rule)
        rings = (0..<n).map { machine.timelineRing(vcpu: $0) }
        // Without KVM's TSC frequency nothing can be placed on the host's clock.
        clocks = machine.tscTicksPerSecond.map { GuestClock(ticksPerSecond: $0) }
        lastExchange = [UInt64](repeating: 0, count: n)
        for v in 0..<n where machine.tscTicksPerSecond[v] > 0 {
            let served = machine.clockExchanges(vcpu: v).served
            machine.requestClockExchanges(vcpu: v, count: served &+ Self.initialExchanges)
        }
    }

    /// Notes that the host did `activity` from `start` to `end`.
    @inline(__always)
    func record(_ activity: HostActivity, start: UInt64, end: UInt64) {
        analyzer.record(activity, start: start, end: end)
    }

    /// The guest's cost since the last call: parks first, then clock exchanges, then the
    /// timeline records, so every record is judged with what was known when it was written.
    func read(now: UInt64) -> GuestCost {
        for p in machine.takeParks() { analyzer.park(p) }
        let samples = machine.takeClockSamples()
        var cost = GuestCost(vcpus: rings.count)
        for v in rings.indices {
            for s in samples[v] where clocks[v].add(s) { lastExchange[v] = max(lastExchange[v], s.host) }
            let before = rings[v].lost &+ rings[v].invalid
            let clock = clocks[v]
            rings[v].read(head: { machine.timelineHead(vcpu: v) }) { record in
                analyzer.add(vcpu: v, record, clock: clock, into: &cost)
            }
            cost.lostRecords &+= (rings[v].lost &+ rings[v].invalid) &- before
            let (served, requested) = machine.clockExchanges(vcpu: v)
            if machine.tscTicksPerSecond[v] > 0, served >= requested, now > lastExchange[v] &+ Self.exchangeEvery {
                machine.requestClockExchanges(vcpu: v, count: requested &+ 1)
                lastExchange[v] = now
            }
        }
        analyzer.prune(now: now)
        return cost
    }

    /// Forgets each vCPU's usual cost per write (after a workload change).
    func resetBaselines() { analyzer.resetBaselines() }

    /// The clock alignment: the best anchor's half round trip, and the largest prediction
    /// error an exchange found, over the vCPUs (ns; nil before any exchange).
    var alignment: (bound: UInt64?, worstError: UInt64?) {
        (clocks.compactMap(\.alignmentBound).max(), clocks.compactMap(\.worstPredictionError).max())
    }
}

/// Every metric a round reports, declared once. A metric's row in `spec` says its name
/// (snake_case, with its unit), how rounds total, and where a recording keeps it; the
/// storage (`MetricValues`, `SlotMetrics`), the round record's presence bits, totals,
/// `inspect --json`, `bench --json`, the CSV export and the heatmap's readout all come
/// from this table. Adding a metric is a case here, its row, and its computation.
///
/// The order of the cases is the order of the columns.
public enum Metric: Int, CaseIterable, Sendable {
    case rounds
    case durationNanos
    case reportedPages
    case falsePositivePages
    case falsePositiveFraction
    case falsePositivesRaced
    case falsePositivesNeverCleared
    case falsePositivesRewritten
    case initialPages
    case copiedPages
    case copiedBytes
    case verifications
    case missedPages
    case lostPages
    case getDirtyLog
    case clearDirtyLog
    case copyNanos
    case bookkeepingNanos
    case guestWrites
    case writeProtectFaults
    case vcpuExits
    case ringEntriesHarvested
    case ringFullExits
    // What tracking cost the guest, from its own timeline (ABI 3): `GuestCost`.
    case guestStall
    case guestStallGet
    case guestStallClear
    case guestStallRing
    case guestStallCopy
    case guestStallVerify
    case guestStallOther
    case guestStallCPUWait
    case guestWorkNanos
    case guestTimedWrites
    case guestCPUWaitNanos
    case guestThroughput
    case guestTimelineLost

    /// The metric's row of the table.
    public var spec: MetricSpec {
        switch self {
        case .rounds:
            return MetricSpec("rounds", .rounds, .sum, .tally, "harvest rounds")
        case .durationNanos:
            return MetricSpec("duration_ns", .nanoseconds, .sum, .round(bit: 1 << 2), "from the start of the harvest to the end of the copy")
        case .reportedPages:
            return MetricSpec("reported_pages", .pages, .sum, .slot(bit: 1 << 0), "pages the dirty log (or ring) reported")
        case .falsePositivePages:
            return MetricSpec("false_positive_pages", .pages, .sum, .slot(bit: 1 << 1), "reported pages that had not changed since their last copy")
        case .falsePositiveFraction:
            return MetricSpec("false_positive_fraction", .fraction, .derived, .derived, "false positives over the reported pages that were not first copies")
        case .falsePositivesRaced:
            return MetricSpec("false_positives_raced_pages", .pages, .merge, .origins, "false positives written between re-protection and copy (the race)")
        case .falsePositivesNeverCleared:
            return MetricSpec("false_positives_never_cleared_pages", .pages, .merge, .origins, "false positives whose dirty bit was not cleared after their last copy")
        case .falsePositivesRewritten:
            return MetricSpec("false_positives_rewritten_pages", .pages, .sum, .round(bit: 1 << 29), "false positives written again with the content they had, after the window of their last copy had closed (silent rewrites)")
        case .initialPages:
            return MetricSpec("initial_pages", .pages, .sum, .slot(bit: 1 << 2), "reported pages never copied before (the bulk copy)")
        case .copiedPages:
            return MetricSpec("copied_pages", .pages, .sum, .slot(bit: 1 << 3), "pages copied to the destination")
        case .copiedBytes:
            return MetricSpec("copied_bytes", .bytes, .sum, .round(bit: 1 << 9), "bytes copied to the destination")
        case .verifications:
            return MetricSpec("verifications", .count, .sum, .tally, "rounds that ended at a verification point")
        case .missedPages:
            return MetricSpec("missed_pages", .pages, .sum, .slot(bit: 1 << 4), "changed pages never reported, found at a verification point")
        case .lostPages:
            return MetricSpec("lost_pages", .pages, .sum, .round(bit: 1 << 15), "pages written between their copy and their CLEAR (after-copy)")
        case .getDirtyLog:
            return MetricSpec("get_dirty_log", .nanoseconds, .merge, .latency(bit: 1 << 5), "KVM_GET_DIRTY_LOG calls (ring mode: ring harvests)")
        case .clearDirtyLog:
            return MetricSpec("clear_dirty_log", .nanoseconds, .merge, .latency(bit: 1 << 7), "KVM_CLEAR_DIRTY_LOG calls (ring mode: KVM_RESET_DIRTY_RINGS)")
        case .copyNanos:
            return MetricSpec("copy_ns", .nanoseconds, .sum, .round(bit: 1 << 8), "time copying pages, bandwidth pacing included")
        case .bookkeepingNanos:
            return MetricSpec("bookkeeping_ns", .nanoseconds, .sum, .round(bit: 1 << 3), "userspace work besides the ioctls and the copy")
        case .guestWrites:
            return MetricSpec("guest_writes", .count, .sum, .round(bit: 1 << 10), "page writes the guest made (its own counters)")
        case .writeProtectFaults:
            return MetricSpec("write_protect_faults", .count, .sum, .round(bit: 1 << 11), "write-protect faults the vCPUs took (KVM statistics)")
        case .vcpuExits:
            return MetricSpec("vcpu_exits", .count, .sum, .round(bit: 1 << 4), "vCPU exits (KVM statistics)")
        case .ringEntriesHarvested:
            return MetricSpec("ring_entries_harvested", .count, .sum, .round(bit: 1 << 12), "dirty-ring entries harvested")
        case .ringFullExits:
            return MetricSpec("ring_full_exits", .count, .sum, .round(bit: 1 << 13), "times a vCPU stopped on a full dirty ring")
        case .guestStall:
            return MetricSpec("guest_stall", .nanoseconds, .merge, .latency(bit: 1 << 27), "guest stalls: chunks of writes that took longer than the vCPU's usual time by more than the stall threshold, by how much")
        case .guestStallGet:
            return MetricSpec("guest_stall_get_ns", .nanoseconds, .sum, .round(bit: 1 << 16), "stall time while the host was in KVM_GET_DIRTY_LOG")
        case .guestStallClear:
            return MetricSpec("guest_stall_clear_ns", .nanoseconds, .sum, .round(bit: 1 << 17), "stall time while the host was in KVM_CLEAR_DIRTY_LOG")
        case .guestStallRing:
            return MetricSpec("guest_stall_ring_ns", .nanoseconds, .sum, .round(bit: 1 << 18), "stall time while the host collected or reset the dirty rings, or the vCPU waited on a full ring")
        case .guestStallCopy:
            return MetricSpec("guest_stall_copy_ns", .nanoseconds, .sum, .round(bit: 1 << 19), "stall time while the host copied pages")
        case .guestStallVerify:
            return MetricSpec("guest_stall_verify_ns", .nanoseconds, .sum, .round(bit: 1 << 20), "time the vCPUs were stopped for a verification point")
        case .guestStallOther:
            return MetricSpec("guest_stall_other_ns", .nanoseconds, .sum, .round(bit: 1 << 21), "stall time while the host did none of the above")
        case .guestStallCPUWait:
            return MetricSpec("guest_stall_cpu_wait_ns", .nanoseconds, .sum, .round(bit: 1 << 22), "the part of the stall time the vCPU's thread waited for a host CPU (steal time)")
        case .guestWorkNanos:
            return MetricSpec("guest_work_ns", .nanoseconds, .sum, .round(bit: 1 << 23), "time the vCPUs spent writing (stalls included; host calls and pauses the guest asked for left out)")
        case .guestTimedWrites:
            return MetricSpec("guest_timed_writes", .count, .sum, .round(bit: 1 << 24), "page writes the guest's timeline timed")
        case .guestCPUWaitNanos:
            return MetricSpec("guest_cpu_wait_ns", .nanoseconds, .sum, .round(bit: 1 << 25), "time the vCPUs' threads waited for a host CPU while the guest worked (steal time)")
        case .guestThroughput:
            return MetricSpec("guest_writes_per_vcpu_s", .perSecond, .derived, .derived, "page writes per second of a vCPU's work time: timed writes over work time")
        case .guestTimelineLost:
            return MetricSpec("guest_timeline_lost_records", .count, .sum, .round(bit: 1 << 26), "timeline records the guest overwrote before the host read them (or that failed their checks)")
        }
    }

    /// The metrics a round record keeps per slot, in their slot-bit order.
    public static let perSlot: [Metric] = allCases.filter { $0.slotBit != nil }.sorted { $0.slotBit! < $1.slotBit! }

    /// The metrics a round record keeps as round fields of their own (varints).
    public static let roundFields: [Metric] = allCases.filter { if case .round = $0.spec.storage { return true } else { return false } }

    /// The presence bit of a per-slot metric.
    public var slotBit: UInt8? {
        if case .slot(let bit) = spec.storage { return bit }
        return nil
    }

    /// Position in `SlotMetrics`' counts: the slot bit's number.
    var slotPosition: Int {
        guard let bit = slotBit else { preconditionFailure("\(self) is not a per-slot metric") }
        return bit.trailingZeroBitCount
    }

    /// How many counts `SlotMetrics` keeps.
    static let slotPositions = perSlot.map { $0.slotPosition + 1 }.max() ?? 0

    /// The output columns, in order: one per metric, a latency metric as six (calls, total,
    /// mean, max, and the upper bounds of the log2 buckets holding p50 and p99).
    public static let columns: [MetricColumn] = allCases.flatMap(\.columns)

    /// The columns of this metric.
    public var columns: [MetricColumn] {
        let s = spec
        switch self {
        case .falsePositiveFraction:
            return [MetricColumn(s.name, self) { .fraction($0.falsePositiveFraction) }]
        case .falsePositivesRaced:
            return [MetricColumn(s.name, self) { .integer(UInt64(truncatingIfNeeded: $0.origins.raced)) }]
        case .falsePositivesNeverCleared:
            return [MetricColumn(s.name, self) { .integer(UInt64(truncatingIfNeeded: $0.origins.neverCleared)) }]
        case .guestThroughput:
            return [MetricColumn(s.name, self) { .fraction($0.guestThroughput) }]
        case .getDirtyLog, .clearDirtyLog, .guestStall:
            let metric = self
            let latency: @Sendable (MetricValues) -> LatencyStats = { $0.latency(metric) }
            // ioctls count calls; stalls are events.
            let count = metric == .guestStall ? "_count" : "_calls"
            return [
                MetricColumn("\(s.name)\(count)", self) { .integer(latency($0).count) },
                MetricColumn("\(s.name)_ns_total", self) { .integer(latency($0).totalNanos) },
                MetricColumn("\(s.name)_ns_mean", self) { .integer(latency($0).meanNanos) },
                MetricColumn("\(s.name)_ns_max", self) { .integer(latency($0).maxNanos) },
                MetricColumn("\(s.name)_ns_p50_bucket_bound", self) { .integer(latency($0).percentileUpperBound(0.50)) },
                MetricColumn("\(s.name)_ns_p99_bucket_bound", self) { .integer(latency($0).percentileUpperBound(0.99)) },
            ]
        default:
            return [MetricColumn(s.name, self) { .integer($0[self]) }]
        }
    }
}

/// What the host was doing while a guest stall happened, each with its metric.
public enum GuestStallCause: Int, CaseIterable, Sendable {
    case get, clear, ring, copy, verify, other

    public var metric: Metric {
        switch self {
        case .get: return .guestStallGet
        case .clear: return .guestStallClear
        case .ring: return .guestStallRing
        case .copy: return .guestStallCopy
        case .verify: return .guestStallVerify
        case .other: return .guestStallOther
        }
    }

    /// A short label for tables and the UI.
    public var label: String {
        switch self {
        case .get: return "GET"
        case .clear: return "CLEAR"
        case .ring: return "ring"
        case .copy: return "copy"
        case .verify: return "verify"
        case .other: return "other"
        }
    }
}

/// A metric's row: what `Metric.spec` declares.
public struct MetricSpec: Sendable {
    /// snake_case, the unit in the name where it has one: the JSON key and CSV column
    /// (latency metrics add suffixes, see `Metric.columns`).
    public let name: String
    public let unit: MetricUnit
    public let total: MetricTotal
    public let storage: MetricStorage
    /// What it counts, in a line (the README's metric table says the same).
    public let help: String

    init(_ name: String, _ unit: MetricUnit, _ total: MetricTotal, _ storage: MetricStorage, _ help: String) {
        self.name = name
        self.unit = unit
        self.total = total
        self.storage = storage
        self.help = help
    }
}

public enum MetricUnit: String, Sendable {
    case rounds, pages, bytes, nanoseconds, count, fraction, perSecond
}

/// How a metric totals over rounds.
public enum MetricTotal: String, Sendable {
    /// Values add (wrapping: they may come from a file).
    case sum
    /// Histograms merge: counts add, the max is the largest.
    case merge
    /// Computed from other metrics' totals.
    case derived
}

/// Where a round record keeps a metric (FORMAT.md, "Round payload").
public enum MetricStorage: Equatable, Sendable {
    /// A varint round field with this presence bit, left out when zero.
    case round(bit: UInt64)
    /// A per-slot count with this slot presence bit; the round's value is the slots' sum.
    case slot(bit: UInt8)
    /// A latency histogram with this presence bit.
    case latency(bit: UInt64)
    /// Inside the false-positive origins field.
    case origins
    /// Not stored: counted from the round itself.
    case tally
    /// Computed from other metrics.
    case derived
}

/// One output column: its name and how to read it from a round's values or totals.
public struct MetricColumn: Sendable {
    public let name: String
    public let metric: Metric
    public let value: @Sendable (MetricValues) -> MetricCell

    init(_ name: String, _ metric: Metric, _ value: @escaping @Sendable (MetricValues) -> MetricCell) {
        self.name = name
        self.metric = metric
        self.value = value
    }
}

/// A column's value.
public enum MetricCell: Equatable, Sendable, CustomStringConvertible {
    case integer(UInt64)
    case fraction(Double)

    /// Integers as they are, fractions with 6 decimals (no exponent).
    public var description: String {
        switch self {
        case .integer(let n): return "\(n)"
        case .fraction(let f):
            guard f.isFinite, f >= 0, f < 1e12 else { return f.isNaN ? "0.000000" : "\(f)" }
            let micro = UInt64((f * 1_000_000).rounded())
            let fraction = String(micro % 1_000_000)
            return "\(micro / 1_000_000)." + String(repeating: "0", count: 6 - fraction.count) + fraction
        }
    }
}

/// The value of every metric: one round's, or the total of many (`add`).
public struct MetricValues: Equatable, Sendable {
    /// The `.sum` metrics, by `Metric.rawValue`.
    private var sums: [UInt64] = [UInt64](repeating: 0, count: Metric.allCases.count)
    public var getDirtyLog = LatencyStats()
    public var clearDirtyLog = LatencyStats()
    /// The guest's stalls (`Metric.guestStall`).
    public var guestStall = LatencyStats()
    /// Where the false positives came from.
    public var origins = FalsePositiveOrigins()

    public init() {}

    /// A summed metric's value (0 for the others).
    public subscript(metric: Metric) -> UInt64 {
        get { sums[metric.rawValue] }
        set { sums[metric.rawValue] = newValue }
    }

    /// A latency metric's histogram (empty for the other metrics).
    public func latency(_ metric: Metric) -> LatencyStats {
        switch metric {
        case .getDirtyLog: return getDirtyLog
        case .clearDirtyLog: return clearDirtyLog
        case .guestStall: return guestStall
        default: return LatencyStats()
        }
    }

    /// Adds `other`, metric by metric, as the table says each totals. Sums wrap rather
    /// than trap: values may come from a file.
    public mutating func add(_ other: MetricValues) {
        for metric in Metric.allCases {
            switch metric.spec.total {
            case .sum: sums[metric.rawValue] &+= other.sums[metric.rawValue]
            case .merge, .derived: break
            }
        }
        getDirtyLog.merge(other.getDirtyLog)
        clearDirtyLog.merge(other.clearDirtyLog)
        guestStall.merge(other.guestStall)
        origins.add(other.origins)
    }

    /// The summed metrics of `self` less those of `earlier` (totals through a later round
    /// less totals through an earlier one); histograms do not subtract, and are left empty.
    public func subtracting(_ earlier: MetricValues) -> MetricValues {
        var result = MetricValues()
        for i in sums.indices { result.sums[i] = sums[i] &- earlier.sums[i] }
        return result
    }

    /// False positives over the reported pages that were not first copies (0...1).
    public var falsePositiveFraction: Double {
        let reported = self[.reportedPages], initial = self[.initialPages]
        let base = reported &- initial
        return base > 0 && base <= reported ? min(1, Double(self[.falsePositivePages]) / Double(base)) : 0
    }

    /// Page writes per second of a vCPU's work time (0 without a timeline): how fast the
    /// guest writes while it runs, stalls included.
    public var guestThroughput: Double {
        let work = self[.guestWorkNanos]
        return work > 0 ? Double(self[.guestTimedWrites]) * 1e9 / Double(work) : 0
    }

    /// The guest's stall time by what the host was doing, in `GuestStallCause` order.
    public var guestStallByCause: [UInt64] { GuestStallCause.allCases.map { self[$0.metric] } }

    /// Every column's value, in `Metric.columns` order.
    public var cells: [(name: String, value: MetricCell)] {
        Metric.columns.map { ($0.name, $0.value(self)) }
    }
}

/// A JSON key from a string.
public struct NameKey: CodingKey {
    public var stringValue: String
    public var intValue: Int? { nil }
    public init(_ name: String) { stringValue = name }
    public init?(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}

/// `name` in snake_case: "guestPhysicalAddress" gives "guest_physical_address", and a
/// trailing "Nanos" becomes "_ns" ("intervalNanos": "interval_ns"). Names without a
/// lowercase letter ("KVM_CAP_...") and names already in snake_case stay as they are.
public func snakeCase(_ name: String) -> String {
    guard name.contains(where: \.isLowercase), name.contains(where: \.isUppercase) else { return name }
    var out = ""
    for c in name {
        if c.isUppercase {
            if !out.isEmpty { out.append("_") }
            out.append(contentsOf: c.lowercased())
        } else {
            out.append(c)
        }
    }
    return out.hasSuffix("_nanos") ? String(out.dropLast(6)) + "_ns" : out
}

extension MetricValues: Encodable {
    /// Every metric column, by name (`Metric.columns`).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: NameKey.self)
        try encode(into: &c)
    }

    public func encode(into c: inout KeyedEncodingContainer<NameKey>) throws {
        for (name, cell) in cells {
            switch cell {
            case .integer(let n): try c.encode(n, forKey: NameKey(name))
            case .fraction(let f): try c.encode(f, forKey: NameKey(name))
            }
        }
    }
}

import DirtyScopeModel
import Foundation
import KVM

/// What `dirtyscope bench --suite guest` runs: the guest writes without stopping (a
/// sweep at full speed, as a migrating guest would), the host harvests at an interval
/// while it does, as a migration thread would, and the guest's own timeline says what
/// each mode and clear chunk cost it, against an untracked run of the same guest.
public struct GuestCostConfig: Sendable {
    /// Guest memory sizes to try (all vCPUs together).
    public var guestBytes: [Int] = [1 << 30]
    /// vCPU counts to try.
    public var vcpus: [Int] = [1, 2]
    public var slots = 1
    public var modes: [HarvestMode] = [.untracked, .legacy, .manual, .ring]
    /// CLEAR chunks to try in manual mode.
    public var clearChunks: [ClearChunk] = [.pages(64), .pages(4096), .wholeSlot]
    /// Passes measured per vCPU, after the populating pass.
    public var passes = 3
    public var workload = WorkloadSettings(workload: .sweep, rate: 0)
    /// Harvest interval, start to start (0: back to back).
    public var intervalNanos: UInt64 = 100_000_000
    /// Consumer bandwidth, bytes per second; 0 copies as fast as memcpy goes.
    public var bandwidth: UInt64 = 0
    public var ringEntries = 65536
    /// The guest logs its timeline; off only to measure what logging costs (no stall figures then).
    public var timeline = true
    public var stallRule = StallRule.standard
    /// Longest the guest may write nothing before a run is ended as stalled.
    public var progressTimeoutNanos: UInt64 = 10_000_000_000

    public init() {}

    /// The runs, in order: every size, every vCPU count, every mode (manual once per chunk).
    public var runs: [(bytes: Int, vcpus: Int, mode: HarvestMode, chunk: ClearChunk?)] {
        var out: [(Int, Int, HarvestMode, ClearChunk?)] = []
        for bytes in guestBytes {
            for n in vcpus {
                for mode in modes {
                    if mode.entry.manualProtect {
                        for chunk in clearChunks { out.append((bytes, n, mode, chunk)) }
                    } else {
                        out.append((bytes, n, mode, nil))
                    }
                }
            }
        }
        return out
    }

    /// Checks values; errors name the value and what is allowed.
    public func validate() throws(SessionError) {
        let page = PageSize.system
        guard !guestBytes.isEmpty, !vcpus.isEmpty, !modes.isEmpty else {
            throw .invalidArgument("the guest suite needs at least one size, one vCPU count and one mode")
        }
        for bytes in guestBytes {
            guard bytes > 0, bytes % page == 0, bytes / page <= SessionLimits.maxTotalPages else {
                throw .invalidArgument("guest memory \(bytes) bytes: allowed a multiple of the page size \(page) up to \(SessionLimits.maxTotalPages) pages")
            }
            for n in vcpus {
                guard n >= 1, n <= SessionLimits.maxVCPUs else { throw .invalidArgument("\(n) vCPUs: allowed 1 to \(SessionLimits.maxVCPUs)") }
                guard bytes / page / n >= slots, slots >= 1, slots <= SessionLimits.maxSlots else {
                    throw .invalidArgument("\(slots) memslots cannot share \(bytes / page) pages among \(n) vCPUs")
                }
            }
        }
        guard passes >= 1, passes <= 1000 else { throw .invalidArgument("\(passes) passes: allowed 1 to 1000") }
        guard workload.workload != .idle else { throw .invalidArgument("the idle workload writes nothing to measure") }
        do { try SessionLimits.checkRingEntries(ringEntries) } catch { throw .invalidArgument(error.description) }
    }

    func slotBytes(_ bytes: Int) -> [Int] {
        let page = PageSize.system
        let pages = bytes / page
        return (0..<slots).map { i in (pages * (i + 1) / slots - pages * i / slots) * page }
    }
}

/// One run's figures. Stall figures are per iteration: one pass of every vCPU.
public struct GuestCostResult: Encodable, Sendable {
    public var guestBytes: Int
    public var vcpus: Int
    public var mode: HarvestMode
    public var clearChunk: ClearChunk?
    public var passes: Int
    public var rounds: Int
    /// The host's view: each measured pass's wall time, every vCPU (from its DS_PORT_PASS calls).
    public var passNanosEach: [UInt64]
    /// The guest's view, over the measured rounds.
    public var metrics: MetricValues
    /// Every stall's length.
    public var stallNanosEach: [UInt64]
    /// The host's time reading the timelines and matching them with its spans, per round.
    public var analysisNanosPerRound: UInt64 = 0
    public var clockAlignmentBoundNanos: UInt64?
    public var clockWorstPredictionErrorNanos: UInt64?
    public var stealTime: Bool
    public var missedPages: Int
    /// Why the run ended early (a guest fault, no progress), if it did.
    public var failure: String?
    /// Filled against the untracked run of the same size and vCPUs, when there is one.
    public var passVersusUntracked: Double?
    public var throughputVersusUntracked: Double?

    /// "legacy", "manual/64", "ring".
    public var label: String {
        guard mode.entry.manualProtect, let c = clearChunk else { return mode.rawValue }
        return "\(mode.rawValue)/\(c)"
    }

    public var passNanosMedian: UInt64 { median(passNanosEach) }
    /// Passes of every vCPU the measured rounds covered: `passes`, or more where the
    /// harvest thread got no round in while they ran (a loaded host).
    var coveredPasses = 0
    var iterations: UInt64 { UInt64(max(1, coveredPasses > 0 ? coveredPasses : passes)) }
    public var stallNanosPerIteration: UInt64 { metrics.guestStall.totalNanos / iterations }

    /// The stall lengths' exact percentile (nearest rank), 0 with none.
    public func stallPercentile(_ p: Double) -> UInt64 {
        let sorted = stallNanosEach.sorted()
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((Double(sorted.count) * min(1, max(0, p))).rounded(.up))
        return sorted[min(sorted.count, max(1, rank)) - 1]
    }

    enum Key: String, CodingKey {
        case guestBytes = "guest_bytes", vcpus, mode, clearChunk = "clear_chunk_pages", passes, rounds
        case passNs = "pass_ns_median", passNsEach = "pass_ns_each", passVsUntracked = "pass_time_vs_untracked"
        case stallPerIteration = "guest_stall_ns_per_iteration", stallP50 = "guest_stall_ns_p50", stallP99 = "guest_stall_ns_p99"
        case stallMax = "guest_stall_ns_max", stallCount = "guest_stalls", byCause = "guest_stall_ns_per_iteration_by_cause"
        case throughputVsUntracked = "guest_throughput_vs_untracked", alignment = "clock_alignment_bound_ns"
        case predictionError = "clock_worst_prediction_error_ns", stealTime = "steal_time", missed = "missed_pages", failure
        case analysis = "timeline_analysis_ns_per_round"
        case metrics
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(guestBytes, forKey: .guestBytes)
        try c.encode(vcpus, forKey: .vcpus)
        try c.encode(mode.rawValue, forKey: .mode)
        try c.encode(clearChunk?.description ?? "-", forKey: .clearChunk)
        try c.encode(passes, forKey: .passes)
        try c.encode(rounds, forKey: .rounds)
        try c.encode(passNanosMedian, forKey: .passNs)
        try c.encode(passNanosEach, forKey: .passNsEach)
        try c.encodeIfPresent(passVersusUntracked, forKey: .passVsUntracked)
        try c.encode(stallNanosPerIteration, forKey: .stallPerIteration)
        try c.encode(stallPercentile(0.5), forKey: .stallP50)
        try c.encode(stallPercentile(0.99), forKey: .stallP99)
        try c.encode(metrics.guestStall.maxNanos, forKey: .stallMax)
        try c.encode(metrics.guestStall.count, forKey: .stallCount)
        var causes: [String: UInt64] = [:]
        for cause in GuestStallCause.allCases { causes[cause.label.lowercased()] = metrics[cause.metric] / iterations }
        causes["cpu_wait"] = metrics[.guestStallCPUWait] / iterations
        try c.encode(causes, forKey: .byCause)
        try c.encodeIfPresent(throughputVersusUntracked, forKey: .throughputVsUntracked)
        try c.encodeIfPresent(clockAlignmentBoundNanos, forKey: .alignment)
        try c.encodeIfPresent(clockWorstPredictionErrorNanos, forKey: .predictionError)
        try c.encode(stealTime, forKey: .stealTime)
        try c.encode(missedPages, forKey: .missed)
        try c.encodeIfPresent(failure, forKey: .failure)
        try c.encode(analysisNanosPerRound, forKey: .analysis)
        try c.encode(metrics, forKey: .metrics)
    }
}

/// The median of `values` (0 when empty).
func median(_ values: [UInt64]) -> UInt64 {
    let s = values.sorted()
    return s.isEmpty ? 0 : s[s.count / 2]
}

public enum GuestCostBench {
    /// Runs every configuration; `progress` gets a line per run.
    public static func run(_ config: GuestCostConfig, system: KVMSystem, progress: (String) -> Void = { _ in }) throws(SessionError) -> [GuestCostResult] {
        try config.validate()
        var results: [GuestCostResult] = []
        for r in config.runs {
            let result = try runOne(config, bytes: r.bytes, vcpus: r.vcpus, mode: r.mode, chunk: r.chunk ?? .pages(64), system: system)
            progress("[\(formatBytes(UInt64(r.bytes))), \(r.vcpus) vCPU\(r.vcpus == 1 ? "" : "s"), \(result.label)] "
                     + "pass \(formatNanos(result.passNanosMedian)), stall \(formatNanos(result.stallNanosPerIteration))/iteration, "
                     + "\(result.rounds) rounds" + (result.failure.map { ": \($0)" } ?? ""))
            results.append(result)
        }
        // Each run against the untracked run of its size and vCPUs.
        for i in results.indices {
            guard let base = results.first(where: { $0.mode == .untracked && $0.guestBytes == results[i].guestBytes && $0.vcpus == results[i].vcpus }),
                  base.failure == nil, results[i].failure == nil else { continue }
            if base.passNanosMedian > 0 { results[i].passVersusUntracked = Double(results[i].passNanosMedian) / Double(base.passNanosMedian) }
            if base.metrics.guestThroughput > 0 {
                results[i].throughputVersusUntracked = results[i].metrics.guestThroughput / base.metrics.guestThroughput
            }
        }
        return results
    }

    /// Wakes the bench's thread when a vCPU stops on a full ring (it drains at once).
    private final class Wake: @unchecked Sendable {
        let condition = MonotonicCondition()
        var ringFull = false
        func post() { condition.lock(); ringFull = true; condition.broadcast(); condition.unlock() }
    }

    static func runOne(_ config: GuestCostConfig, bytes: Int, vcpus: Int, mode: HarvestMode, chunk: ClearChunk,
                       system: KVMSystem) throws(SessionError) -> GuestCostResult {
        let entry = mode.entry
        let machine = try GuestMachine(system: system, config: MachineConfig(
            slotBytes: config.slotBytes(bytes), vcpus: vcpus, ringEntries: entry.source == .rings ? config.ringEntries : 0,
            initialManualProtect: entry.manualProtect ? [.enable] : [], workload: config.workload,
            guestTimeline: config.timeline, trackDirtyPages: entry.tracks))
        defer { machine.stop() }
        let harvester = try Harvester(machine: machine, mode: mode, clearChunk: chunk, clearPolicy: .auto,
                                      method: .stamp, bandwidth: config.bandwidth)
        harvester.meter.analyzer.keepsDurations = true
        let wake = Wake()
        machine.onRingFull = { _, _ in wake.post() }
        var result = GuestCostResult(
            guestBytes: bytes, vcpus: vcpus, mode: mode, clearChunk: entry.manualProtect ? chunk : nil, passes: config.passes,
            rounds: 0, passNanosEach: [], metrics: MetricValues(), stallNanosEach: [], stealTime: machine.stealTime, missedPages: 0)

        var passTimes = [[UInt64]](repeating: [], count: vcpus)
        var measuring = false
        var measuredFrom = 0
        var lastWrites = machine.guestWrites, lastProgress = monotonicNanos()
        var next = monotonicNanos()
        machine.start()
        while true {
            // Sleep until the next round; a full ring is drained at once.
            wake.condition.lock()
            while monotonicNanos() < next && !wake.ringFull { wake.condition.wait(untilNanos: next) }
            let drain = wake.ringFull
            wake.ringFull = false
            wake.condition.unlock()
            if drain {
                do { try harvester.drainRings() } catch { throw .kvm(error) }
                if monotonicNanos() < next { continue }
            }
            next = max(next &+ config.intervalNanos, monotonicNanos())
            if let fault = machine.currentFault { result.failure = "guest fault: \(fault)"; break }

            let round = try harvester.harvestRound()
            for (v, times) in machine.takePassTimes().enumerated() { passTimes[v] += times }
            if measuring {
                result.rounds += 1
                result.metrics.add(round.values)
                result.stallNanosEach += harvester.lastGuestCost?.durations ?? []
            } else if passTimes.allSatisfy({ !$0.isEmpty }) {
                // Every vCPU has populated its memory: measure from the next round on.
                measuring = true
                measuredFrom = passTimes.map(\.count).min() ?? 0
            }
            // Done once every vCPU ran its passes and at least one round measured them.
            if result.rounds > 0, passTimes.allSatisfy({ $0.count > config.passes }) {
                result.coveredPasses = max(config.passes, (passTimes.map(\.count).min() ?? 0) - measuredFrom)
                break
            }

            let writes = machine.guestWrites, now = monotonicNanos()
            if writes != lastWrites { lastWrites = writes; lastProgress = now }
            if now - lastProgress > config.progressTimeoutNanos {
                result.failure = "no guest write for \(formatNanos(now - lastProgress))"
                    + (entry.source == .rings ? " (the dirty ring stopped moving: \(machine.ringFullExits) ring-full exits)" : "")
                break
            }
        }
        for times in passTimes where times.count > 1 {
            for k in 1..<min(times.count, config.passes + 1) { result.passNanosEach.append(times[k] - times[k - 1]) }
        }
        // The end: every page compared with the vCPUs stopped (nothing to compare untracked).
        if result.failure == nil, entry.tracks {
            machine.pause(reason: .verification)
            let last = try harvester.harvestRound(verify: true)
            result.missedPages = last.metrics.verification?.missed ?? 0
        }
        result.analysisNanosPerRound = harvester.guestCostNanos / max(1, harvester.roundsHarvested)
        let alignment = harvester.meter.alignment
        result.clockAlignmentBoundNanos = alignment.bound
        result.clockWorstPredictionErrorNanos = alignment.worstError
        return result
    }
}

/// The guest suite's report: one table per guest size and vCPU count.
public func guestCostTables(_ results: [GuestCostResult], config: GuestCostConfig, load: String) -> String {
    var out = "dirtyscope bench --suite guest: \(config.workload.summary), \(config.passes) passes measured per vCPU after the populating one, "
        + "harvest every \(config.intervalNanos == 0 ? "round back to back" : formatNanos(config.intervalNanos)), "
        + "copy \(config.bandwidth == 0 ? "unlimited" : formatBytes(config.bandwidth) + "/s"); load average \(load)\n"
    out += "Stall times are per iteration (one pass of every vCPU); \"vs untr\" compares with the untracked run of the same guest.\n"
    var groups: [(Int, Int)] = []
    for r in results where !groups.contains(where: { $0 == (r.guestBytes, r.vcpus) }) { groups.append((r.guestBytes, r.vcpus)) }
    for (bytes, n) in groups {
        let rows = results.filter { $0.guestBytes == bytes && $0.vcpus == n }
        out += "\n\(formatBytes(UInt64(bytes))) guest, \(n) vCPU\(n == 1 ? "" : "s")\n"
        let header = ["mode", "pass", "vs untr", "stall", "GET", "CLEAR", "ring", "copy", "verify", "other", "cpu wait",
                      "p50", "p99", "max", "stalls", "writes/s", "vs untr", "FP rate", "CLEARs", "missed"]
        var table: [[String]] = [header]
        for r in rows {
            let m = r.metrics, it = r.iterations
            var row = [r.label, formatNanos(r.passNanosMedian), r.passVersusUntracked.map { String(format: "%.3f", $0) } ?? "-"]
            row.append(formatNanos(r.stallNanosPerIteration))
            for cause in GuestStallCause.allCases { row.append(formatNanos(m[cause.metric] / it)) }
            row.append(formatNanos(m[.guestStallCPUWait] / it))
            row += [formatNanos(r.stallPercentile(0.5)), formatNanos(r.stallPercentile(0.99)), formatNanos(m.guestStall.maxNanos),
                    "\(m.guestStall.count)"]
            row.append(m.guestThroughput > 0 ? formatRate(m.guestThroughput) : "-")
            row.append(r.throughputVersusUntracked.map { String(format: "%.3f", $0) } ?? "-")
            row.append(r.mode.entry.tracks ? String(format: "%.2f%%", m.falsePositiveFraction * 100) : "-")
            row.append(r.mode.entry.manualProtect ? "\(m.clearDirtyLog.count / it)" : "-")
            row.append(r.mode.entry.tracks ? (r.failure == nil ? "\(r.missedPages)" : "-") : "-")
            table.append(row)
        }
        out += formatTable(table)
        for r in rows where r.failure != nil { out += "\(r.label): \(r.failure!)\n" }
        if let base = rows.first(where: { $0.mode == .untracked && $0.failure == nil }) {
            var lines: [String] = []
            for r in rows where r.mode != .untracked && r.failure == nil {
                let extra = Double(r.passNanosMedian) - Double(base.passNanosMedian)
                lines.append("\(r.label) \(formatSigned(extra * Double(n))) against stall \(formatNanos(r.stallNanosPerIteration))")
            }
            if !lines.isEmpty { out += "pass time beyond untracked, all vCPUs, per iteration: " + lines.joined(separator: "; ") + "\n" }
        }
    }
    if let r = results.first {
        out += "\nclock alignment: half the best exchange's round trip \(r.clockAlignmentBoundNanos.map(formatNanos) ?? "-"); "
            + "worst prediction error \(results.compactMap(\.clockWorstPredictionErrorNanos).max().map(formatNanos) ?? "-"); "
            + "steal time \(r.stealTime ? "on" : "not offered by this host")\n"
        out += "reading the timelines and matching them with the host's spans took the host "
            + "\(formatNanos(median(results.map(\.analysisNanosPerRound)))) a round (median of the runs)\n"
    }
    return out
}

/// A signed duration: "+1.2ms", "-45us".
func formatSigned(_ nanos: Double) -> String {
    (nanos < 0 ? "-" : "+") + formatNanos(UInt64(min(abs(nanos), 1.8e19)))
}

/// "404k/s", "1.2M/s".
func formatRate(_ perSecond: Double) -> String {
    if perSecond >= 1e6 { return String(format: "%.2fM/s", perSecond / 1e6) }
    if perSecond >= 1e3 { return String(format: "%.0fk/s", perSecond / 1e3) }
    return String(format: "%.0f/s", perSecond)
}

/// Columns padded to their widest cell: the first left-aligned, the rest right-aligned.
func formatTable(_ rows: [[String]]) -> String {
    guard let header = rows.first else { return "" }
    let widths = header.indices.map { i in rows.map { i < $0.count ? $0[i].count : 0 }.max() ?? 0 }
    var out = ""
    for (n, row) in rows.enumerated() {
        out += row.enumerated().map { i, cell in
            i == 0 ? cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                   : String(repeating: " ", count: max(0, widths[i] - cell.count)) + cell
        }.joined(separator: "  ") + "\n"
        if n == 0 { out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
    }
    return out
}

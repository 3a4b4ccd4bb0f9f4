import DirtyScopeModel
import Foundation
import KVM

/// What `dirtyscope bench` runs.
public struct BenchConfig: Sendable {
    /// Guest memory per vCPU in bytes (dirty_log_perf_test's -b).
    public var memoryPerVCPU = 256 << 20
    public var vcpus = 2
    /// Data memslots the memory is split into (dirty_log_perf_test's -x).
    public var slots = 1
    /// Iterations after the populating pass (dirty_log_perf_test's -i).
    public var iterations = 10
    public var workload = WorkloadSettings(workload: .sweep, rate: 0)
    /// Percent of each vCPU's pages written per iteration.
    public var dirtyPercent = 100
    public var modes: [HarvestMode] = [.legacy, .manual]
    /// Clear chunks to try in manual mode (legacy and ring run once).
    public var clearChunks: [ClearChunk] = [.pages(64)]
    /// Clear policies to try in manual mode, each with every chunk.
    public var clearPolicies: [ClearPolicy] = [.auto]
    /// Consumer bandwidth, bytes per second; 0 copies as fast as memcpy goes.
    public var bandwidth: UInt64 = 0
    public var ringEntries = SessionLimits.maxRingEntries
    public var falsePositiveMethod: FalsePositiveMethod = .stamp
    /// Copy (and, in manual mode, CLEAR) while the guest writes the next iteration, so the
    /// race is real; false does it all before the next iteration starts, with the vCPUs
    /// waiting, as dirty_log_perf_test does its GET and CLEAR.
    public var overlap = true
    /// How the host thread waits for the vCPUs to finish a pass.
    public var passWait: PassWait = .sleep

    public init() {}

    /// Checks values; errors name the value and what is allowed.
    public func validate() throws(SessionError) {
        let page = PageSize.system
        guard memoryPerVCPU > 0, memoryPerVCPU % page == 0 else {
            throw .invalidArgument("memory per vCPU \(memoryPerVCPU) bytes is not a positive multiple of the page size \(page)")
        }
        guard vcpus >= 1, vcpus <= SessionLimits.maxVCPUs else {
            throw .invalidArgument("\(vcpus) vCPUs: allowed 1 to \(SessionLimits.maxVCPUs)")
        }
        guard slots >= 1, slots <= SessionLimits.maxSlots else {
            throw .invalidArgument("\(slots) memslots: allowed 1 to \(SessionLimits.maxSlots)")
        }
        let (total, overflow) = memoryPerVCPU.multipliedReportingOverflow(by: vcpus)
        guard !overflow, total / page <= SessionLimits.maxTotalPages else {
            throw .invalidArgument("memory per vCPU \(memoryPerVCPU) bytes times \(vcpus) vCPUs exceeds the \(SessionLimits.maxTotalPages)-page limit (\(SessionLimits.maxTotalPages / (1 << 30 / page)) GiB of \(page)-byte pages)")
        }
        guard (memoryPerVCPU * vcpus / page) / slots >= 1 else {
            throw .invalidArgument("\(slots) memslots cannot share \(memoryPerVCPU * vcpus / page) pages")
        }
        do { try SessionLimits.checkRingEntries(ringEntries) } catch { throw .invalidArgument(error.description) }
        guard iterations >= 1 else { throw .invalidArgument("\(iterations) iterations: at least 1 is needed") }
        guard (1...100).contains(dirtyPercent) else { throw .invalidArgument("dirty percent \(dirtyPercent) is not between 1 and 100") }
        guard !modes.isEmpty else { throw .invalidArgument("no mode given (allowed: \(HarvestMode.allCases.map(\.rawValue).joined(separator: ", ")))") }
        guard !clearPolicies.isEmpty else { throw .invalidArgument("no clear policy given (allowed: auto, hand, after-copy, at-get)") }
        guard workload.workload != .idle else { throw .invalidArgument("the idle workload writes nothing to measure") }
    }

    /// Slot sizes: the memory split evenly, the last slot taking the remainder.
    var slotBytes: [Int] {
        let page = PageSize.system
        let pages = memoryPerVCPU * vcpus / page
        return (0..<slots).map { i in (pages * (i + 1) / slots - pages * i / slots) * page }
    }
}

/// How the bench's host thread waits for the vCPUs to finish a pass. The GET that follows
/// pays for it: on this nested host a legacy GET made by a thread just woken from a sleep
/// took up to 14% longer than one made by a thread that had been spinning (README).
public enum PassWait: String, CaseIterable, Sendable, Encodable {
    /// On a condition variable, as a VMM's migration thread would.
    case sleep
    /// Busy-waiting on the vCPUs' progress, as dirty_log_perf_test's main thread does.
    case spin
}

/// One mode's figures: dirty_log_perf_test's (populate and dirty memory time, GET and
/// CLEAR per iteration), the bench's own, and every metric of the table (`Metric`) summed
/// over the timed iterations. JSON keys are snake_case with units, the metrics' as
/// `Metric.columns` names them.
public struct BenchResult: Encodable, Sendable {
    public var setting: HarvestSetting
    /// Manual mode's clear chunk (nil in the other modes).
    public var clearChunk: ClearChunk?
    public var iterations: Int
    public var memoryBytes: UInt64
    public var vcpus: Int
    public var slots: Int
    public var workload: String
    public var passWait: PassWait
    public var populateMemoryNanos: UInt64
    public var dirtyMemoryTotalNanos: UInt64
    public var sourceResidentBytes: UInt64
    public var destinationResidentBytes: UInt64
    public var peakRSSBytes: UInt64
    /// Page writes the guest made per timed iteration (all vCPUs).
    public var guestWritesPerIteration: UInt64
    /// vCPU statistics (`Bench.breakdownStats`) summed over vCPUs, per timed iteration:
    /// where the guest's time goes (exits by kind, page faults, emulated instructions).
    public var vcpuStatsPerIteration: [String: UInt64]
    /// Every metric, summed over the timed iterations' rounds.
    public var metrics: MetricValues
    /// Each timed iteration's GET and CLEAR time, in iteration order (what
    /// dirty_log_perf_test prints as "Iteration N get dirty log time").
    public var getNanosEachIteration: [UInt64] = []
    public var clearNanosEachIteration: [UInt64] = []

    var perIteration: UInt64 { UInt64(max(1, iterations)) }
    public var dirtyMemoryAverageNanos: UInt64 { dirtyMemoryTotalNanos / perIteration }
    /// GET (and CLEAR) time per iteration, as dirty_log_perf_test averages it.
    public var getPerIterationNanos: UInt64 { metrics.getDirtyLog.totalNanos / perIteration }
    public var clearPerIterationNanos: UInt64 { metrics.clearDirtyLog.totalNanos / perIteration }
    public var longestIoctlNanos: UInt64 { max(metrics.getDirtyLog.maxNanos, metrics.clearDirtyLog.maxNanos) }
    /// Bookkeeping as a percentage of the time in GET and CLEAR.
    public var bookkeepingPercentOfIoctl: Double {
        let ioctl = metrics.getDirtyLog.totalNanos &+ metrics.clearDirtyLog.totalNanos
        return ioctl > 0 ? Double(metrics[.bookkeepingNanos]) * 100 / Double(ioctl) : 0
    }

    /// The keys besides the metrics' columns, in the order `encode` writes them.
    public static let ownKeys = [
        "mode", "clear_policy", "clear_chunk_pages", "iterations", "memory_bytes", "vcpus", "slots", "workload",
        "pass_wait", "populate_memory_ns", "dirty_memory_total_ns", "dirty_memory_ns_per_iteration", "get_dirty_log_ns_per_iteration",
        "clear_dirty_log_ns_per_iteration", "longest_ioctl_ns", "bookkeeping_percent_of_ioctl", "source_resident_bytes",
        "destination_resident_bytes", "peak_rss_bytes", "guest_writes_per_iteration", "vcpu_stats_per_iteration",
        "get_dirty_log_ns_each_iteration", "clear_dirty_log_ns_each_iteration",
    ]

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: NameKey.self)
        let own: [Encodable] = [
            setting.mode.rawValue, setting.policy.rawValue, clearChunk?.description ?? "-", iterations, memoryBytes, vcpus, slots, workload,
            passWait.rawValue, populateMemoryNanos, dirtyMemoryTotalNanos, dirtyMemoryAverageNanos, getPerIterationNanos,
            clearPerIterationNanos, longestIoctlNanos, bookkeepingPercentOfIoctl, sourceResidentBytes,
            destinationResidentBytes, peakRSSBytes, guestWritesPerIteration, vcpuStatsPerIteration,
            getNanosEachIteration, clearNanosEachIteration,
        ]
        for (key, value) in zip(Self.ownKeys, own) { try c.encode(value, forKey: NameKey(key)) }
        try metrics.encode(into: &c)
    }
}

/// dirty_log_perf_test's loop with a pre-copy consumer: each iteration every vCPU writes
/// its share (lockstep); the host then collects the log, starts the next iteration, and
/// copies what was reported while the guest writes again, so the GET/CLEAR race is real
/// (`overlap`; without it the copy is done before the next iteration starts).
public enum Bench {
    /// The vCPU statistics the bench reports per iteration, in print order.
    public static let breakdownStats = [
        "exits", "io_exits", "signal_exits", "irq_exits", "mmio_exits", "halt_exits",
        "pf_taken", "pf_fixed", "pf_fast", "pf_spurious", "pf_emulate", "pf_guest", "insn_emulation", "tlb_flush",
    ]

    /// Runs every mode (and clear chunk); `progress` gets a line per phase.
    public static func run(_ config: BenchConfig, system: KVMSystem, progress: (String) -> Void = { _ in }) throws(SessionError) -> [BenchResult] {
        try config.validate()
        var results: [BenchResult] = []
        for mode in config.modes {
            let clears = mode.entry.manualProtect
            let chunks: [ClearChunk] = clears ? config.clearChunks : [config.clearChunks.first ?? .pages(64)]
            let policies: [ClearPolicy] = clears ? config.clearPolicies : [.auto]
            for policy in policies {
                for chunk in chunks {
                    results.append(try runOne(config, mode: mode, chunk: chunk, policy: policy, system: system,
                                              progress: progress))
                }
            }
        }
        return results
    }

    static func runOne(_ config: BenchConfig, mode: HarvestMode, chunk: ClearChunk, policy: ClearPolicy, system: KVMSystem,
                       progress: (String) -> Void) throws(SessionError) -> BenchResult {
        let share = UInt64(config.memoryPerVCPU / PageSize.system)
        let passWrites = config.dirtyPercent == 100 && config.workload.workload == .sweep ? 0 : max(1, share * UInt64(config.dirtyPercent) / 100)
        let entry = mode.entry
        let machine = try GuestMachine(system: system, config: MachineConfig(
            slotBytes: config.slotBytes, vcpus: config.vcpus, ringEntries: entry.source == .rings ? config.ringEntries : 0,
            initialManualProtect: entry.manualProtect ? [.enable] : [], workload: config.workload, lockstep: true,
            passWrites: passWrites))
        defer { machine.stop() }
        let harvester = try Harvester(machine: machine, mode: mode, clearChunk: chunk, clearPolicy: policy,
                                      method: config.falsePositiveMethod, bandwidth: config.bandwidth)
        // Ring mode drains the rings while a pass runs, so vCPUs stopped on a full ring go on.
        var drainFailure: KVMError?
        let drain: (() -> Void)? = entry.source != .rings ? nil : {
            guard drainFailure == nil else { return }
            do throws(KVMError) { try harvester.drainRings() } catch { drainFailure = error }
        }
        let setting = HarvestSetting(mode: mode, policy: policy)
        let label = entry.manualProtect ? "\(setting)/\(chunk)" : "\(setting)"
        func checkFault() throws(SessionError) {
            if let f = machine.currentFault { throw .guestFault(f) }
            if let drainFailure { throw .kvm(drainFailure) }
        }

        // Iteration 0 populates memory; its harvest (the bulk copy) is not counted.
        let t0 = monotonicNanos()
        machine.start()
        machine.waitForPass(config.passWait, poll: drain)
        let populate = monotonicNanos() - t0
        try checkFault()
        progress("[\(label)] populate memory time: \(formatNanos(populate))")
        _ = try harvester.harvestRound()

        var totals = MetricValues()
        var gets: [UInt64] = [], clears: [UInt64] = []
        var dirtyTotal: UInt64 = 0
        var pending: Harvester.Collected?
        let statsBefore = breakdownStats.map { machine.vcpuStatSum([$0]) }
        let writesBefore = machine.guestWrites
        for i in 1...config.iterations {
            // The round is let go before the next GET, so the harvester hands KVM its bitmaps again.
            if !config.overlap, let p = pending {
                pending = nil
                account(try harvester.consume(p))
            }
            machine.startNextIteration()
            let start = monotonicNanos()
            if let p = pending {
                pending = nil
                account(try harvester.consume(p))
            }
            machine.waitForPass(config.passWait, poll: drain)
            let dirty = monotonicNanos() - start
            dirtyTotal += dirty
            try checkFault()
            pending = try harvester.collect()
            progress("[\(label)] iteration \(i): dirty memory time \(formatNanos(dirty))")
        }
        let n = UInt64(config.iterations)
        var perIteration: [String: UInt64] = [:]
        for (name, before) in zip(breakdownStats, statsBefore) where machine.vcpuStatNames.contains(name) {
            perIteration[name] = (machine.vcpuStatSum([name]) &- before) / n
        }
        let writesPerIteration = (machine.guestWrites &- writesBefore) / n
        // The last harvest is consumed with the world stopped, then every page is verified.
        machine.pause()
        if let p = pending { account(try harvester.consume(p, verify: true)) }

        func account(_ round: Round) {
            totals.add(round.values)
            gets.append(round.values.getDirtyLog.totalNanos)
            clears.append(round.values.clearDirtyLog.totalNanos)
        }

        let page = UInt64(PageSize.system)
        let sourceResident = machine.dataSlots.reduce(0) { $0 + UInt64($1.memory.residentPages().count) } * page
        return BenchResult(
            setting: setting, clearChunk: entry.manualProtect ? chunk : nil, iterations: config.iterations,
            memoryBytes: UInt64(config.memoryPerVCPU * config.vcpus), vcpus: config.vcpus, slots: config.slots,
            workload: config.workload.summary, passWait: config.passWait, populateMemoryNanos: populate, dirtyMemoryTotalNanos: dirtyTotal,
            sourceResidentBytes: sourceResident, destinationResidentBytes: UInt64(harvester.destinationResidentPages) * page,
            peakRSSBytes: peakResidentBytes(), guestWritesPerIteration: writesPerIteration,
            vcpuStatsPerIteration: perIteration, metrics: totals, getNanosEachIteration: gets,
            clearNanosEachIteration: entry.manualProtect ? clears : [])
    }
}

/// Peak resident set of this process (getrusage ru_maxrss).
public func peakResidentBytes() -> UInt64 {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return UInt64(usage.ru_maxrss) * 1024
}

/// "1.234s", "12.3ms", "45us", "800ns".
public func formatNanos(_ ns: UInt64) -> String {
    if ns >= 1_000_000_000 { return String(format: "%.3fs", Double(ns) / 1e9) }
    if ns >= 1_000_000 { return String(format: "%.1fms", Double(ns) / 1e6) }
    if ns >= 1_000 { return String(format: "%.0fus", Double(ns) / 1e3) }
    return "\(ns)ns"
}

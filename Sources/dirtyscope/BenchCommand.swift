import ArgumentParser
import DirtyScopeCore
import DirtyScopeModel
import DirtyScopePlot
import DirtyScopeRecording
import DirtyScopeTUI
import Foundation

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Headless benchmark of the harvest modes, comparable with the kernel's dirty_log_perf_test.",
        discussion: """
            Each iteration every vCPU writes its share of memory; the host then collects the dirty log, \
            starts the next iteration and copies what was reported while the guest writes again, so \
            false positives are real and counted from the guest's stamps.
            """)

    @Option(parsing: .unconditional, help: "Guest memory per vCPU (e.g. 256M, 8G).")
    var mem = "256M"
    @Option(name: .customLong("guest-mem"), parsing: .unconditional, help: "Guest suite: guest memory sizes to try, all vCPUs together, comma-separated (default 1G).")
    var guestMem = "1G"
    @Option(parsing: .unconditional, help: "vCPUs (the guest suite takes a comma-separated list; default 2, and 1,2 there).")
    var vcpus: String?
    @Option(parsing: .unconditional, help: "Memslots the memory is split into.")
    var slots = 1
    @Option(parsing: .unconditional, help: "Iterations after the populating pass (the guest suite: passes per vCPU; default 10, and 3 there).")
    var iterations: Int?
    @Option(help: "Workload: sweep, random, hotset, stripes, wave.")
    var workload = "sweep"
    @Option(name: .customLong("dirty-percent"), parsing: .unconditional, help: "Percent of each vCPU's memory written per iteration.")
    var dirtyPercent = 100
    @Option(parsing: .unconditional, help: "Guest writes per second per vCPU (0 = as fast as it can).")
    var rate: UInt64 = 0
    @Option(help: "Harvest modes to compare, comma-separated: legacy, manual, ring, untracked (default legacy,manual; the guest suite: untracked,legacy,manual,ring).")
    var modes: String?
    @Option(name: .customLong("clear-chunk"), parsing: .unconditional, help: "Manual-mode KVM_CLEAR_DIRTY_LOG chunks to try, comma-separated: 64, 4096, slot (default 64; the guest suite: 64,4096,slot).")
    var clearChunk: String?
    @Option(name: .customLong("clear-policy"), help: "Manual-mode clear policies to try, comma-separated: auto, hand, after-copy, at-get.")
    var clearPolicy = "auto"
    @Option(parsing: .unconditional, help: "Consumer copy bandwidth (e.g. 1G/s); unlimited when not given.")
    var bandwidth: String?
    @Option(name: .customLong("ring-entries"), parsing: .unconditional, help: ringEntriesHelp)
    var ringEntries: Int?
    @Flag(inversion: .prefixedNo, help: ArgumentHelp(
        "Copy (and CLEAR) while the guest writes the next iteration; --no-overlap does it with the vCPUs waiting, as dirty_log_perf_test does its GET and CLEAR."))
    var overlap = true
    @Option(help: ArgumentHelp(
        "How the host waits for the vCPUs to finish a pass: sleep (on a condition variable, as a VMM's migration thread would) or spin (busy-wait, as dirty_log_perf_test's main thread does). Default: sleep; spin with --compare-kernel.",
        valueName: "sleep|spin"))
    var wait: String?
    @Flag(help: "Print JSON: one object per mode, units in the key names.")
    var json = false
    @Option(help: "What to measure: kvm (the harvest modes), guest (what each mode costs the guest, from its own timeline), clock (what reading the guest's clock costs here), stream (the migration stream against a plain socket copy), render (the heatmap UI), recording (replay files), plot (SVG pictures), fuzz (forged replay files through the reader), fuzz-migration (forged migration streams through the receiver).")
    var suite = "kvm"
    @Option(parsing: .unconditional, help: "Guest suite: harvest interval, start to start (e.g. 100ms; 0 = back to back).")
    var interval = "100ms"
    @Flag(name: .customLong("no-timeline"), help: "Guest suite: the guest logs no timeline (to measure what logging costs; no stall figures).")
    var noTimeline = false
    @Option(parsing: .unconditional, help: "Fuzz suite: forged files to read.")
    var inputs = "1000000"
    @Option(parsing: .unconditional, help: "Seed of the guest's random choices (as in run and record).")
    var seed: UInt64 = 1
    @Option(name: .customLong("fuzz-seed"), parsing: .unconditional, help: "Fuzz suite: seed of the forgeries.")
    var fuzzSeed = "1"
    @Option(name: .customLong("compare-kernel"), help: ArgumentHelp(
        "Also run this dirty_log_perf_test binary on the same configuration, alternating with the bench, and print both tools' medians and their ratios.",
        valueName: "path"))
    var compareKernel: String?
    @Option(help: "Runs of each tool with --compare-kernel.")
    var runs = 3

    func run() throws {
        switch suite {
        case "kvm": break
        case "guest":
            try runGuestSuite()
            return
        case "fuzz-migration":
            let count = try reportingErrors { () throws(SessionError) in try parseCount(inputs, option: "--inputs", range: 1...Int(UInt32.max)) }
            let seedValue = try reportingErrors { () throws(SessionError) in try parseCount(fuzzSeed, option: "--fuzz-seed", range: 0...Int.max) }
            var fuzzer = MigrationFuzzer(seed: UInt64(seedValue))
            let report = fuzzer.run(inputs: count) { print($0); fflush(nil) }
            print(report.text() + "  peak resident \(formatBytes(peakResidentBytes()))", terminator: "\n")
            if report.hangs > 0 { throw ExitCode(1) }
            return
        case "stream":
            do {
                print(try StreamBenchmark.run(address: .tcp(host: "127.0.0.1", port: 0)).text, terminator: "")
                print(try StreamBenchmark.run(address: .unix(NSTemporaryDirectory() + "dirtyscope-stream.sock")).text, terminator: "")
            } catch {
                printError("\(error)")
                throw ExitCode(1)
            }
            return
        case "clock":
            let result = try reportingErrors { () throws(SessionError) -> ClockProbe.Result in
                try ClockProbe.run(system: try KVMSystemInfo.open().system)
            }
            print(result.text, terminator: "")
            return
        case "render":
            print("render: 64 GiB in 4 memslots, 200x60 terminal")
            for _ in 0..<3 { print(RenderBenchmark.run()) }
            return
        case "plot":
            do { print(try PlotBenchmark.run(), terminator: "") } catch {
                printError("\(error)")
                throw ExitCode(1)
            }
            return
        case "recording":
            do { print(try RecordingBenchmark.run().text(), terminator: "") } catch {
                printError("\(error)")
                throw ExitCode(1)
            }
            return
        case "fuzz":
            try runFuzz()
            return
        default:
            printError("suite '\(suite)' is not one of kvm, guest, clock, stream, render, recording, plot, fuzz, fuzz-migration")
            throw ExitCode(2)
        }
        let results = try reportingErrors { () throws(SessionError) -> [BenchResult] in
            var c = BenchConfig()
            c.memoryPerVCPU = try parseSize(mem, what: "memory per vCPU")
            let counts = try parseCounts(vcpus ?? "2", option: "--vcpus")
            guard counts.count == 1 else { throw .invalidArgument("--vcpus \(vcpus ?? ""): the kvm suite takes one vCPU count (the guest suite takes a list)") }
            c.vcpus = counts[0]
            c.slots = slots
            c.iterations = iterations ?? 10
            c.workload = WorkloadSettings(workload: try parseWorkload(workload), rate: rate, seed: seed)
            c.dirtyPercent = dirtyPercent
            c.modes = try parseModes(modes ?? "legacy,manual")
            c.clearChunks = try parseChunks(clearChunk ?? "64")
            c.clearPolicies = try parseClearPolicies(clearPolicy)
            if let bandwidth { c.bandwidth = try parseBandwidth(bandwidth) }
            c.ringEntries = ringEntries ?? SessionLimits.maxRingEntries
            c.overlap = overlap
            c.passWait = try wait.map(parsePassWait) ?? (compareKernel != nil ? .spin : .sleep)
            try c.validate()
            let host = try KVMSystemInfo.open()
            c.ringEntries = resolveRingEntries(ringEntries, host: host)
            try checkHostSupports(c.modes, ringEntries: c.ringEntries, system: host)
            let quiet = json
            if let compareKernel {
                let report = try KernelComparison.run(c, kernelTest: compareKernel, runs: runs, system: host.system) { line in
                    print(line); fflush(nil)
                }
                print("")
                print(report, terminator: "")
                return []
            }
            return try Bench.run(c, system: host.system) { line in
                if !quiet { print(line); fflush(nil) }
            }
        }
        if compareKernel != nil { return }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(results), as: UTF8.self))
        } else {
            print("")
            print(benchTables(results), terminator: "")
        }
    }
}

extension BenchCommand {
    /// `--suite guest`: what each mode and clear chunk costs the guest, from its timeline.
    func runGuestSuite() throws {
        let (config, results) = try reportingErrors { () throws(SessionError) -> (GuestCostConfig, [GuestCostResult]) in
            var c = GuestCostConfig()
            c.guestBytes = try guestMem.split(separator: ",").map { (part) throws(SessionError) in try parseSize(String(part), what: "guest memory") }
            c.vcpus = try parseCounts(vcpus ?? "1,2", option: "--vcpus")
            c.slots = slots
            c.passes = iterations ?? 3
            c.workload = WorkloadSettings(workload: try parseWorkload(workload), rate: rate, seed: seed)
            c.modes = try parseModes(modes ?? "untracked,legacy,manual,ring")
            c.clearChunks = try parseChunks(clearChunk ?? "64,4096,slot")
            if let bandwidth { c.bandwidth = try parseBandwidth(bandwidth) }
            c.intervalNanos = try parseInterval(interval)
            c.timeline = !noTimeline
            let host = try KVMSystemInfo.open()
            c.ringEntries = resolveRingEntries(ringEntries, host: host)
            try c.validate()
            try checkHostSupports(c.modes, ringEntries: c.ringEntries, system: host)
            let quiet = json
            let results = try GuestCostBench.run(c, system: host.system) { line in
                if !quiet { print(line); fflush(nil) }
            }
            return (c, results)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(results), as: UTF8.self))
        } else {
            print("")
            print(guestCostTables(results, config: config, load: loadAverage()), terminator: "")
        }
        if results.contains(where: { $0.failure != nil }) { throw ExitCode(1) }
    }

    /// `--suite fuzz`: forged recordings through the reader, in-process; the slowest input
    /// is kept in the temporary directory when it took over a second.
    func runFuzz() throws {
        let count = try reportingErrors { () throws(SessionError) in try parseCount(inputs, option: "--inputs", range: 1...Int(UInt32.max)) }
        let seedValue = try reportingErrors { () throws(SessionError) in try parseCount(fuzzSeed, option: "--fuzz-seed", range: 0...Int.max) }
        var fuzzer: RecordingFuzzer
        do { fuzzer = try RecordingFuzzer(seed: UInt64(seedValue)) } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        let report = fuzzer.run(inputs: count) { progress in
            print(progress.text(), terminator: "")
            fflush(nil)
        }
        print(report.text(), terminator: "")
        if report.hangs > 0 {
            let path = NSTemporaryDirectory() + "dirtyscope-fuzz-slowest.dsrec"
            FileManager.default.createFile(atPath: path, contents: Data(report.slowestInput))
            printError("slowest input kept in \(path)")
            throw ExitCode(1)
        }
    }
}

/// The human-readable bench report: dirty_log_perf_test's figures per mode, then the
/// ground truth beside them.
func benchTables(_ results: [BenchResult]) -> String {
    guard let first = results.first else { return "" }
    var out = "dirtyscope bench: \(formatBytes(first.memoryBytes)) in \(first.slots) memslot(s), \(first.vcpus) vCPUs, \(first.workload), \(first.iterations) iterations, "
        + "the host \(first.passWait == .spin ? "spinning" : "sleeping") while a pass runs\n\n"
    for r in results {
        let m = r.metrics
        let name = r.setting.mode.entry.manualProtect ? "manual (clear policy \(r.setting.policy.rawValue), chunk \(r.clearChunk.map { "\($0)" } ?? "-"))" : r.setting.mode.rawValue
        out += "[\(name)]\n"
        out += "  Populate memory time:   \(formatNanos(r.populateMemoryNanos))\n"
        out += "  Dirty memory time:      total \(formatNanos(r.dirtyMemoryTotalNanos)), avg \(formatNanos(r.dirtyMemoryAverageNanos))/iteration\n"
        out += "  Get dirty log time:     total \(formatNanos(m.getDirtyLog.totalNanos)), avg \(formatNanos(r.getPerIterationNanos))/iteration (\(m.getDirtyLog.count) calls)\n"
        out += "  Clear dirty log time:   total \(formatNanos(m.clearDirtyLog.totalNanos)), avg \(formatNanos(r.clearPerIterationNanos))/iteration (\(m.clearDirtyLog.count) calls)\n"
        out += "  Per iteration:          \(r.guestWritesPerIteration) page writes; vCPU stats: "
        out += Bench.breakdownStats.compactMap { name in r.vcpuStatsPerIteration[name].map { "\(name) \($0)" } }
            .joined(separator: ", ") + "\n"
    }
    out += "\n"
    let header = ["mode", "policy", "chunk"] + ([.reportedPages, .falsePositivePages, .falsePositiveFraction, .copiedPages,
                                                 .writeProtectFaults, .vcpuExits] as [Metric]).map(\.label)
        + ["longest ioctl", Metric.bookkeepingNanos.label, "% of ioctl", Metric.missedPages.label, Metric.lostPages.label]
    var rows: [[String]] = [header]
    for r in results {
        let m = r.metrics
        var row = [r.setting.mode.rawValue, r.setting.mode.entry.manualProtect ? r.setting.policy.rawValue : "-", r.clearChunk.map { "\($0)" } ?? "-"]
        row += ["\(m[.reportedPages])", "\(m[.falsePositivePages])", String(format: "%.2f%%", m.falsePositiveFraction * 100)]
        row += ["\(m[.copiedPages])", "\(m[.writeProtectFaults])", "\(m[.vcpuExits])", formatNanos(r.longestIoctlNanos)]
        row += [formatNanos(m[.bookkeepingNanos]), String(format: "%.1f%%", r.bookkeepingPercentOfIoctl), "\(m[.missedPages])", "\(m[.lostPages])"]
        rows.append(row)
    }
    let widths = header.indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
    for (n, row) in rows.enumerated() {
        out += row.enumerated().map { i, cell in
            i < 3 ? cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                  : String(repeating: " ", count: widths[i] - cell.count) + cell
        }.joined(separator: "  ") + "\n"
        if n == 0 { out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
    }
    let memory = results.map { "\($0.setting.mode.rawValue): source \(formatBytes($0.sourceResidentBytes)), destination \(formatBytes($0.destinationResidentBytes))" }
    out += "\nresident: " + memory.joined(separator: "; ") + "; peak RSS \(formatBytes(results.map(\.peakRSSBytes).max() ?? 0))\n"
    for r in results where r.setting.mode.entry.manualProtect && r.setting.policy == .afterCopy {
        out += "after-copy: \(r.metrics[.lostPages]) pages were written between their copy and their CLEAR and never reported; "
            + "\(r.metrics[.missedPages]) pages still differed at the final stop-and-copy\n"
    }
    if results.contains(where: { $0.metrics[.missedPages] > 0 && $0.setting.policy != .afterCopy }) {
        out += "WARNING: pages changed but were never reported (missed > 0): the dirty log lost writes\n"
    }
    return out
}

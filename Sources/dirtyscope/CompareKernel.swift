import DirtyScopeCore
import DirtyScopeModel
import Foundation
import KVM

/// `bench --compare-kernel PATH`: the kernel's dirty_log_perf_test and this bench, run
/// alternately on the same configuration (kernel, bench, kernel, bench, ...) so that a
/// shared machine's load falls on both alike; then both tools' medians and their ratios.
enum KernelComparison {
    /// One run of each tool, in nanoseconds.
    struct Run {
        var kernel: KernelPerfTest.Figures
        var bench: BenchResult
        var load: String
    }

    /// Runs `runs` alternating pairs per mode of `config`; `progress` gets a line per run.
    static func run(_ config: BenchConfig, kernelTest path: String, runs: Int, system: KVMSystem,
                    progress: (String) -> Void) throws(SessionError) -> String {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw .invalidArgument("--compare-kernel: '\(path)' is not an executable file (build dirty_log_perf_test from tools/testing/selftests/kvm)")
        }
        guard runs >= 1 else { throw .invalidArgument("\(runs) runs: at least 1 is needed") }
        var out = ""
        for mode in config.modes {
            let args = try KernelPerfTest.arguments(for: config, mode: mode)
            var one = config
            one.modes = [mode]
            var results: [Run] = []
            for r in 1...runs {
                let load = loadAverage()
                progress("[\(mode.rawValue)] run \(r)/\(runs), load \(load): \(path) \(args.joined(separator: " "))")
                let kernel = try runKernelTest(path, args, expectClear: mode == .manual)
                progress("[\(mode.rawValue)] run \(r)/\(runs): dirtyscope bench")
                guard let bench = try Bench.run(one, system: system).first else { continue }
                results.append(Run(kernel: kernel, bench: bench, load: load))
            }
            out += table(config, mode: mode, args: args, path: path, results) + "\n"
        }
        return out
    }

    /// Runs the kernel test and parses its output; a failed run or an unknown format is an error.
    static func runKernelTest(_ path: String, _ args: [String], expectClear: Bool) throws(SessionError) -> KernelPerfTest.Figures {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = args
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch {
            throw .io("cannot start \(path): \(error.localizedDescription)")
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            let tail = text.split(whereSeparator: \.isNewline).suffix(5).joined(separator: "\n  ")
            throw .io("\(path) \(args.joined(separator: " ")) failed (status \(process.terminationStatus)):\n  \(tail)")
        }
        do {
            return try KernelPerfTest.parse(text, expectClear: expectClear)
        } catch {
            throw .io("\(path): \(error)")
        }
    }

    /// The report of one mode: every run, then medians and ratios (bench / kernel).
    static func table(_ config: BenchConfig, mode: HarvestMode, args: [String], path: String, _ runs: [Run]) -> String {
        let name = mode == .manual ? "manual, whole-slot CLEAR" : "legacy"
        let copy = config.overlap ? "bench copies while the guest writes" : "bench copies with the vCPUs waiting (--no-overlap)"
        let wait = config.passWait == .spin ? "bench spins while a pass runs, as the kernel test does" : "bench sleeps while a pass runs (--wait sleep; the kernel test spins)"
        var out = "\(formatBytes(UInt64(config.memoryPerVCPU))) per vCPU, \(config.vcpus) vCPU(s), \(config.slots) memslot(s), "
            + "\(config.workload.workload.rawValue), \(config.iterations) iterations, \(name), \(copy), \(wait): "
            + "medians of \(runs.count) alternating runs\n"
        out += "  kernel: \(path) \(args.joined(separator: " "))\n"
        out += "  load average (1 min) before each pair: \(runs.map(\.load).joined(separator: ", "))\n"
        // Each row: the figure, both tools' values, and whether they are per-run figures
        // (the runs are listed) or every iteration of every run pooled (only counted).
        var rows: [(String, [UInt64], [UInt64], pooled: Bool)] = [
            ("populate", runs.map(\.kernel.populateNanos), runs.map(\.bench.populateMemoryNanos), false),
            ("dirty memory time per iteration", runs.map(\.kernel.dirtyAverageNanos), runs.map(\.bench.dirtyMemoryAverageNanos), false),
            ("GET avg per iteration", runs.map(\.kernel.getAverageNanos), runs.map(\.bench.getPerIterationNanos), false),
        ]
        if mode == .manual {
            rows.append(("CLEAR avg per iteration", runs.map { $0.kernel.clearAverageNanos ?? 0 }, runs.map(\.bench.clearPerIterationNanos), false))
        }
        rows.append(("GET, every iteration pooled", runs.flatMap(\.kernel.getNanos), runs.flatMap(\.bench.getNanosEachIteration), true))
        if mode == .manual {
            rows.append(("CLEAR, every iteration pooled", runs.flatMap(\.kernel.clearNanos), runs.flatMap(\.bench.clearNanosEachIteration), true))
        }
        let header = ["figure", "dirty_log_perf_test", "dirtyscope bench", "ratio", "runs (kernel / bench)"]
        var cells: [[String]] = [header]
        for (figure, kernel, bench, pooled) in rows {
            let k = median(kernel), b = median(bench)
            let ratio = k > 0 && !bench.isEmpty ? String(format: "%.2f", Double(b) / Double(k)) : "-"
            let each = pooled ? "median of \(kernel.count) / \(bench.count) iterations"
                              : zip(kernel, bench).map { "\(formatNanos($0)) / \(formatNanos($1))" }.joined(separator: ", ")
            cells.append([figure, kernel.isEmpty ? "-" : formatNanos(k), bench.isEmpty ? "-" : formatNanos(b), ratio, each])
        }
        let widths = header.indices.map { i in cells.map { $0[i].count }.max() ?? 0 }
        for (n, row) in cells.enumerated() {
            out += "  " + row.enumerated().map { i, c in
                i == 0 || i == row.count - 1 ? c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                                             : String(repeating: " ", count: widths[i] - c.count) + c
            }.joined(separator: "  ") + "\n"
            if n == 0 { out += "  " + widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
        }
        return out
    }

    /// The middle value (the lower middle of an even count).
    static func median(_ values: [UInt64]) -> UInt64 {
        let s = values.sorted()
        return s.isEmpty ? 0 : s[(s.count - 1) / 2]
    }

    /// The 1-minute load average, as /proc/loadavg says it.
    static func loadAverage() -> String {
        (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? "?"
    }
}

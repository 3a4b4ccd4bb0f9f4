import DirtyScopeModel
import Foundation

/// The kernel selftest `dirty_log_perf_test` (tools/testing/selftests/kvm): the command
/// line that matches a bench configuration, and the figures read back from its output.
public enum KernelPerfTest {
    /// What one run printed, in nanoseconds.
    public struct Figures: Equatable, Sendable {
        public var populateNanos: UInt64
        /// "Iteration N dirty memory time", in iteration order.
        public var dirtyNanos: [UInt64]
        public var getAverageNanos: UInt64
        /// nil when the run did not clear (legacy mode, `-g`).
        public var clearAverageNanos: UInt64?
        /// "Iteration N get dirty log time" and "... clear dirty log time", in iteration
        /// order: each call's own time (empty when the test did not print them).
        public var getNanos: [UInt64] = []
        public var clearNanos: [UInt64] = []

        /// The mean of the iterations' dirty memory times.
        public var dirtyAverageNanos: UInt64 {
            // Summed in 128 bits: each time fits 64, so their mean does, whatever the test printed.
            dirtyNanos.isEmpty ? 0 : UInt64(dirtyNanos.reduce(UInt128(0)) { $0 + UInt128($1) } / UInt128(dirtyNanos.count))
        }
    }

    /// Output this parser cannot read.
    public struct FormatError: Error, CustomStringConvertible, Equatable {
        public let reason: String
        public var description: String {
            "dirty_log_perf_test printed output of an unknown format: \(reason) "
                + "(this parser reads the format of Linux 6.12's test: \"Populate memory time: 1.234567890s\", "
                + "\"Iteration 1 dirty memory time: ...s\", \"Get dirty log over 2 iterations took ...s. (Avg ...s/iteration)\")"
        }
    }

    /// The arguments that make dirty_log_perf_test run what `bench` runs with `config` in
    /// `mode`; throws when it has no equivalent (the kernel test has no dirty ring, no
    /// partial passes, and writes only sequentially or uniformly at random).
    public static func arguments(for config: BenchConfig, mode: HarvestMode) throws(SessionError) -> [String] {
        var args = ["-b", "\(config.memoryPerVCPU)", "-v", "\(config.vcpus)", "-i", "\(config.iterations)", "-x", "\(config.slots)"]
        switch config.workload.workload {
        case .sweep: break
        case .random: args.append("-a")
        default:
            throw .invalidArgument("workload \(config.workload.workload.rawValue) has no dirty_log_perf_test equivalent (use sweep or random)")
        }
        guard config.dirtyPercent == 100 else {
            throw .invalidArgument("dirty percent \(config.dirtyPercent): dirty_log_perf_test writes every page of each vCPU's share (use 100)")
        }
        guard config.workload.rate == 0 else {
            throw .invalidArgument("rate \(config.workload.rate): dirty_log_perf_test's guest runs unpaced (use 0)")
        }
        switch mode {
        case .legacy: args.append("-g")
        case .manual:
            guard config.clearChunks == [.wholeSlot] else {
                throw .invalidArgument("dirty_log_perf_test clears each whole memslot in one call: compare with --clear-chunk slot")
            }
        case .ring: throw .invalidArgument("dirty_log_perf_test has no dirty ring mode (compare legacy or manual)")
        case .untracked: throw .invalidArgument("dirty_log_perf_test always tracks dirty pages (compare legacy or manual)")
        }
        return args
    }

    /// Reads the figures from a run's output; throws `FormatError` naming what is missing
    /// or unreadable. Clear is required when `expectClear` (manual mode).
    public static func parse(_ output: String, expectClear: Bool) throws(FormatError) -> Figures {
        var populate: UInt64?, get: UInt64?, clear: UInt64?
        var dirty: [(Int, UInt64)] = [], gets: [(Int, UInt64)] = [], clears: [(Int, UInt64)] = []
        for raw in output.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if let rest = line.dropPrefix("Populate memory time: ") {
                populate = try seconds(rest, in: line)
            } else if line.hasPrefix("Iteration ") {
                if let (n, t) = try iterationTime(line, " dirty memory time: ") { dirty.append((n, t)) }
                else if let (n, t) = try iterationTime(line, " get dirty log time: ") { gets.append((n, t)) }
                else if let (n, t) = try iterationTime(line, " clear dirty log time: ") { clears.append((n, t)) }
            } else if line.hasPrefix("Get dirty log over ") {
                get = try average(line)
            } else if line.hasPrefix("Clear dirty log over ") {
                clear = try average(line)
            }
        }
        guard let populate else { throw FormatError(reason: "no \"Populate memory time:\" line") }
        guard !dirty.isEmpty else { throw FormatError(reason: "no \"Iteration N dirty memory time:\" line") }
        guard dirty.map(\.0) == Array(1...dirty.count) else {
            throw FormatError(reason: "dirty memory times for iterations \(dirty.map(\.0)), expected 1 to \(dirty.count)")
        }
        guard let get else { throw FormatError(reason: "no \"Get dirty log over N iterations took ...\" line") }
        if expectClear && clear == nil { throw FormatError(reason: "no \"Clear dirty log over N iterations took ...\" line in manual mode") }
        return Figures(populateNanos: populate, dirtyNanos: dirty.map(\.1), getAverageNanos: get, clearAverageNanos: clear,
                       getNanos: gets.sorted { $0.0 < $1.0 }.map(\.1), clearNanos: clears.sorted { $0.0 < $1.0 }.map(\.1))
    }

    /// "Iteration 3<label>0.000012345s": the iteration and the time, or nil for another label.
    private static func iterationTime(_ line: String, _ label: String) throws(FormatError) -> (Int, UInt64)? {
        guard let range = line.range(of: label) else { return nil }
        let afterPrefix = line.index(line.startIndex, offsetBy: "Iteration ".count)
        guard range.lowerBound >= afterPrefix, let n = Int(line[afterPrefix..<range.lowerBound]) else {
            throw FormatError(reason: "no iteration number in \"\(line)\"")
        }
        return (n, try seconds(String(line[range.upperBound...]), in: line))
    }

    /// "(Avg 0.000008319s/iteration)" at the end of a summary line.
    private static func average(_ line: String) throws(FormatError) -> UInt64 {
        guard let open = line.range(of: "(Avg "), let close = line.range(of: "/iteration)", range: open.upperBound..<line.endIndex) else {
            throw FormatError(reason: "no \"(Avg ...s/iteration)\" in \"\(line)\"")
        }
        return try seconds(String(line[open.upperBound..<close.lowerBound]), in: line)
    }

    /// "3.811005634s" (seconds, then nine digits of nanoseconds, as the test prints them) in nanoseconds.
    static func seconds(_ text: String, in line: String) throws(FormatError) -> UInt64 {
        let bad = FormatError(reason: "\"\(text)\" is not a time like 1.234567890s in \"\(line)\"")
        guard text.hasSuffix("s") else { throw bad }
        let parts = text.dropLast().split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].count == 9, let s = UInt64(parts[0]), let ns = UInt64(parts[1]),
              parts[0].allSatisfy(\.isASCIIDigit), parts[1].allSatisfy(\.isASCIIDigit) else { throw bad }
        let (whole, over) = s.multipliedReportingOverflow(by: 1_000_000_000)
        let (total, carry) = whole.addingReportingOverflow(ns)
        guard !over, !carry else {
            throw FormatError(reason: "\"\(text)\" is more nanoseconds than 64 bits hold in \"\(line)\"")
        }
        return total
    }
}

private extension String {
    func dropPrefix(_ prefix: String) -> String? { hasPrefix(prefix) ? String(dropFirst(prefix.count)) : nil }
}

private extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

import DirtyScopeCore
import DirtyScopeModel
import XCTest

/// Reading dirty_log_perf_test's output and building its command line. The fixtures are
/// written here by hand in the format the test prints (Linux 6.12), not captured runs.
final class KernelPerfTestTests: XCTestCase {
    /// A manual-protect run: 2 iterations, 2 memslots.
    let manualOutput = """
        Test iterations: 2
        Testing guest mode: PA-bits:ANY, VA-bits:48,  4K pages
        Random seed: 0x1
        guest physical test memory: [0x7fbfffc000, 0x7fffffc000)
        Populate memory time: 2.500000001s
        Enabling dirty logging time: 0.000012000s

        Iteration 1 dirty memory time: 1.000000000s
        Iteration 1 get dirty log time: 0.000010000s
        Iteration 1 clear dirty log time: 0.000600000s
        Iteration 2 dirty memory time: 3.000000500s
        Iteration 2 get dirty log time: 0.000020000s
        Iteration 2 clear dirty log time: 0.000800000s
        Disabling dirty logging time: 0.000090000s
        Get dirty log over 2 iterations took 0.000030000s. (Avg 0.000015000s/iteration)
        Clear dirty log over 2 iterations took 0.001400000s. (Avg 0.000700000s/iteration)
        """

    /// The same in legacy mode (`-g`): no clear lines.
    var legacyOutput: String {
        manualOutput.split(separator: "\n").filter { !$0.contains("lear dirty log") }.joined(separator: "\n")
    }

    func testReadsAManualRun() throws {
        let f = try KernelPerfTest.parse(manualOutput, expectClear: true)
        XCTAssertEqual(f.populateNanos, 2_500_000_001)
        XCTAssertEqual(f.dirtyNanos, [1_000_000_000, 3_000_000_500])
        XCTAssertEqual(f.dirtyAverageNanos, 2_000_000_250)
        XCTAssertEqual(f.getAverageNanos, 15_000)
        XCTAssertEqual(f.clearAverageNanos, 700_000)
        XCTAssertEqual(f.getNanos, [10_000, 20_000])
        XCTAssertEqual(f.clearNanos, [600_000, 800_000])
    }

    func testReadsALegacyRunAndWantsClearOnlyInManualMode() throws {
        let f = try KernelPerfTest.parse(legacyOutput, expectClear: false)
        XCTAssertNil(f.clearAverageNanos)
        XCTAssertEqual(f.getAverageNanos, 15_000)
        XCTAssertEqual(f.getNanos, [10_000, 20_000])
        XCTAssertEqual(f.clearNanos, [])
        XCTAssertThrowsError(try KernelPerfTest.parse(legacyOutput, expectClear: true)) { error in
            XCTAssertTrue("\(error)".contains("Clear dirty log over"), "\(error)")
        }
    }

    func testUnknownFormatsFailNamingWhatIsWrong() {
        func reason(_ text: String) -> String {
            do {
                _ = try KernelPerfTest.parse(text, expectClear: false)
                return "parsed"
            } catch {
                XCTAssertTrue(error.description.hasPrefix("dirty_log_perf_test printed output of an unknown format"))
                return error.reason
            }
        }
        XCTAssertEqual(reason(""), "no \"Populate memory time:\" line")
        XCTAssertEqual(reason("usage: dirty_log_perf_test [-h] [-a]"), "no \"Populate memory time:\" line")
        // Times in another unit or precision are not guessed at.
        let ms = manualOutput.replacingOccurrences(of: "Populate memory time: 2.500000001s", with: "Populate memory time: 2500 ms")
        XCTAssertTrue(reason(ms).hasPrefix("\"2500 ms\" is not a time like 1.234567890s"), reason(ms))
        let short = manualOutput.replacingOccurrences(of: "1.000000000s", with: "1.0s")
        XCTAssertTrue(reason(short).hasPrefix("\"1.0s\" is not a time"), reason(short))
        let noIterations = manualOutput.split(separator: "\n").filter { !$0.contains("dirty memory time") }.joined(separator: "\n")
        XCTAssertEqual(reason(noIterations), "no \"Iteration N dirty memory time:\" line")
        // Times past 2^64 ns are refused, not wrapped or trapped on; the largest that fits reads.
        let huge = manualOutput.replacingOccurrences(of: "2.500000001s", with: "18446744074.000000000s")
        XCTAssertTrue(reason(huge).hasPrefix("\"18446744074.000000000s\" is more nanoseconds than 64 bits hold"), reason(huge))
        let long = manualOutput.replacingOccurrences(of: "1.000000000s", with: "18000000000.000000000s")
            .replacingOccurrences(of: "3.000000500s", with: "18000000000.000000000s")
        XCTAssertEqual(try KernelPerfTest.parse(long, expectClear: true).dirtyAverageNanos, 18_000_000_000_000_000_000)
        let noNumber = manualOutput.replacingOccurrences(of: "Iteration 1 get", with: "Iteration get")
        XCTAssertEqual(reason(noNumber), "no iteration number in \"Iteration get dirty log time: 0.000010000s\"")
        let gap = manualOutput.replacingOccurrences(of: "Iteration 2 dirty", with: "Iteration 3 dirty")
        XCTAssertEqual(reason(gap), "dirty memory times for iterations [1, 3], expected 1 to 2")
        let noAverage = manualOutput.replacingOccurrences(of: ". (Avg 0.000015000s/iteration)", with: ".")
        XCTAssertTrue(reason(noAverage).hasPrefix("no \"(Avg ...s/iteration)\""), reason(noAverage))
    }

    func testArgumentsMatchTheBenchConfiguration() throws {
        var c = BenchConfig()
        c.memoryPerVCPU = 1 << 30
        c.vcpus = 2
        c.slots = 1
        c.iterations = 3
        c.clearChunks = [.wholeSlot]
        XCTAssertEqual(try KernelPerfTest.arguments(for: c, mode: .manual), ["-b", "1073741824", "-v", "2", "-i", "3", "-x", "1"])
        XCTAssertEqual(try KernelPerfTest.arguments(for: c, mode: .legacy), ["-b", "1073741824", "-v", "2", "-i", "3", "-x", "1", "-g"])
        c.workload = WorkloadSettings(workload: .random, rate: 0)
        XCTAssertEqual(try KernelPerfTest.arguments(for: c, mode: .manual).suffix(1), ["-a"])
    }

    func testConfigurationsWithoutAKernelEquivalentAreRefused() {
        var c = BenchConfig()
        c.clearChunks = [.wholeSlot]
        func refused(_ c: BenchConfig, _ mode: HarvestMode, _ words: String) {
            do {
                _ = try KernelPerfTest.arguments(for: c, mode: mode)
                XCTFail("\(mode) accepted")
            } catch {
                XCTAssertTrue(error.description.contains(words), error.description)
                XCTAssertEqual(error.exitCode, 2)
            }
        }
        refused(c, .ring, "no dirty ring")
        var chunk = c
        chunk.clearChunks = [.pages(64)]
        refused(chunk, .manual, "--clear-chunk slot")
        var hot = c
        hot.workload = WorkloadSettings(workload: .hotset, rate: 0)
        refused(hot, .legacy, "no dirty_log_perf_test equivalent")
        var partial = c
        partial.dirtyPercent = 5
        refused(partial, .legacy, "dirty percent 5")
        var paced = c
        paced.workload = WorkloadSettings(workload: .sweep, rate: 1000)
        refused(paced, .legacy, "rate 1000")
    }
}

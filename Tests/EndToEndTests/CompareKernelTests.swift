import Foundation
import XCTest

/// `bench --compare-kernel PATH` end to end, with a stand-in for dirty_log_perf_test: a
/// shell script that logs its arguments and prints what Linux 6.12's test prints (or
/// something else). The bench side is the real one, on /dev/kvm.
final class CompareKernelTests: ScratchTestCase {
    /// Writes an executable script printing `body`'s output, logging "$@" to args.log.
    private func fakeKernelTest(_ body: String) throws -> String {
        let path = scratch.appendingPathComponent("dirty_log_perf_test").path
        let script = "#!/bin/sh\necho \"$@\" >> \(shellQuote(scratch.appendingPathComponent("args.log").path))\n\(body)\n"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    /// Two iterations in the 6.12 format; the clear lines only without -g.
    private let sixTwelve = """
        echo "Populate memory time: 2.000000000s"
        echo "Iteration 1 dirty memory time: 1.000000000s"
        echo "Iteration 1 get dirty log time: 0.000010000s"
        case "$*" in *-g*) ;; *) echo "Iteration 1 clear dirty log time: 0.000500000s";; esac
        echo "Iteration 2 dirty memory time: 1.000000000s"
        echo "Iteration 2 get dirty log time: 0.000030000s"
        case "$*" in *-g*) ;; *) echo "Iteration 2 clear dirty log time: 0.000700000s";; esac
        echo "Get dirty log over 2 iterations took 0.000040000s. (Avg 0.000020000s/iteration)"
        case "$*" in *-g*) ;; *) echo "Clear dirty log over 2 iterations took 0.001200000s. (Avg 0.000600000s/iteration)";; esac
        """

    private let args = ["bench", "--mem", "8M", "--vcpus", "1", "--iterations", "2", "--modes", "legacy,manual",
                        "--clear-chunk", "slot", "--runs", "2", "--no-overlap", "--compare-kernel"]

    /// Both modes run alternately with the matching arguments; the report says how the
    /// bench waited and gives per-run medians and every iteration pooled, for both tools.
    func testComparesBothModesWithTheKernelTestsArguments() throws {
        try requireKVM()
        let fake = try fakeKernelTest(sixTwelve)
        let run = try dirtyscope(args + [fake], in: scratch, timeout: 120)
        XCTAssertEqual(run.status, 0, run.stderr)
        let logged = try String(contentsOfFile: scratch.appendingPathComponent("args.log").path, encoding: .utf8)
        XCTAssertEqual(logged.split(separator: "\n"), [
            "-b 8388608 -v 1 -i 2 -x 1 -g", "-b 8388608 -v 1 -i 2 -x 1 -g",
            "-b 8388608 -v 1 -i 2 -x 1", "-b 8388608 -v 1 -i 2 -x 1",
        ])
        let out = run.stdout
        XCTAssertEqual(out.components(separatedBy: "bench spins while a pass runs, as the kernel test does").count - 1, 2, out)
        // The stand-in's figures, as medians: GET avg 20 µs; pooled over 2 runs of
        // 10 and 30 µs, the lower middle of four is 10 µs; CLEAR avg 600 µs, pooled 500 µs.
        let get = try XCTUnwrap(out.split(separator: "\n").first { $0.contains("GET avg per iteration") }, out)
        XCTAssertTrue(get.contains(" 20us "), String(get))
        let pooled = out.split(separator: "\n").filter { $0.contains("every iteration pooled") }
        XCTAssertEqual(pooled.count, 3, "GET in both modes, CLEAR in manual: \(out)")
        XCTAssertTrue(pooled.allSatisfy { $0.contains("median of 4 / 4 iterations") }, out)
        XCTAssertTrue(pooled[0].contains(" 10us "), String(pooled[0]))
        XCTAssertTrue(pooled[2].hasPrefix("  CLEAR") && pooled[2].contains(" 500us "), String(pooled[2]))
    }

    /// --wait sleep is said in the report, next to the kernel test's spinning.
    func testSaysWhenTheBenchSleeps() throws {
        try requireKVM()
        let fake = try fakeKernelTest(sixTwelve)
        var sleeping = args + [fake, "--wait", "sleep"]
        sleeping[sleeping.firstIndex(of: "legacy,manual")!] = "legacy"
        let run = try dirtyscope(sleeping, in: scratch, timeout: 120)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("bench sleeps while a pass runs (--wait sleep; the kernel test spins)"), run.stdout)
    }

    /// Output of another format, or a failed run, ends the comparison with one line
    /// naming what was wrong and a non-zero exit.
    func testUnknownOutputAndFailedRunsAreErrors() throws {
        try requireKVM()
        let usage = try fakeKernelTest("echo 'usage: dirty_log_perf_test [-h] [-a]'")
        let unknown = try dirtyscope(args + [usage], in: scratch, timeout: 120)
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("unknown format: no \"Populate memory time:\" line"), unknown.stderr)

        let failing = try fakeKernelTest("echo '==== Test Assertion Failure ===='; exit 3")
        let failed = try dirtyscope(args + [failing], in: scratch, timeout: 120)
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue(failed.stderr.contains("failed (status 3)") && failed.stderr.contains("Test Assertion Failure"), failed.stderr)
    }
}

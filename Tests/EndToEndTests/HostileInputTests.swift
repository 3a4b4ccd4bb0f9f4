import Foundation
import XCTest

/// Command lines and files from anywhere: negative numbers, mode lists, directories and
/// FIFOs where files belong, values past the limits, closed pipes and full disks.
final class HostileInputTests: ScratchTestCase {

    private var target: String { scratch.appendingPathComponent("out.dsrec").path }

    /// Exit 2, a first stderr line naming every one of `naming`, nothing on stdout, no file.
    private func assertRefused(_ args: [String], naming: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let outcome = try dirtyscope(args, in: scratch, file: file, line: line)
        let shown = "dirtyscope \(args.joined(separator: " "))"
        XCTAssertTrue(outcome.exited, "\(shown) died of signal \(outcome.status)", file: file, line: line)
        XCTAssertEqual(outcome.status, 2, "\(shown): stderr: \(outcome.stderr)", file: file, line: line)
        let first = outcome.stderrLines.first ?? ""
        for value in naming {
            XCTAssertTrue(first.contains(value), "\(shown): '\(first)' does not name \(value)", file: file, line: line)
        }
        XCTAssertFalse(first.contains("Missing value"), "\(shown): \(first)", file: file, line: line)
        XCTAssertEqual(outcome.stdout, "", shown, file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: target), "\(shown) created \(target)", file: file, line: line)
    }

    /// A negative number is a value, not an option: the message names it.
    func testNegativeValuesAreNamed() throws {
        for option in ["--vcpus", "--rate", "--rounds", "--param0", "--param1", "--seed", "--ring-entries", "--verify-every",
                       "--clear-chunk"] {
            try assertRefused(["record", target, option, "-1"], naming: ["-1"])
        }
        try assertRefused(["record", target, "--slots", "-1G"], naming: ["'-1G'"])
        try assertRefused(["record", target, "--bandwidth", "-5M"], naming: ["-5M"])
        try assertRefused(["record", target, "--interval", "-5ms"], naming: ["'-5ms'"])
        try assertRefused(["record", target, "--duration", "-1s"], naming: ["--duration", "'-1s'"])
        for option in ["--vcpus", "--slots", "--iterations", "--dirty-percent", "--mem", "--rate", "--ring-entries"] {
            try assertRefused(["bench", option, "-1"], naming: ["-1"])
        }
    }

    func testValuesPastTheLimitsAreNamed() throws {
        try assertRefused(["record", target, "--rounds", "9223372036854775808"], naming: ["9223372036854775808", "1099511627776"])
        try assertRefused(["record", target, "--vcpus", "100000000"], naming: ["100000000 vCPUs", "64"])
        try assertRefused(["record", target, "--slots", String(repeating: "4M,", count: 33) + "4M"], naming: ["34 memslots", "32"])
        try assertRefused(["record", target, "--slots", "300G"], naming: ["exceed", "pages"])
        try assertRefused(["bench", "--mem", "1T", "--vcpus", "100000000"], naming: ["100000000 vCPUs"])
        try assertRefused(["bench", "--mem", "1T", "--vcpus", "64"], naming: ["64 vCPUs", "exceeds"])
    }

    func testOneModeForASession() throws {
        try assertRefused(["record", target, "--mode", "legacy,ring"], naming: ["'legacy,ring'", "2 modes"])
    }

    func testDurationIsCalledADuration() throws {
        try assertRefused(["record", target, "--duration", "abc"], naming: ["--duration 'abc'"])
        let outcome = try dirtyscope(["record", target, "--duration", "abc"], in: scratch)
        XCTAssertFalse(outcome.stderr.contains("interval"), outcome.stderr)
    }

    func testGuestFileThatIsADirectoryOrFIFO() throws {
        try assertRefused(["record", target, "--guest-file", scratch.path], naming: [scratch.path, "not a regular file"])
        let fifo = scratch.appendingPathComponent("guest.fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        try assertRefused(["record", target, "--guest-file", fifo], naming: [fifo, "not a regular file"])
    }

    /// `inspect` of a FIFO is refused at once instead of waiting for a writer.
    func testInspectRefusesAFIFO() throws {
        let fifo = scratch.appendingPathComponent("rec.fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let outcome = try dirtyscope(["inspect", fifo], in: scratch, timeout: 10)
        XCTAssertEqual(outcome.status, 2, outcome.stderr)
        XCTAssertTrue(outcome.stderr.contains("not a regular file"), outcome.stderr)
        let directory = try dirtyscope(["export", scratch.path, "--csv"], in: scratch, timeout: 10)
        XCTAssertEqual(directory.status, 2, directory.stderr)
        XCTAssertTrue(directory.stderr.contains("not a regular file"), directory.stderr)
    }

    /// `export | head` ends quietly when head stops reading; `inspect > /dev/full` fails.
    func testClosedPipeAndFullDisk() throws {
        try requireKVM()
        let path = scratch.appendingPathComponent("r.dsrec").path
        _ = try recordFixture(path, in: scratch, extra: ["--rounds", "400", "--interval", "0"])
        // The export's status goes to stderr, past the pipe that head closes after 10 bytes.
        let tool = shellQuote(try Tool.binary())
        let outcome = try shell("{ \(tool) export \(shellQuote(path)) --csv; echo \"rc=$?\" >&2; } | head -c 10 > /dev/null", in: scratch)
        XCTAssertEqual(outcome.stderrLines.last, "rc=0", "export | head: \(outcome.stderr)")

        let full = try shell("\(tool) inspect \(shellQuote(path)) > /dev/full", in: scratch)
        XCTAssertEqual(full.status, 1, "inspect > /dev/full: \(full.stderr)")
        XCTAssertTrue(full.stderr.contains("No space left"), full.stderr)
        let csv = try shell("\(tool) export \(shellQuote(path)) --csv > /dev/full", in: scratch)
        XCTAssertEqual(csv.status, 1, "export > /dev/full: \(csv.stderr)")
    }
}

import Pages
import Foundation
import XCTest

/// Bad input on the command line: exit code 2 (1 for environment problems), exactly one
/// `dirtyscope: ...` line on stderr naming the offending value, nothing on stdout, no file.
final class CLIInputTests: ScratchTestCase {

    private var target: String { scratch.appendingPathComponent("out.dsrec").path }

    /// Runs `args` and checks the one-line refusal.
    private func assertRefused(_ args: [String], status: Int32 = 2, naming: [String],
                               file: StaticString = #filePath, line: UInt = #line) throws {
        let outcome = try dirtyscope(args, in: scratch, file: file, line: line)
        let shown = "dirtyscope \(args.joined(separator: " "))"
        XCTAssertTrue(outcome.exited, "\(shown) died of signal \(outcome.status)", file: file, line: line)
        XCTAssertEqual(outcome.status, status, "\(shown): exit code; stderr: \(outcome.stderr)", file: file, line: line)
        XCTAssertEqual(outcome.stderrLines.count, 1, "\(shown): stderr should be one line:\n\(outcome.stderr)", file: file, line: line)
        let message = outcome.stderrLines.first ?? ""
        XCTAssertTrue(message.hasPrefix("dirtyscope: "), "\(shown): message lacks the tool's name: \(message)", file: file, line: line)
        for value in naming {
            XCTAssertTrue(message.contains(value), "\(shown): message does not name '\(value)': \(message)", file: file, line: line)
        }
        XCTAssertEqual(outcome.stdout, "", "\(shown): nothing belongs on stdout", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: target), "\(shown) created \(target)", file: file, line: line)
    }

    func testZeroVCPUs() throws {
        try assertRefused(["bench", "--vcpus", "0"], naming: ["0 vCPUs"])
        try assertRefused(["record", target, "--vcpus", "0"], naming: ["0 vCPUs"])
    }

    func testSlotSizeAndCount() throws {
        // record/run: --slots are sizes; 4097 bytes is not a whole number of pages.
        try assertRefused(["record", target, "--slots", "4097"], naming: ["4097", "page size"])
        try assertRefused(["record", target, "--slots", "4M,0"], naming: ["'0'"])
        // bench: --slots is a count; 4097 is past the ABI limit, checked against the host's.
        try requireKVM()
        try assertRefused(["bench", "--slots", "4097"], naming: ["4097 memslots"])
    }

    func testClearChunkNotAMultipleOf64() throws {
        try assertRefused(["bench", "--clear-chunk", "100"], naming: ["clear chunk 100"])
        try assertRefused(["record", target, "--clear-chunk", "100"], naming: ["clear chunk 100", "64"])
    }

    func testZeroBandwidth() throws {
        try assertRefused(["record", target, "--bandwidth", "0"], naming: ["bandwidth '0'"])
        try assertRefused(["record", target, "--bandwidth", "0/s"], naming: ["bandwidth '0/s'"])
    }

    func testUnknownModeAndWorkload() throws {
        try assertRefused(["record", target, "--mode", "nope"], naming: ["'nope'", "legacy, manual, ring"])
        try assertRefused(["record", target, "--workload", "nope"], naming: ["'nope'", "hotset"])
    }

    func testRingEntriesNotAPowerOfTwo() throws {
        try assertRefused(["record", target, "--mode", "ring", "--ring-entries", "1000"], naming: ["1000", "power of two"])
        // A power of two past the kernel's limit (KVM_DIRTY_RING_MAX_ENTRIES is 65536) names
        // that maximum, on any host and in any mode.
        try assertRefused(["record", target, "--mode", "ring", "--ring-entries", "1048576", "--rounds", "1"],
                          naming: ["1048576", "to 65536", "maximum"])
        try assertRefused(["record", target, "--ring-entries", "1048576"], naming: ["1048576", "to 65536", "maximum"])
        // Below a page of entries KVM refuses the ring: the command line says so first.
        try assertRefused(["record", target, "--mode", "ring", "--ring-entries", "16"], naming: ["16", "from \(PageSize.system / 16)"])
    }

    func testBenchDirtyPercentZero() throws {
        try assertRefused(["bench", "--dirty-percent", "0"], naming: ["dirty percent 0", "100"])
    }

    func testBenchWaitNamesTheChoices() throws {
        try assertRefused(["bench", "--wait", "poll"], naming: ["--wait 'poll'", "sleep, spin"])
    }

    func testRoundsAndDurationLimits() throws {
        try assertRefused(["record", target, "--rounds", "0"], naming: ["--rounds 0"])
        try assertRefused(["record", target, "--interval", "2h"], naming: ["'2h'", "1h"])
    }

    func testGuestFileEmptyMissingOrTooLarge() throws {
        try requireKVM()  // the guest file is read when the VM is built
        let empty = scratch.appendingPathComponent("empty.bin")
        FileManager.default.createFile(atPath: empty.path, contents: Data())
        try assertRefused(["record", target, "--guest-file", empty.path], naming: [empty.path, "empty"])

        let big = scratch.appendingPathComponent("big.bin")
        FileManager.default.createFile(atPath: big.path, contents: Data(count: (1 << 20) + 1))
        try assertRefused(["record", target, "--guest-file", big.path], naming: [big.path, "1048576"])

        let missing = scratch.appendingPathComponent("missing.bin").path
        try assertRefused(["record", target, "--guest-file", missing], naming: [missing])
    }

    /// An unwritable recording path is bad input (exit 2), refused before any round, and
    /// leaves nothing behind.
    func testRecordToUnwritablePath() throws {
        try requireKVM()  // the file is created once the session exists
        try assertRefused(["record", "/proc/nope/x.dsrec", "--rounds", "2"], naming: ["/proc/nope/x.dsrec"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/proc/nope"))

        // A path under a regular file: ENOTDIR; the folder holding that file is unchanged.
        let plain = scratch.appendingPathComponent("plain")
        FileManager.default.createFile(atPath: plain.path, contents: Data("x".utf8))
        let before = try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter { !$0.hasPrefix("std") }
        let path = plain.appendingPathComponent("x.dsrec").path
        try assertRefused(["record", path, "--rounds", "2"], naming: [path])
        let after = try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter { !$0.hasPrefix("std") }
        XCTAssertEqual(before.sorted(), after.sorted())
        XCTAssertEqual(try Data(contentsOf: plain), Data("x".utf8))
    }

    /// argument-parser's own errors (unknown options, unparsable numbers) exit 2 too; their
    /// first line names the value, followed by a usage hint.
    func testParserErrorsExit2() throws {
        for (args, value) in [(["record", target, "--nope"], "'--nope'"), (["bench", "--vcpus", "abc"], "'abc'"),
                              (["frobnicate"], "'frobnicate'"), (["inspect"], "<file>")] {
            let outcome = try dirtyscope(args, in: scratch)
            XCTAssertTrue(outcome.exited)
            XCTAssertEqual(outcome.status, 2, "\(args): \(outcome.stderr)")
            XCTAssertTrue(outcome.stderrLines.first?.contains(value) ?? false, "\(args) should name \(value): \(outcome.stderr)")
            XCTAssertEqual(outcome.stdout, "", "\(args)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: target))
    }

    func testReadingCommandsRefuseAMissingFile() throws {
        let missing = scratch.appendingPathComponent("missing.dsrec").path
        try assertRefused(["inspect", missing], naming: [missing])
        try assertRefused(["export", missing, "--csv"], naming: [missing])
    }

    /// `run` needs a terminal; without one it says what to use instead.
    func testRunWithoutATerminal() throws {
        let outcome = try dirtyscope(["run", "--slots", "8M"], in: scratch)
        XCTAssertTrue(outcome.exited)
        XCTAssertEqual(outcome.status, 2, outcome.stderr)
        XCTAssertEqual(outcome.stderrLines.count, 1, outcome.stderr)
        let message = outcome.stderrLines.first ?? ""
        XCTAssertTrue(message.hasPrefix("dirtyscope: "), message)
        XCTAssertTrue(message.contains("terminal"), message)
        XCTAssertTrue(message.contains("bench"), message)
        XCTAssertTrue(message.contains("record"), message)
        XCTAssertEqual(outcome.stdout, "")
        // The default command is `run`, with the same refusal.
        let bare = try dirtyscope([], in: scratch)
        XCTAssertEqual(bare.status, 2)
        XCTAssertEqual(bare.stderrLines, outcome.stderrLines)
    }

    /// Without a terminal, a bad value is still what `run` names (before the missing
    /// terminal): one line with the value and its limit, exit 2.
    func testRunNamesABadValueBeforeTheMissingTerminal() throws {
        for (args, value) in [(["run", "--vcpus", "-1"], ["-1 vCPUs", "1 to 64"]),
                              (["--vcpus", "-1"], ["-1 vCPUs", "1 to 64"]),
                              (["run", "--vcpus", "100000000"], ["100000000 vCPUs", "64"]),
                              (["run", "--slots", "-1G"], ["'-1G'"]),
                              (["run", "--clear-chunk", "100"], ["clear chunk 100", "64"]),
                              (["run", "--mode", "legacy,ring"], ["'legacy,ring'", "2 modes"]),
                              (["run", "--rounds", "9223372036854775808"], ["9223372036854775808", "1099511627776"]),
                              (["run", "--interval", "abc"], ["'abc'"])] {
            try assertRefused(args, naming: value)
            let outcome = try dirtyscope(args, in: scratch)
            XCTAssertFalse(outcome.stderr.contains("terminal"), "\(args): \(outcome.stderr)")
        }
    }

    /// `replay` needs a terminal too, and points to the headless readers (once the file
    /// has opened: a missing one is named first, `HelpTextTests`).
    func testReplayWithoutATerminal() throws {
        try requireKVM()
        let file = scratch.appendingPathComponent("any.dsrec").path
        _ = try recordFixture(file, in: scratch, extra: ["--rounds", "2"])
        let outcome = try dirtyscope(["replay", file], in: scratch)
        XCTAssertEqual(outcome.status, 2, outcome.stderr)
        XCTAssertEqual(outcome.stderrLines.count, 1, outcome.stderr)
        XCTAssertTrue(outcome.stderr.contains("inspect") && outcome.stderr.contains("export"), outcome.stderr)
        XCTAssertEqual(outcome.stdout, "")
    }

    /// Values that are wrong on every host (an empty guest file included) are bad input even
    /// where /dev/kvm is missing: the message names the value (exit 2), not the missing device.
    func testBadInputIsNamedEvenWithoutKVM() throws {
        try HiddenKVM.require(in: scratch)
        let bench = try HiddenKVM.run(["bench", "--vcpus", "0"], in: scratch)
        XCTAssertEqual(bench.status, 2, "bench: \(bench.stderr)")
        XCTAssertTrue(bench.stderr.contains("0 vCPUs"), bench.stderr)

        let empty = scratch.appendingPathComponent("empty.bin")
        FileManager.default.createFile(atPath: empty.path, contents: Data())
        for (args, value) in [(["record", target, "--vcpus", "0"], "0 vCPUs"),
                              (["record", target, "--clear-chunk", "100"], "clear chunk 100"),
                              (["record", target, "--mode", "nope"], "'nope'"),
                              (["record", target, "--guest-file", empty.path], "empty")] {
            let outcome = try HiddenKVM.run(args, in: scratch)
            XCTAssertEqual(outcome.status, 2, "\(args.joined(separator: " ")) without /dev/kvm: \(outcome.stderr)")
            XCTAssertEqual(outcome.stderrLines.count, 1, outcome.stderr)
            XCTAssertTrue(outcome.stderr.contains(value),
                          "\(args.joined(separator: " ")) without /dev/kvm should name \(value): \(outcome.stderr)")
        }
    }
}

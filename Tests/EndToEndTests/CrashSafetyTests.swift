import Foundation
import XCTest

/// A recording survives what ends a session badly: kill -9, a full disk, a guest fault.
final class CrashSafetyTests: ScratchTestCase {
    private var file: String { scratch.appendingPathComponent("r.dsrec").path }

    /// kill -9 at a moment the test does not choose: the file reads, and the rounds it
    /// lost are those harvested in about the last second (the writer hands records to
    /// write(2) when the oldest is half a second old). "Harvested" is the rounds that
    /// started before the kill, from the file's own clock: start time plus round offsets.
    func testKillNineLosesAtMostTheLastSecond() throws {
        try requireKVM()
        for wait in [1.3, 2.1] {
            try? FileManager.default.removeItem(atPath: file)
            let record = try Running(try Tool.binary(), ["record", file, "--duration", "60s", "--interval", "50ms", "--slots", "4M"],
                                     in: scratch)
            defer { if record.isRunning { kill(record.pid, SIGKILL) } }
            XCTAssertNotNil(poll(timeout: 20, "rounds in the file") { () -> Int? in
                let rounds = (try? inspectJSON(file, in: scratch))?.json?["rounds"] as? Int ?? 0
                return rounds >= 1 ? rounds : nil
            })
            usleep(UInt32(wait * 1e6))
            let killedAt = Date().timeIntervalSince1970
            kill(record.pid, SIGKILL)
            let outcome = record.finish(timeout: 10)
            XCTAssertFalse(outcome.exited, "record should have died of SIGKILL")

            let (inspect, json) = try inspectJSON(file, in: scratch)
            XCTAssertEqual(inspect.status, 0, inspect.stderr)
            XCTAssertEqual(json?["finished"] as? Bool, false)
            let rounds = json?["rounds"] as? Int ?? 0
            let session = json?["session"] as? [String: Any]
            let start = session?["start_time"] as? Double ?? 0
            let span = json?["span_s"] as? Double ?? 0
            let first = (try? firstRoundStart()) ?? 0
            // The file's last round ended at start + first + span; the kill came after.
            let lost = killedAt - (start + first + span)
            XCTAssertGreaterThan(rounds, 0)
            XCTAssertLessThanOrEqual(lost, 1.0, "kill -9 after \(wait) s lost \(lost) s of rounds (\(rounds) survived)")
            print("kill -9 after \(wait) s: \(rounds) rounds survived; the last ended \(String(format: "%.3f", lost)) s before the kill")
        }
    }

    /// Seconds from the session's start to its first round, from the CSV.
    private func firstRoundStart() throws -> Double {
        let csv = try dirtyscope(["export", file, "--csv"], in: scratch)
        guard csv.stdoutLines.count > 1 else { return 0 }
        return Double(csv.stdoutLines[1].split(separator: ",")[1]) ?? 0
    }

    /// A file size limit (`ulimit -f`, as a full disk): record says the write failed and
    /// how many rounds the file holds, exits 1, and the file reads back that many.
    func testFullDiskIsAnErrorNamingTheRoundsKept() throws {
        try requireKVM()
        let script = "ulimit -f 16; exec \(shellQuote(try Tool.binary())) record \(shellQuote(file)) --slots 16M --interval 10ms --rounds 400 --workload sweep --rate 0"
        let outcome = try shell(script, in: scratch, timeout: 60)
        XCTAssertTrue(outcome.exited, "record died of signal \(outcome.status)")
        XCTAssertEqual(outcome.status, 1, outcome.stderr)
        let message = outcome.stderrLines.last ?? ""
        XCTAssertTrue(message.contains("recording failed") && message.contains("File too large"), message)
        let held = firstMatch(message, #"holds (\d+) of the \d+ rounds"#).flatMap { Int($0) }
        XCTAssertNotNil(held, message)
        let (inspect, json) = try inspectJSON(file, in: scratch)
        XCTAssertEqual(inspect.status, 0)
        XCTAssertEqual(json?["rounds"] as? Int, held)
        XCTAssertLessThan(held ?? 400, 400)
    }

    /// A guest that halts: record says which vCPU faulted and why, and exits 1; inspect
    /// shows the reason.
    func testGuestFaultIsReportedAndInspectShowsIt() throws {
        try requireKVM()
        let guest = scratch.appendingPathComponent("hlt.bin").path
        FileManager.default.createFile(atPath: guest, contents: Data([0xf4]))   // hlt
        // One vCPU: with two, either may halt first and be the one named.
        let outcome = try dirtyscope(["record", file, "--guest-file", guest, "--slots", "4M", "--vcpus", "1", "--rounds", "50"],
                                     in: scratch)
        XCTAssertEqual(outcome.status, 1, outcome.stderr)
        XCTAssertTrue(outcome.stderr.contains("guest fault: vCPU 0: guest halted (HLT)"), outcome.stderr)
        let text = try dirtyscope(["inspect", file], in: scratch)
        XCTAssertTrue(text.stdoutLines.contains { $0.hasPrefix("faults") && $0.contains("vCPU 0: guest halted (HLT)") }, text.stdout)
        let (_, json) = try inspectJSON(file, in: scratch)
        XCTAssertEqual((json?["faults"] as? [String])?.first?.hasPrefix("vCPU 0: guest halted (HLT)"), true)
    }

    /// At 1 byte a second a round's copy would take days; SIGTERM still ends record
    /// (the copy checks for a stop every 100 ms), with the file finished.
    func testSIGTERMEndsASlowCopy() throws {
        try requireKVM()
        let record = try Running(try Tool.binary(), ["record", file, "--bandwidth", "1", "--slots", "16M", "--workload", "sweep",
                                                     "--rate", "0", "--duration", "60s"], in: scratch)
        defer { if record.isRunning { kill(record.pid, SIGKILL) } }
        XCTAssertNotNil(poll(timeout: 20, "the recording's header") { FileManager.default.fileExists(atPath: file) ? true : nil })
        usleep(1_000_000)   // the first round's copy is under way
        kill(record.pid, SIGTERM)
        let outcome = record.finish(timeout: 10)   // fails the test if record is still alive
        XCTAssertTrue(outcome.exited, "record died of signal \(outcome.status)")
        XCTAssertEqual(outcome.status, 128 + SIGTERM, outcome.stderr)
        let (_, json) = try inspectJSON(file, in: scratch)
        XCTAssertEqual(json?["finished"] as? Bool, true)
    }

    /// kill -9 of `run --record` in tmux: the file reads, and it lacks at most the rounds
    /// of the last second (20 at 50 ms, plus one for the screen's lag) of those the header
    /// showed just before the kill.
    func testKillNineOfTheLiveUIKeepsAllButTheLastSecond() throws {
        let tmux = try requireTmux()
        try requireKVM()
        let s = try TmuxSession(tmux: tmux, scratch: scratch, name: "kill9", width: 160, height: 48,
                                argv: [try Tool.binary(), "run", "--slots", "8M", "--interval", "50ms", "--record", file])
        defer { s.kill() }
        let round = { firstMatch(s.header(), #"round (\d+)"#).flatMap { Int($0) } ?? 0 }
        s.waitFor("round 30") { _ in round() >= 30 }
        guard let pid = s.programPID() else { return XCTFail("no program pid") }
        let shown = round()
        XCTAssertEqual(kill(pid, SIGKILL), 0)
        _ = s.waitForExit()
        let (inspect, json) = try inspectJSON(file, in: scratch)
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        let kept = json?["rounds"] as? Int ?? 0
        XCTAssertGreaterThanOrEqual(kept, shown - 21, "kill -9 with round \(shown) on screen left \(kept) rounds")
        print("kill -9 of run --record: round \(shown) on screen, \(kept) rounds in the file")
    }
}

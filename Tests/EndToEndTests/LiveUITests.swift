import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The live heatmap driven through tmux: keys in, screen text out.
final class LiveUITests: ScratchTestCase {

    /// Starts `dirtyscope run` in tmux; `environment` entries (NAME=value) go before it.
    private func start(width: Int = 160, height: Int = 48, extra: [String] = [], environment: [String] = []) throws -> TmuxSession {
        let tmux = try requireTmux()
        try requireKVM()
        let env = environment.isEmpty ? [] : ["/usr/bin/env"] + environment
        let s = try TmuxSession(tmux: tmux, scratch: scratch, name: "live-\(width)x\(height)", width: width, height: height,
                                argv: env + [try Tool.binary(), "run", "--slots", "8M,16M", "--interval", "50ms"] + extra)
        session = s
        return s
    }

    /// The round number in the header.
    private func headerRound(_ s: TmuxSession) -> Int? {
        firstMatch(s.header(), #"round (\d+)"#).flatMap { Int($0) }
    }

    private func waitForRunning(_ s: TmuxSession, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        s.waitFor("the header to show a harvested round", file: file, line: line) { screen in
            let header = screen.split(separator: "\n").first.map(String.init) ?? ""
            // At 80 columns the name gives way to the mode, the round and the round period.
            return (firstMatch(header, #"round (\d+)"#).flatMap { Int($0) } ?? 0) >= 1
        } != nil
    }

    func testManualClearPauseHelpAndQuit() throws {
        let s = try start()
        guard waitForRunning(s) else { return }
        XCTAssertTrue(s.header().contains("legacy"), s.header())
        XCTAssertTrue(s.capture().contains("m mode  p pause  c clear"), "the live key line")
        XCTAssertEqual(s.format("#{alternate_on}"), "1", "the UI draws in the alternate screen")
        let running = " " + s.sttySettings().replacingOccurrences(of: "\n", with: " ") + " "
        XCTAssertTrue(running.contains(" -icanon ") && running.contains(" -echo "), "curses mode while running: \(running)")

        // m: manual protect.
        s.send("m", literal: true)
        s.waitFor("the header to show manual mode") { $0.split(separator: "\n").first?.contains("manual/auto chunk 64") == true }

        // v l l l c: CLEAR a range of four blocks; the CLEAR panel shows what it cleared.
        XCTAssertTrue(s.capture().contains("select blocks, press c"), "the CLEAR panel before any CLEAR")
        s.send("v", literal: true)
        for _ in 0..<3 { s.send("l", literal: true) }
        s.waitFor(text: "cursor block 3 (pages 192-255)")
        s.send("c", literal: true)
        s.waitFor("the CLEAR panel to show the cleared pages") { matches($0, #"4 blk, \d+ pages cleared, \d+ calls?"#) }

        // p: paused; n then harvests exactly one round.
        s.send("p", literal: true)
        s.waitFor("PAUSED in the header") { $0.split(separator: "\n").first?.hasSuffix("PAUSED") == true }
        let paused = try XCTUnwrap(headerRound(s), s.header())
        s.send("n", literal: true)
        s.waitFor("round \(paused + 1) after n") { _ in headerRound(s) == paused + 1 }

        // ?: the help overlay lists the keys; Escape closes it. ? again turns to what each
        // number means, and any other key closes that.
        let helpText = ["toggle manual protect / legacy", "CLEAR selected blocks (or the cursor's)", "pause / resume", "quit"]
        s.send("?", literal: true)
        s.waitFor("the help overlay") { screen in helpText.allSatisfy { screen.contains($0) } }
        s.send("Escape")
        s.waitFor("the help overlay to close after Escape") { !$0.contains("toggle manual protect / legacy") }
        s.send("?", literal: true)
        s.waitFor(text: "toggle manual protect / legacy")
        s.send("?", literal: true)
        s.waitFor(text: "what each number means (2/")
        s.send("Escape")
        s.waitFor("the help to close") { !$0.contains("what each number means") }

        // q: exit 0, terminal restored.
        s.send("q", literal: true)
        let (code, screen) = s.waitForExit()
        XCTAssertEqual(code, 0)
        assertTerminalRestored(s, screen: screen)
    }

    func testTooSmallTerminal() throws {
        let s = try start(width: 40, height: 10)
        s.waitFor("the too-small message") { $0.contains("terminal too small: 40x10") && $0.contains("DirtyScope needs 60x16 or more") }
        // Growing the terminal brings the heatmap.
        try s.tmuxCommand(["resize-window", "-t", s.name, "-x", "160", "-y", "48"])
        _ = waitForRunning(s)
        try s.tmuxCommand(["resize-window", "-t", s.name, "-x", "40", "-y", "10"])
        s.waitFor(text: "terminal too small: 40x10")
        s.send("q", literal: true)
        let (code, screen) = s.waitForExit()
        XCTAssertEqual(code, 0)
        assertTerminalRestored(s, screen: screen)
    }

    /// SIGTERM: the terminal is restored, the recording started with --record is finished, exit 143.
    func testSIGTERMRestoresTheTerminalAndFinishesTheRecording() throws {
        let file = scratch.appendingPathComponent("live.dsrec").path
        let s = try start(extra: ["--record", file])
        guard waitForRunning(s), let pid = s.programPID() else { return }
        XCTAssertEqual(kill(pid, SIGTERM), 0)
        let (code, screen) = s.waitForExit()
        XCTAssertEqual(code, 128 + SIGTERM)
        assertTerminalRestored(s, screen: screen)

        let inspect = try dirtyscope(["inspect", file], in: scratch)
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertEqual(inspect.stderr, "", "the recording was not finished")
        let (_, json) = try inspectJSON(file, in: scratch)
        XCTAssertEqual(json?["finished"] as? Bool, true)
        XCTAssertGreaterThanOrEqual(json?["rounds"] as? Int ?? 0, 1)
    }

    /// After `--rounds 30` the UI waits for q idle (the issue asks for under 2% of a core):
    /// the process's CPU time from /proc over 3 s is printed, and the test fails only far
    /// from idle (a quarter of a core; a spinning thread uses all of one).
    func testRoundLimitLeavesTheUIIdle() throws {
        let s = try start(extra: ["--rounds", "30"])
        guard waitForRunning(s) else { return }
        s.waitFor("round 30", timeout: 30) { _ in (headerRound(s) ?? 0) >= 30 }
        guard let pid = s.programPID() else { return XCTFail("no program pid") }
        /// User plus system time of the whole process, in seconds.
        func cpuSeconds() -> Double? {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            // After the command name: state is field 3, utime 14 and stime 15.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
            return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
        }
        usleep(500_000)
        let before = try XCTUnwrap(cpuSeconds())
        let wallBefore = Date()
        usleep(3_000_000)
        let used = try XCTUnwrap(cpuSeconds()) - before
        let wall = Date().timeIntervalSince(wallBefore)
        print("after --rounds 30: \(String(format: "%.2f", used)) s of CPU in \(String(format: "%.2f", wall)) s (\(String(format: "%.1f", 100 * used / wall))% of a core)")
        XCTAssertLessThan(used, 0.25 * wall, "the UI used \(used) s of CPU in \(wall) s waiting for q")
        XCTAssertEqual(headerRound(s), 30, "no round past the limit")
        s.send("q", literal: true)
        let (code, _) = s.waitForExit()
        XCTAssertEqual(code, 0)
    }

    /// q with --record: the file holds at least the rounds the header showed, finished.
    func testQuitFinishesTheRecording() throws {
        let file = scratch.appendingPathComponent("quit.dsrec").path
        let s = try start(extra: ["--record", file])
        guard waitForRunning(s) else { return }
        s.waitFor("round 5") { _ in (headerRound(s) ?? 0) >= 5 }
        XCTAssertTrue(s.header().hasSuffix(" REC"), "no recording mark: \(s.header())")
        let shown = headerRound(s) ?? 0
        s.send("q", literal: true)
        let (code, screen) = s.waitForExit()
        XCTAssertEqual(code, 0)
        assertTerminalRestored(s, screen: screen)

        let (inspect, json) = try inspectJSON(file, in: scratch)
        XCTAssertEqual(inspect.stderr, "", "the recording was not finished")
        XCTAssertEqual(json?["finished"] as? Bool, true)
        XCTAssertGreaterThanOrEqual(json?["rounds"] as? Int ?? 0, shown)
    }

    /// The CLEAR lab's story at 80x24, as a user plays it: manual protect, then the hand
    /// policy (nobody clears, so every page GET reported comes back as a false positive),
    /// then CLEAR on the first vCPU's hot set (blocks 0-7 of slot 0). Within two rounds the
    /// false positives in those blocks fall to about 0, and the CLEAR panel says so for the
    /// same blocks, before and since.
    func testHandPolicyClearStopsFalsePositivesInTheClearedBlocks() throws {
        let s = try start(width: 80, height: 24)
        guard waitForRunning(s) else { return }
        s.send("m", literal: true)
        s.waitFor("manual/auto in the header") { $0.split(separator: "\n").first?.contains("manual/auto chunk 64") == true }
        s.send("o", literal: true)
        s.waitFor("manual/hand in the header") { $0.split(separator: "\n").first?.contains("manual/hand chunk 64") == true }
        // Sixteen rounds of hand, so the panel's "before" holds its full window.
        let handFrom = try XCTUnwrap(headerRound(s))
        s.waitFor("16 rounds under hand", timeout: 30) { _ in (headerRound(s) ?? 0) >= handFrom + 16 }
        XCTAssertTrue(s.capture().contains("never cleared"), "the race strip names hand's false positives:\n\(s.capture())")

        s.send("v", literal: true)
        for _ in 0..<7 { s.send("l", literal: true) }
        s.waitFor(text: "cursor block 7")
        s.send("c", literal: true)
        let screen = s.waitFor("two rounds since the CLEAR") { screen in
            firstMatch(screen, #"rounds\s+\d+\s+(\d+)"#).flatMap { Int($0) }.map { $0 >= 2 } ?? false
        } ?? s.capture()
        XCTAssertTrue(matches(screen, #"512 dirty bits KVM cleared"#) || matches(screen, #"\d+ dirty bits KVM cleared"#), screen)
        let before = try XCTUnwrap(firstMatch(screen, #"FP/round\s+([0-9.]+)\s+[0-9.]+"#).flatMap(Double.init), screen)
        let since = try XCTUnwrap(firstMatch(screen, #"FP/round\s+[0-9.]+\s+([0-9.]+)"#).flatMap(Double.init), screen)
        XCTAssertGreaterThan(before, 4, "hand re-reports the hot set: false positives per block per round before the CLEAR")
        XCTAssertLessThan(since, 2, "about 0 in the cleared blocks since the CLEAR:\n\(screen)")
        XCTAssertLessThan(since, before / 5, "the CLEAR must cut false positives in its blocks:\n\(screen)")
    }

    /// A crash (here SIGSEGV from outside): the handler restores the saved terminal
    /// settings and leaves the alternate screen without curses, says so in one line, and
    /// the process dies of the same signal.
    func testFatalSignalRestoresTheTerminalAndDies() throws {
        // Without Swift's own crash backtracer, which would run next and wait for a key.
        let s = try start(environment: ["SWIFT_BACKTRACE=enable=no"])
        guard waitForRunning(s), let pid = s.programPID() else { return }
        XCTAssertEqual(kill(pid, SIGSEGV), 0)
        let (code, screen) = s.waitForExit()
        XCTAssertEqual(code, 128 + SIGSEGV, "died of the signal it got")
        XCTAssertEqual(s.format("#{alternate_on}"), "0", "the pane is still in the alternate screen")
        let stty = " " + s.sttySettings().replacingOccurrences(of: "\n", with: " ") + " "
        XCTAssertTrue(stty.contains(" icanon ") && stty.contains(" echo "), "terminal settings not restored: \(stty)")
        XCTAssertTrue(screen.contains("dirtyscope: fatal signal \(SIGSEGV)"), screen)
        XCTAssertFalse(screen.contains("? help  q quit"), "the UI is left on the screen:\n\(screen)")
    }

    func testSIGHUPRestoresTheTerminal() throws {
        let s = try start()
        guard waitForRunning(s), let pid = s.programPID() else { return }
        XCTAssertEqual(kill(pid, SIGHUP), 0)
        let (code, screen) = s.waitForExit()
        XCTAssertEqual(code, 128 + SIGHUP)
        assertTerminalRestored(s, screen: screen)
    }
}

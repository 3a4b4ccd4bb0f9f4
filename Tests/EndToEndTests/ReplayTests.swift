import Foundation
import XCTest

/// `dirtyscope replay` in tmux with /dev/kvm hidden from it: replay needs no KVM.
final class ReplayTests: ScratchTestCase {

    func testReplayRunsWithoutKVM() throws {
        let tmux = try requireTmux()
        try requireKVM()  // only to make the recording
        try HiddenKVM.require(in: scratch)
        let file = scratch.appendingPathComponent("replay.dsrec").path
        _ = try recordFixture(file, in: scratch)
        let rounds = try XCTUnwrap(try inspectJSON(file, in: scratch).json?["rounds"] as? Int)

        // The wrapper really hides KVM: caps fails under it, naming /dev/kvm.
        let caps = try HiddenKVM.run(["caps"], in: scratch)
        XCTAssertEqual(caps.status, 1, caps.stderr)
        XCTAssertTrue(caps.stderr.contains("/dev/kvm"), caps.stderr)

        let s = try TmuxSession(tmux: tmux, scratch: scratch, name: "replay", width: 160, height: 48,
                                argv: HiddenKVM.prefix + [try Tool.binary(), "replay", file])
        session = s
        // It plays to the end by itself (the recording spans well under a second).
        guard s.waitFor(text: "REPLAY \(rounds)/\(rounds) paused") != nil else { return }
        XCTAssertTrue(s.capture().contains("end of recording"))
        XCTAssertTrue(s.header().contains("DirtyScope"), s.header())
        XCTAssertTrue(s.header().contains("round \(rounds)"), s.header())
        XCTAssertTrue(s.capture().contains("space play  ,. step"), "the replay key line")

        s.send("Home")
        s.waitFor("round 1 of \(rounds)") { $0.split(separator: "\n").first?.contains("REPLAY 1/\(rounds) paused") == true }
        s.send(".", literal: true)
        s.waitFor(text: "REPLAY 2/\(rounds) paused")
        s.send("Right")
        s.waitFor(text: "REPLAY 3/\(rounds) paused")
        s.send(",", literal: true)
        s.waitFor(text: "REPLAY 2/\(rounds) paused")
        s.send("End")
        s.waitFor(text: "REPLAY \(rounds)/\(rounds) paused")
        // Keys that steer a live session are refused with a note.
        s.send("m", literal: true)
        s.waitFor(text: "replay: 'm' steers a live session only")

        s.send("q", literal: true)
        let (code, screen) = s.waitForExit()
        XCTAssertEqual(code, 0)
        assertTerminalRestored(s, screen: screen)
    }

    /// The file is truncated while replay has it open: the next step says the file changed
    /// (it used to die of SIGBUS on the lost pages), and the UI still quits cleanly.
    func testReplayOfAShrinkingFileSaysItChanged() throws {
        let tmux = try requireTmux()
        try requireKVM()  // only to make the recording
        let file = scratch.appendingPathComponent("shrinks.dsrec").path
        _ = try recordFixture(file, in: scratch)
        let rounds = try XCTUnwrap(try inspectJSON(file, in: scratch).json?["rounds"] as? Int)
        let bytes = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)

        let s = try TmuxSession(tmux: tmux, scratch: scratch, name: "shrinks", width: 220, height: 48,
                                argv: [try Tool.binary(), "replay", file])
        session = s
        guard s.waitFor(text: "REPLAY \(rounds)/\(rounds) paused") != nil else { return }
        XCTAssertEqual(truncate(file, 100), 0)
        s.send("Home")
        s.waitFor(text: "the file changed while open: \(bytes) bytes when opened, 100 now")
        s.send("q", literal: true)
        let (code, screen) = s.waitForExit()
        XCTAssertEqual(code, 0)
        assertTerminalRestored(s, screen: screen)
    }
}

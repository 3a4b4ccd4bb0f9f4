@testable import DirtyScopeTUI
import DirtyScopeModel
import Testing

@Suite struct LiveKeysTests {
    @Test func mSendsManualAndTheHeaderFollowsTheSession() {
        let h = Harness()
        h.press("m")
        #expect(h.controller.commands == [.setMode(.manual)])
        #expect(h.screen.line(0).contains("legacy"), "the header waits for the session to confirm")
        h.send(Fixture.event(.modeChanged(.manual, .pages(64))))
        #expect(h.screen.line(0).contains("manual chunk 64"))
        h.press("m")
        #expect(h.controller.commands.last == .setMode(.legacy))
    }

    @Test func ringModeExplainsThatSwitchingNeedsARestart() {
        let h = Harness(info: Fixture.info(mode: .ring))
        h.press("m")
        #expect(h.controller.commands.isEmpty)
        #expect(h.text.contains("needs a restart"))
    }

    @Test func clearSendsTheCursorBlockWhenNothingIsSelected() {
        let h = Harness()
        h.press(.right)
        h.press("c")
        // 4096 pages in a 160x40 layout fit at 1 page per cell: one step right is one block.
        #expect(h.controller.commands == [.clearBlocks(slot: 0, blocks: [1])])
    }

    @Test func marksAndRangesMakeTheSelection() {
        let h = Harness()
        h.press(" ")                       // mark block 0
        h.press(.right); h.press(.right)   // cursor on block 2
        h.press("v")
        h.press(.right); h.press(.right)   // range 2...4, still open
        h.press("c")
        #expect(h.controller.commands == [.clearBlocks(slot: 0, blocks: [0, 2, 3, 4])])
        h.press("a")
        h.press("x")
        h.press("c")
        #expect(h.controller.commands.last == .clearBlocks(slot: 0, blocks: [4]), "x dropped the selection")
    }

    @Test func tabMovesToTheNextSlot() {
        let h = Harness()
        h.press(.tab)
        h.press("c")
        #expect(h.controller.commands == [.clearBlocks(slot: 1, blocks: [0])])
        #expect(h.lines(containing: "> slot 1").count == 1)
    }

    @Test func pauseStepAndResume() {
        let h = Harness()
        h.press("n")
        #expect(h.controller.commands.isEmpty, "n only steps while paused")
        h.press("p")
        h.send(Fixture.event(.paused))
        #expect(h.screen.line(0).contains("PAUSED"))
        h.press("n")
        h.press("p")
        #expect(h.controller.commands == [.pause, .step, .resume])
    }

    @Test func workloadAndRateKeys() {
        let h = Harness()
        h.press("1")
        h.press("6")
        h.press("+")
        h.press("-")
        #expect(h.controller.commands == [.setWorkload(.sweep), .setWorkload(.idle), .scaleRate(2), .scaleRate(0.5)])
    }

    @Test func promptsSetIntervalAndBandwidth() {
        let h = Harness()
        h.press("s")
        #expect(h.text.contains("harvest interval in ms"))
        h.press("25")
        #expect(h.text.contains("25_"))
        h.press(.enter)
        h.press("s0")
        h.press(.enter)
        h.press("b1.5")
        h.press(.backspace)
        h.press("2")
        h.press(.enter)
        h.press("b")
        h.press(.escape)
        #expect(h.controller.commands == [.setIntervalNanos(25_000_000), .setIntervalNanos(0),
                                          .setBandwidth(1_258_291)])
    }

    @Test func recordStartsWithADatedPathAndStops() throws {
        let h = Harness()
        h.press("r")
        let command = try #require(h.controller.commands.first)
        guard case .startRecording(let path) = command else { Issue.record("sent \(command)"); return }
        #expect(path.wholeMatch(of: /dirtyscope-\d{8}-\d{6}\.dsrec/) != nil)
        h.send(Fixture.event(.recordingStarted(path: path)))
        #expect(h.screen.line(0).contains("● REC"))
        h.press("r")
        #expect(h.controller.commands.last == .stopRecording)
    }

    @Test func guestFaultIsShownWithTheRestartKey() {
        let h = Harness()
        h.send(Fixture.event(.guestFault("triple fault at rip 0x1000")))
        #expect(h.screen.line(1).contains("GUEST FAULT: triple fault at rip 0x1000"))
        #expect(h.screen.line(1).contains("press R"))
        #expect(h.screen[0, 1].role == .alert)
        h.press("R")
        #expect(h.controller.commands == [.restartGuest])
        h.send(Fixture.event(.restarted("user")))
        #expect(!h.text.contains("GUEST FAULT"))
    }

    @Test func quitAndSignalsEndTheUI() {
        let h = Harness()
        #expect(h.press("q") == .quit)
        #expect(h.app.handle(.signal(15)) == .signal(15))
    }

    @Test func helpOverlayListsEveryKey() {
        let h = Harness(width: 120, height: 40)
        h.press("?")
        let text = h.text
        for entry in KeyHelp.entries(replay: false) {
            #expect(text.contains(entry.keys + String(repeating: " ", count: 17 - entry.keys.count) + entry.action),
                    "\(entry.keys) missing")
        }
        h.press("z")
        #expect(!h.text.contains(KeyHelp.live[0].action), "any key closes the help")
    }
}

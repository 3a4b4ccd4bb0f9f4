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
        #expect(h.screen.line(0).contains("manual/auto chunk 64"), "the policy is part of the mode label")
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

    /// `p n n p` typed faster than the session answers (a round still copying): the keys
    /// step from what was asked, not from what the session last confirmed.
    @Test func quickPauseStepsAndResumeFollowWhatWasAsked() {
        let h = Harness()
        h.press("pnnp")
        #expect(h.controller.commands == [.pause, .step, .step, .resume])
        #expect(!h.text.contains("press p first"))
        h.send(.record(.round(Fixture.round(1, info: h.app.state.info, dirty: [[1]]))))
        let running = h.screen.line(0)
        h.send(Fixture.event(.paused))
        let paused = h.screen.line(0)
        #expect(paused.contains("PAUSED"))
        #expect(paused.replacing("PAUSED", with: "      ") == running,
                "pausing changes nothing else in the header")
        h.send(Fixture.event(.resumed))
        #expect(!h.screen.line(0).contains("PAUSED"))
        #expect(h.screen.line(0).contains("interval 100ms, real "), "the real round period beside the interval")
        h.press("p")
        #expect(h.controller.commands.last == .pause, "after the session confirmed, p pauses again")
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

    @Test(arguments: [(120, 40), (80, 24)])
    func helpOverlayListsEveryKeyAndGlyph(width: Int, height: Int) {
        let h = Harness(width: width, height: height)
        h.press("?")
        let lines = h.screen.lines
        for entry in KeyHelp.entries(replay: false) {
            // Long descriptions in one column, short ones in two.
            let action = width >= 120 ? entry.action : entry.short
            let found = lines.contains { (line: String) -> Bool in
                guard let k = line.firstRange(of: " " + entry.keys + " "), let a = line.firstRange(of: action + " ") else { return false }
                return k.upperBound <= a.lowerBound
            }
            #expect(found, "\(entry.keys) \(entry.action) missing at \(width)x\(height)")
        }
        for item in Legend.items(.unicode, showFalsePositives: true) {
            #expect(lines.contains { $0.contains(item.explanation) }, "glyph \(item.explanation) missing")
        }
        h.press("z")
        #expect(!h.text.contains(KeyHelp.live[0].short), "any key closes the help")
    }

    /// `?` twice: every row of the metrics panel has its line, under the label the panel prints.
    @Test(arguments: [(80, 24), (200, 60)])
    func helpExplainsEveryMetricRow(width: Int, height: Int) {
        let info = Fixture.info(mode: .manual)
        let h = Harness(info: info, width: width, height: height)
        h.send(.record(.round(Fixture.round(1, info: info, dirty: [Array(0..<64)], fps: [Array(0..<8)]))))
        h.send(Fixture.event(.blocksCleared(BlockClear(slot: 0, blocks: [0], calls: 1, pagesCleared: 8, pagesCopied: 8, clearNanos: 1000))))
        h.send(.record(.round(Fixture.round(2, info: info, dirty: [Array(0..<64)], fps: [Array(0..<8)]))))
        h.press("?")
        #expect(h.text.contains("? next: what each number means (1/"))
        var pages: [String] = []
        for _ in 0..<8 {
            h.press("?")
            guard h.text.contains("what each number means (") else { break }
            pages.append(h.text)
        }
        #expect(!pages.isEmpty)
        #expect(!h.text.contains("what each number means"), "? after the last page closes the help")
        let help = pages.joined(separator: "\n")
        for label in ["reported", "false pos", "FP rate", "missed", "verifications", "FP MiB", "FP s@256M", "GET, CLEAR",
                      "guest writes/s", "WP faults/s", "copied MiB/s", "by mode", "FP/round, FP/second", "rest FP/rnd",
                      "reported/rnd", "FP% log", "rep/s", "race"] {
            #expect(help.contains(" " + label + " "), "\(label) at \(width)x\(height)")
        }
        #expect(help.contains("longest"), "GET's second column is a maximum, and says so")
        #expect(help.contains("unchanged"), "the race line's last origin, on the page too")
    }

    /// A message keeps the line for two seconds before the next takes it, and a routine one
    /// (a verification that found nothing) never displaces another.
    @Test func messagesWaitTheirTurn() {
        let h = Harness()
        let s: UInt64 = 1_000_000_000
        h.press("a")
        #expect(h.text.contains("selected all 64 blocks of slot 0"))
        h.send(Fixture.event(.note("first note")))
        h.send(Fixture.event(.verified(Verification(missedPerSlot: [0, 0], comparedPages: 6144))))
        #expect(h.text.contains("selected all 64 blocks"), "the note waits behind the selection's message")
        h.send(.tick(nanos: 3 * s + s / 10, wallSeconds: 0))
        #expect(h.text.contains("first note"))
        h.send(.tick(nanos: 9 * s, wallSeconds: 0))
        #expect(!h.text.contains("verified 6144 pages"), "the routine verification was dropped")
        h.send(.tick(nanos: 20 * s, wallSeconds: 0))
        h.send(Fixture.event(.verified(Verification(missedPerSlot: [0, 0], comparedPages: 6144))))
        #expect(h.text.contains("verified 6144 pages: 0 missed"), "with the line free it shows")
        h.send(Fixture.event(.restarted("restarted by the user")))
        h.send(Fixture.event(.note("guest: hello")))
        h.send(.tick(nanos: 21 * s, wallSeconds: 0))
        #expect(h.text.contains("guest restarted: restarted by the user"), "R's answer stays up")
        h.send(.tick(nanos: 23 * s, wallSeconds: 0))
        #expect(h.text.contains("guest: hello"))
    }

    @Test func oCyclesTheClearPolicyAndSaysWhereItApplies() {
        let h = Harness()
        h.press("o")
        #expect(h.controller.commands == [.setClearPolicy(.hand)])
        #expect(h.text.contains("applies in manual mode"), "legacy mode: the policy waits for manual mode")
        h.send(Fixture.event(.modeChanged(.manual, .pages(64))))
        h.send(Fixture.event(.clearPolicyChanged(.hand)))
        #expect(h.screen.line(0).contains("manual/hand chunk 64"))
        for t in 1...6 { h.send(.tick(nanos: UInt64(t) * 10_000_000_000, wallSeconds: 1_700_000_000)) }   // messages had their turns
        #expect(h.text.contains("only blocks you clear (c) are re-protected"))
        h.press("o")
        #expect(h.controller.commands.last == .setClearPolicy(.afterCopy))
        h.press("o")
        #expect(h.controller.commands.last == .setClearPolicy(.atGet), "a quick second press steps on from the first")
    }

    @Test func xDropsTheSelectionFirstThenTheClearedBlocks() {
        let info = Fixture.info(mode: .manual)
        let h = Harness(info: info)
        h.send(.record(.round(Fixture.round(1, info: info, dirty: [[]]))))
        h.send(Fixture.event(.blocksCleared(BlockClear(slot: 0, blocks: [3], calls: 1, pagesCleared: 0, pagesCopied: 0,
                                                       clearNanos: 1000))))
        h.press(" ")
        h.press("x")
        #expect(h.controller.commands.isEmpty, "the first x drops the selection")
        h.press("x")
        #expect(h.controller.commands == [.dropClearedBlocks(slot: 0)])
        #expect(h.lines(containing: "FP/round").count == 1, "the panel waits for the session")
        h.send(Fixture.event(.clearedBlocksDropped(slot: 0)))
        #expect(h.lines(containing: "FP/round").isEmpty)
        #expect(h.text.contains("select blocks, press c"))
    }

    @Test func cursorStepsOneBlockWhenACellHoldsTwo() throws {
        // 65536 pages in a 49x18 panel: 128 pages (2 blocks) per cell.
        let h = Harness(info: Fixture.info(pages: [65536]), width: 80, height: 24)
        let geometry = h.app.state.selectedGeometry()
        #expect(geometry.blocksPerCell >= 2)
        #expect(h.lines(containing: "cell = \(geometry.blocksPerCell) blocks").count == 1)
        h.press("l")
        #expect(h.app.state.cursors[0] == 1)
        h.press("l")
        #expect(h.app.state.cursors[0] == 2)
        h.press("h")
        #expect(h.app.state.cursors[0] == 1)
        #expect(h.lines(containing: "cursor block 1").count == 1)
        h.press("j")
        #expect(h.app.state.cursors[0] == 1 + geometry.verticalStep)
    }
}

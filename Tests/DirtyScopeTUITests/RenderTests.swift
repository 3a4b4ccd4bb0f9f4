@testable import DirtyScopeTUI
import DirtyScopeModel
import Pages
import Testing

@Suite struct RenderTests {
    @Test func tooSmallTerminalGetsACenteredMessage() throws {
        let h = Harness(width: 50, height: 12)
        let lines = h.screen.lines
        let row = try #require(lines.firstIndex { $0.contains("terminal too small: 50x12") })
        #expect(row == 5)
        #expect(lines[row + 1].contains("needs 60x16"))
        let message = "terminal too small: 50x12"
        #expect(lines[row].prefix { $0 == " " }.count == (50 - message.count) / 2, "centered")
        #expect(lines.enumerated().allSatisfy { $0.offset == row || $0.offset == row + 1 || $0.element.allSatisfy { $0 == " " } })
        h.send(.resize(width: 60, height: 16))
        #expect(h.screen.line(0).contains("DirtyScope"))
    }

    @Test func clearResultIsComparedWithTheWholeSlot() {
        let info = Fixture.info()
        let h = Harness(info: info)
        h.send(.record(.round(Fixture.round(1, info: info, dirty: [Array(0..<64)]))))
        h.send(Fixture.event(.blocksCleared(BlockClear(slot: 0, blocks: Array(0..<12), calls: 1, pagesCleared: 768,
                                                       pagesCopied: 768, clearNanos: 12_000))))
        #expect(h.text.contains("CLEAR slot 0: 12 blocks, 768 pages cleared, 1 calls"))
        let watched = WatchedBlocks(blocks: 12, reported: 40, falsePositives: 3)
        h.send(.record(.round(Fixture.round(2, info: info, dirty: [Array(0..<2000)], fps: [Array(0..<700)],
                                            watched: [0: watched]))))
        #expect(h.text.contains("12 blk, 768 pages cleared, 1 calls"))
        #expect(h.lines(containing: "reported now").first?.hasSuffixNumbers(["40", "2000"]) == true)
        #expect(h.lines(containing: "FP now").first?.hasSuffixNumbers(["3", "700"]) == true)
        // Per block per round: 3 / 12 in the cleared blocks, 700 / 64 over the slot.
        #expect(h.lines(containing: "FP/blk/rnd").first?.hasSuffixNumbers(["0.25", "10.94"]) == true)
        h.send(.record(.round(Fixture.round(3, info: info, dirty: [[]], fps: [[]],
                                            watched: [0: WatchedBlocks(blocks: 12, reported: 5, falsePositives: 1)]))))
        #expect(h.lines(containing: "2 rnd since").count == 1)
        #expect(h.lines(containing: "FP since").first?.hasSuffixNumbers(["4", "700"]) == true)
    }

    @Test func metricsShowRoundAndTotals() {
        let info = Fixture.info()
        let h = Harness(info: info)
        h.send(.record(.round(Fixture.round(1, info: info, dirty: [Array(0..<100)], fps: [Array(0..<10)], missed: 0))))
        h.send(.record(.round(Fixture.round(2, info: info, dirty: [Array(0..<50)], fps: [Array(0..<5)]))))
        #expect(h.screen.line(0).contains("round 2"))
        #expect(h.lines(containing: "reported").first?.hasSuffixNumbers(["50", "150"]) == true)
        #expect(h.lines(containing: "false pos").first?.hasSuffixNumbers(["5", "15"]) == true)
        #expect(h.lines(containing: "FP rate").first?.hasSuffixNumbers(["10.0%", "10.0%"]) == true)
        #expect(h.lines(containing: "missed (1 chk)").first?.hasSuffixNumbers(["-", "0"]) == true)
        // 1000 guest writes in the 0.1 s between round starts.
        #expect(h.lines(containing: "writes/s").first?.hasSuffixNumbers(["10.0k"]) == true)
    }

    @Test func asciiFallbackDrawsOnlyAscii() {
        let text = busyHarness(glyphs: .ascii, colors: .colors8).text
        #expect(text.unicodeScalars.allSatisfy { $0.isASCII })
        #expect(text.contains("#"), "dirty cells are drawn")
        #expect(busyHarness(glyphs: .unicode, colors: .colors8).text.unicodeScalars.contains { !$0.isASCII },
                "the Unicode table is really different")
    }

    @Test func monochromeUsesNoColorRoles() {
        let mono = busyHarness(glyphs: .unicode, colors: .monochrome).screen
        #expect(mono.cells.allSatisfy { !$0.role.needsColor })
        #expect(Set(mono.cells.map(\.role)).isSuperset(of: [.reverse, .bold, .underline]))
        let color = busyHarness(glyphs: .unicode, colors: .colors256).screen
        #expect(color.cells.contains { $0.role == .dirty })
        #expect(color.cells.contains { $0.role == .falsePositive })
        #expect(color.cells.contains { $0.role == .cleared })
    }

    @Test func heatmapStatesAreDistinct() throws {
        let h = busyHarness(glyphs: .ascii, colors: .monochrome)
        let body = h.body(of: 0)
        #expect(body.first == "x", "false positive at the cursor's page 0 with f on")
        #expect(body.contains("#"), "dirty this round")
        #expect(body.contains("o"), "cleared by the user")
        #expect(body.contains("="), "recently dirty")
        let origin = try #require(Layout(state: h.app.state).panel(of: 0)).body
        #expect(h.screen[origin.x, origin.y].role == .underline, "cursor")
        #expect(h.screen.cells.contains { $0.role == .reverse && $0.char == "=" }, "selected keeps its glyph")
    }

    @Test func heatDecaysToZeroAfterSixteenRounds() {
        let info = Fixture.info(pages: [4096])
        var state = AppState(info: info)
        state.fold(.round(Fixture.round(1, info: info, dirty: [[64]])))
        #expect(state.session.slots[0].heat[1] == 16)
        for r in 2...16 { state.fold(.round(Fixture.round(UInt64(r), info: info, dirty: [[]]))) }
        #expect(state.session.slots[0].heat[1] == 1)
        state.fold(.round(Fixture.round(17, info: info, dirty: [[]])))
        #expect(state.session.slots[0].heat.allSatisfy { $0 == 0 })
    }

    @Test func zoomShowsBlockBoundaries() {
        let info = Fixture.info(pages: [1 << 20])
        let h = Harness(info: info, width: 200, height: 40, glyphs: .ascii)
        h.send(.record(.round(Fixture.round(1, info: info, dirty: [Array(0..<64) + [64, 130]]))))
        #expect(h.lines(containing: "256 pages/cell").count == 1, "fit: 1M pages in a 159x35 panel")
        h.press("zzz")
        #expect(h.lines(containing: "1 page/cell").count == 1)
        // Two blocks of 64 cells per row, a boundary between them. Block 0: every page dirty;
        // block 1: its page 0, its other pages show the block's heat; block 2 (next row): its page 2.
        let row = Array(h.screen.line(2)), next = Array(h.screen.line(3))
        #expect(String(row[0..<66]) == String(repeating: "#", count: 64) + "|#")
        #expect(row[66..<129].allSatisfy { $0 == "=" })
        #expect(next[64] == "|" && next[0..<64].filter { $0 == "#" }.count == 1 && next[2] == "#")
        #expect(h.lines(containing: "rows 1-").count == 1, "the title says which rows are in view")
    }

    @Test func timeViewPutsTheNewestRoundOnTop() {
        let info = Fixture.info(pages: [4096])
        let h = Harness(info: info, glyphs: .ascii)
        h.send(.record(.round(Fixture.round(1, info: info, dirty: [Array(0..<16)]))))
        h.send(.record(.round(Fixture.round(2, info: info, dirty: [Array(4080..<4096)]))))
        h.press("t")
        #expect(h.lines(containing: "newest on top").count == 1)
        let top = h.screen.line(2), next = h.screen.line(3)
        let width = Layout(state: h.app.state).heat.width
        #expect(Array(top)[width - 1] == "#" && Array(top)[0] == " ")
        #expect(Array(next)[0] == "#" && Array(next)[width - 1] == " ")
    }

    @Test func manySlotsScrollToTheSelectedOne() {
        let info = Fixture.info(pages: Array(repeating: 1024, count: 20))
        let h = Harness(info: info, width: 100, height: 20)
        #expect(h.lines(containing: "slot 0 (1/20)").count == 1)
        #expect(h.lines(containing: "slot 19 (20/20)").isEmpty)
        for _ in 0..<19 { h.press(.tab) }
        #expect(h.lines(containing: "> slot 19 (20/20)").count == 1)
    }

    @Test func screenDiffFindsOnlyChangedRuns() {
        var a = Screen(width: 10, height: 2)
        a.put("hello", x: 0, y: 0)
        var b = a
        b.put("J", x: 3, y: 1, role: .bold)
        #expect(b.changes(from: a) == [ChangedRun(x: 3, y: 1, count: 1, role: .bold)])
        #expect(b.changes(from: nil).count == 4, "a full draw: hello, blanks, J, blanks")
    }

    /// Rounds, a CLEAR, a selection and the FP overlay: every heatmap state on screen.
    private func busyHarness(glyphs: GlyphMode, colors: ColorMode) -> Harness {
        let info = Fixture.info()
        let h = Harness(info: info, glyphs: glyphs, colors: colors)
        h.send(.record(.round(Fixture.round(1, info: info, dirty: [[900]]))))
        h.send(Fixture.event(.blocksCleared(BlockClear(slot: 0, blocks: [40], calls: 1, pagesCleared: 1,
                                                       pagesCopied: 1, clearNanos: 5000))))
        h.send(.record(.round(Fixture.round(2, info: info, dirty: [[0, 1, 2, 3] + Array(200..<208)], fps: [[0]],
                                            missed: 0))))
        h.send(Fixture.event(.guestFault("shutdown")))
        h.send(Fixture.event(.recordingStarted(path: "caf\u{e9}.dsrec")))
        h.press("f")
        for _ in 0..<14 { h.press(.right) }  // block 14 holds page 900: recently dirty
        h.press(" ")
        h.press(.home)
        return h
    }
}

extension Harness {
    /// The body of `slot`'s panel, rows joined.
    func body(of slot: Int) -> String {
        let rect = Layout(state: app.state).panel(of: slot)!.body
        let screen = self.screen
        return screen.lines[rect.y..<(rect.y + rect.height)].map { String(Array($0)[rect.x..<(rect.x + rect.width)]) }
            .joined()
    }
}

extension String {
    /// True when the line ends with these whitespace-separated values.
    func hasSuffixNumbers(_ values: [String]) -> Bool {
        let words = split(separator: " ").map(String.init)
        return words.suffix(values.count) == values[...]
    }
}

@testable import DirtyScopeTUI
import DirtyScopeModel
import KVM
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

    /// Rounds 1-4: blocks 0-11 report 10 pages each, 8 of them false positives; block 20
    /// reports 64 true pages. Then a CLEAR of blocks 0-11.
    private func clearedHarness(width: Int = 160, height: Int = 40, pagesCleared: Int? = 96,
                                mode: HarvestMode = .manual) -> (Harness, SessionInfo) {
        let info = Fixture.info(mode: mode)
        let h = Harness(info: info, width: width, height: height)
        let hotDirty = (0..<12).flatMap { b in (0..<10).map { b * 64 + $0 } } + Array(1280..<1344)
        let hotFPs = (0..<12).flatMap { b in (0..<8).map { b * 64 + $0 } }
        for r in 1...4 { h.send(.record(.round(Fixture.round(UInt64(r), info: info, dirty: [hotDirty], fps: [hotFPs])))) }
        h.send(Fixture.event(.blocksCleared(BlockClear(slot: 0, blocks: Array(0..<12), calls: 1, pagesCleared: pagesCleared,
                                                       maskPages: pagesCleared ?? 768, pagesCopied: 96, clearNanos: 12_000))))
        return (h, info)
    }

    @Test func clearComparesTheSameBlocksBeforeAndSinceBesideTheRest() {
        let (h, info) = clearedHarness()
        #expect(h.text.contains("CLEAR slot 0: 12 blocks, KVM cleared 96 dirty bits, 1 call"))
        #expect(h.metricsText.contains("96 dirty bits KVM cleared (GET's view of your blocks)"))
        // Since: the cleared blocks report one true page each; block 20 keeps 64 pages, 6 of them false.
        let after = (0..<12).map { $0 * 64 } + Array(1280..<1344)
        for r in 5...6 {
            h.send(.record(.round(Fixture.round(UInt64(r), info: info, dirty: [after], fps: [Array(1280..<1286)]))))
        }
        #expect(h.lines(containing: "per blk/rnd").first?.hasSuffixNumbers(["before", "since"]) == true)
        #expect(h.lines(containing: "rounds ").first?.hasSuffixNumbers(["4", "2"]) == true)
        // Cleared: 8 FP per block per round before, none since. The other 52 blocks: 0 before, 12 / 104 since.
        #expect(h.lines(containing: "FP/blk/rnd").first?.hasSuffixNumbers(["8.00", "0.00"]) == true)
        #expect(h.lines(containing: "FP rest").first?.hasSuffixNumbers(["0.00", "0.12"]) == true)
        #expect(h.lines(containing: "rep/blk/rnd").first?.hasSuffixNumbers(["10.00", "1.00"]) == true)
        #expect(h.lines(containing: "rep rest").first?.hasSuffixNumbers(["1.23", "1.23"]) == true)
    }

    @Test func roundsSinceAreCountedWithoutCapAndTheMarkStays() {
        let (h, info) = clearedHarness(width: 160, height: 40)
        for r in 5...44 { h.send(.record(.round(Fixture.round(UInt64(r), info: info, dirty: [[]])))) }
        #expect(h.lines(containing: "rounds ").first?.hasSuffixNumbers(["4", "40"]) == true)
        h.press("z")  // 64 pages per cell: one cell per block
        let body = h.body(of: 0)
        #expect(body.filter { $0 == "○" }.count == 12, "cleared blocks keep their mark past 16 rounds")
    }

    @Test func legacyClearSaysWhatTheMaskMeans() {
        let (h, _) = clearedHarness(pagesCleared: nil, mode: .legacy)
        #expect(h.text.contains("mask of 768 pages"))
        let panel = h.metricsText
        #expect(panel.contains("KVM clears whichever were written since the last GET"))
        #expect(panel.contains("re-arms the whole slot"))
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
        #expect(h.lines(containing: "missed").first?.hasSuffixNumbers(["-", "0"]) == true)
        #expect(h.lines(containing: "verified").first?.hasSuffixNumbers(["1x"]) == true)
        // 15 false positives of 4 KiB at 256 MiB/s.
        #expect(h.lines(containing: "FP MiB").first?.hasSuffixNumbers(["0.02", "0.06"]) == true)
        #expect(h.lines(containing: "FP s@256M").first?.hasSuffixNumbers(["0.00s", "0.00s"]) == true)
        #expect(h.lines(containing: "legacy").contains { $0.hasSuffixNumbers(["10.0%", "0.06", "0.00s"]) })
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
        #expect(body.first == "x", "false positive at the cursor's page 0: the overlay is on from the start")
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
        // Round labels take the first 5 columns; the address axis is the panel's last row.
        #expect(top.hasPrefix("r2 "), "the round axis")
        #expect(Array(top)[width - 1] == "#" && Array(top)[5] == " ")
        #expect(Array(next)[5] == "#" && Array(next)[width - 1] == " ")
        let body = Layout(state: h.app.state).panel(of: 0)!.body
        let axis = String(Array(h.screen.line(body.y + body.height - 1))[0..<width])
        #expect(axis.hasPrefix("addr 0 B") && axis.contains("8 MiB") && axis.hasSuffix("16 MiB"), "the address axis: \(axis)")
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
        for _ in 0..<14 { h.press(.right) }  // block 14 holds page 900: recently dirty
        h.press(" ")
        h.press(.home)
        return h
    }
}

extension Harness {
    /// The metrics panel's rows joined by spaces, runs of blanks squeezed.
    var metricsText: String {
        let rect = Layout(state: app.state).metrics
        return screen.lines[rect.y..<(rect.y + rect.height)]
            .map { String(Array($0)[rect.x..<(rect.x + rect.width)]) }
            .joined(separator: " ").split(separator: " ").joined(separator: " ")
    }

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

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
        #expect(h.screen.line(0).contains("legacy │ round 0"))
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
        #expect(h.metricsText.contains("12 blk, 96 pages cleared, 1 call"))
        #expect(h.metricsText.contains("96 dirty bits KVM cleared (GET's view of your blocks)"))
        // Since: the cleared blocks report one true page each; block 20 keeps 64 pages, 6 of them false.
        let after = (0..<12).map { $0 * 64 } + Array(1280..<1344)
        for r in 5...6 {
            h.send(.record(.round(Fixture.round(UInt64(r), info: info, dirty: [after], fps: [Array(1280..<1286)]))))
        }
        #expect(h.lines(containing: "per block").first?.hasSuffixNumbers(["before", "since"]) == true)
        #expect(h.lines(containing: "rounds ").first?.hasSuffixNumbers(["4", "2/4"]) == true, "2 of the 4 rounds since")
        // Round 1 came 2 ms into the session (its duration stands in for its period), the others 100 ms apart.
        #expect(h.lines(containing: "seconds ").first?.hasSuffixNumbers(["0.30s", "0.20s"]) == true)
        // Cleared: 8 FP per block per round before, none since. The other 52 blocks: 0 before, 12 / 104 since.
        #expect(h.lines(containing: "FP/round").first?.hasSuffixNumbers(["8.00", "0.00"]) == true)
        #expect(h.lines(containing: "FP/second").first?.hasSuffixNumbers(["105.96", "0.00"]) == true, "32 in 0.302 s")
        #expect(h.lines(containing: "rest FP/rnd").first?.hasSuffixNumbers(["0.00", "0.12"]) == true)
        #expect(h.lines(containing: "reported/rnd").first?.hasSuffixNumbers(["10.00", "1.00"]) == true)
        #expect(h.lines(containing: "rest rep/rnd").first?.hasSuffixNumbers(["1.23", "1.23"]) == true)
    }

    /// "Since" covers as many rounds as "before" did, so the comparison reads the same
    /// however long ago the CLEAR was.
    @Test func sinceStopsAtTheBeforeWindowAndTheMarkStays() {
        let (h, info) = clearedHarness(width: 160, height: 40)
        let after = (0..<12).map { $0 * 64 }
        for r in 5...8 { h.send(.record(.round(Fixture.round(UInt64(r), info: info, dirty: [after], fps: [after])))) }
        let settled = h.metricsText
        #expect(h.lines(containing: "rounds ").first?.hasSuffixNumbers(["4", "4"]) == true)
        #expect(h.lines(containing: "FP/round").first?.hasSuffixNumbers(["8.00", "1.00"]) == true)
        for r in 9...44 { h.send(.record(.round(Fixture.round(UInt64(r), info: info, dirty: [[]])))) }
        #expect(h.metricsText.contains(settled.split(separator: "per block").last!.split(separator: "─").first!),
                "40 rounds later the comparison is unchanged")
        for _ in 0..<20 { h.press(.right) }   // the cursor off the cleared blocks
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
        let (small, _) = clearedHarness(width: 80, height: 24, pagesCleared: nil, mode: .legacy)
        #expect(small.metricsText.contains("mask 768 pages: KVM clears those written since GET"), "whole at 80x24")
    }

    @Test(arguments: [(60, 16), (80, 24), (120, 40), (250, 70)])
    func everySizeKeepsTheEssentialsWhole(width: Int, height: Int) {
        let (h, info) = clearedHarness(width: width, height: height)
        h.send(Fixture.event(.clearPolicyChanged(.hand)))
        var round = Fixture.round(5, info: info, dirty: [[0, 1, 2]], fps: [[1]])
        round.metrics.clearPolicy = .hand
        h.send(.record(.round(round)))
        let lines = h.screen.lines
        #expect(lines[0].contains("manual/hand chunk 64"), "the mode and policy")
        #expect(lines[0].contains("round 5"))
        #expect(lines[height - 1].contains("? help  q quit"))
        #expect(lines[height - 1].contains("m mode  p pause  c clear"))
        #expect(h.lines(containing: "cursor block 0").count == 1)
        // The legend has a line of its own, every item whole at one of its lengths.
        let legend = lines[height - 3]
        let items = Legend.items(.unicode, showFalsePositives: true)
        #expect((0..<4).contains { tier in items.allSatisfy { legend.contains(" " + $0.labels[tier]) } }, "\(legend)")
        for item in items { #expect(legend.contains(String(String.UnicodeScalarView(item.sample.map(\.0))))) }
        #expect(lines[height - 2].contains("CLEAR slot 0") || lines[height - 2].contains("clear policy now hand"),
                "messages keep their own line")
        let metrics = h.metricsText
        // The smallest terminal keeps the most important rows; 80x24 and up keep these whole.
        let essential = ["round 5", "false pos", "FP rate", "missed", "CLEAR slot 0", "rounds 4 1/4", "FP/round"]
        // From 80x24 on: the comparison of every mode used, and the history with its marks
        // (the CLEAR before round 5 gives way to the switch to hand there: "m").
        let more = ["round total", "FP s@256M", "manual/auto", "manual/hand", "per block before since", "FP/second", "FP%", "────m"]
        for label in essential + (height >= 24 ? more : []) {
            #expect(metrics.contains(label), "\(label) at \(width)x\(height)")
        }
        let rect = Layout(state: h.app.state).metrics
        let lastRow = String(Array(lines[rect.y + rect.height - 1])[rect.x..<(rect.x + rect.width)])
        #expect(lastRow.contains { $0 != " " }, "the panel is used to its last row at \(width)x\(height): the chart takes what is left")
        if height >= 40 { #expect(lastRow.contains("rep/s"), "tall enough for every row") }
        if width >= 250 {
            #expect(Layout(state: h.app.state).metrics.width >= 60, "a wide terminal gets a wide panel")
            #expect(metrics.contains("100%") && metrics.contains("0.01%"), "and a tall FP% chart")
            #expect(metrics.contains("reported") && metrics.contains("reported/rnd") && metrics.contains("guest writes/s"))
        }
    }

    @Test func raceStripSaysWhereThisRoundsFalsePositivesCameFrom() throws {
        let info = Fixture.info(mode: .manual)
        let h = Harness(info: info, width: 250, height: 70)
        var round = Fixture.round(1, info: info, dirty: [Array(0..<50)], fps: [Array(0..<45)])
        round.metrics.clearPolicy = .hand
        round.origins.byWindow[10] = 42  // windows of 1-2 ms
        round.origins.neverCleared = 3
        h.send(.record(.round(round)))
        let race = try #require(h.lines(containing: "race ").first)
        #expect(race.contains("race 42 FP: written after CLEAR, before copy; 3 never cleared"))
        #expect(race.contains("1µs ") && race.contains(" 16s"), "the window axis is labelled at both ends")
        let axis = race.split(separator: "1µs ").last!.split(separator: " 16s").first!
        #expect(axis.count % FalsePositiveOrigins.bucketCount == 0, "whole columns per bucket")
        let perBucket = axis.count / FalsePositiveOrigins.bucketCount
        #expect(Array(axis).enumerated().allSatisfy { i, c in (i / perBucket == 10) == (c == "█") }, "\(axis)")

        var legacy = Fixture.round(2, info: info, dirty: [[1]], fps: [[1]])
        legacy.mode = .legacy
        legacy.origins.byWindow[3] = 1
        h.send(.record(.round(legacy)))
        #expect(h.lines(containing: "race 1 FP: written after GET, before copy").count == 1)
        var hand = Fixture.round(3, info: info, dirty: [Array(0..<7)], fps: [Array(0..<7)])
        hand.clearPolicy = .hand
        hand.origins.neverCleared = 7
        h.send(.record(.round(hand)))
        #expect(h.lines(containing: "race 7 FP never cleared since their copy").count == 1)
        h.send(.record(.round(Fixture.round(4, info: info, dirty: [[]]))))
        #expect(h.lines(containing: "race no false positives this round").count == 1)
    }

    @Test func fpHistoryHasAFixedLogScaleAndMarksSwitchesAndClears() throws {
        #expect(Metrics.logLevel(0, levels: 8) == 0)
        #expect(Metrics.logLevel(0.0001, levels: 8) == 1, "0.01% is the bottom")
        #expect(Metrics.logLevel(0.01, levels: 8) == 5, "1% is half way")
        #expect(Metrics.logLevel(1, levels: 8) == 8, "100% is the top")
        let info = Fixture.info()
        let h = Harness(info: info, width: 120, height: 40)
        h.send(Fixture.event(.blocksCleared(BlockClear(slot: 0, blocks: [1], calls: 1, pagesCleared: nil, pagesCopied: 0,
                                                       clearNanos: 1000))))
        h.send(.record(.round(Fixture.round(1, info: info, dirty: [Array(0..<1000)], fps: [Array(0..<50)]))))  // 5%
        var manual = Fixture.round(2, info: info, dirty: [Array(0..<1000)], fps: [Array(0..<5)])  // 0.5%
        manual.mode = .manual
        h.send(.record(.round(manual)))
        func chart() throws -> [String] {
            let rect = Layout(state: h.app.state).metrics
            let top = try #require(h.screen.lines.firstIndex { String(Array($0)[(rect.x + 1)..<(rect.x + 5)]) == "100%" })
            let bottom = try #require(h.screen.lines.firstIndex { String(Array($0)[(rect.x + 1)..<(rect.x + 6)]) == "0.01%" })
            return h.screen.lines[top...(bottom + 1)].map { String(Array($0)[(rect.x + 7)..<(rect.x + 9)]) }
        }
        let before = try chart()
        var high = Fixture.round(3, info: info, dirty: [Array(0..<1000)], fps: [Array(0..<900)])  // 90%
        high.mode = .manual
        h.send(.record(.round(high)))
        let after = try chart()
        #expect(after == before, "a 90% round does not rescale the 5% and 0.5% ones: \(before) \(after)")
        #expect(before.last == "cm", "the CLEAR before round 1 and the switch to manual before round 2 are marked")
        let levels = 8 * (before.count - 1)
        let column = before.dropLast().map { Array($0)[0] }
        let filled = column.map { $0 == "█" ? 8 : ($0 == " " ? 0 : Int(Glyphs.unicode.spark.firstIndex(of: $0.unicodeScalars.first!)!) + 1) }
        #expect(filled.reduce(0, +) == Metrics.logLevel(0.05, levels: levels), "5% drawn at its log level")
        #expect(h.lines(containing: "legacy").contains { $0.contains("5.00%") })
        #expect(h.lines(containing: "manual/auto").contains { $0.contains("45.3%") }, "(5 + 900) / 2000")
    }

    @Test func missedBlocksGetTheirOwnGlyphUntilTheNextVerification() {
        let info = Fixture.info(mode: .manual)
        let h = Harness(info: info, glyphs: .ascii)
        h.press("z")  // 64 pages per cell: cell i is block i
        h.send(.record(.round(Fixture.round(1, info: info, dirty: [[]], missed: 3))))
        h.send(Fixture.event(.verified(Verification(missedPerSlot: [3, 0], comparedPages: 6144, missedBlocks: [[5], []]))))
        #expect(Array(h.body(of: 0))[5] == "!")
        #expect(h.lines(containing: "missed").first?.hasSuffixNumbers(["3", "3"]) == true)
        let rect = Layout(state: h.app.state).metrics
        let row = h.screen.lines.firstIndex { $0.contains("missed") }!
        #expect(h.screen[rect.x + 1, row].role == .alert, "missed pages are red")
        h.send(.record(.round(Fixture.round(2, info: info, dirty: [[]]))))
        #expect(Array(h.body(of: 0))[5] == "!", "kept until the next verification")
        h.send(Fixture.event(.verified(Verification(missedPerSlot: [0, 0], comparedPages: 6144, missedBlocks: [[], []]))))
        #expect(!h.body(of: 0).contains("!"))
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
        #expect(h.lines(containing: "verifications").first?.hasSuffixNumbers(["1"]) == true)
        // 15 false positives of 4 KiB at 256 MiB/s.
        #expect(h.lines(containing: "FP MiB").first?.hasSuffixNumbers(["0.02", "0.06"]) == true)
        #expect(h.lines(containing: "FP s@256M").first?.hasSuffixNumbers(["0.00s", "0.00s"]) == true)
        #expect(h.lines(containing: "legacy").contains { $0.hasSuffixNumbers(["10.0%", "0.06", "0.00s"]) })
        // 1000 guest writes in the 0.1 s between round starts.
        #expect(h.lines(containing: "guest writes/s").first?.hasSuffixNumbers(["10.0k"]) == true)
        #expect(h.lines(containing: "per call").first?.hasSuffixNumbers(["last", "max"]) == true, "GET and CLEAR say what their columns are")
    }

    /// The copy rate is the round's bytes over the round's own time (GET to the end of its
    /// copy), never over the period since the round before (which a long copy outlasts).
    @Test func copiedRateIsPerSecondOfTheRoundItself() {
        let info = Fixture.info()
        let h = Harness(info: info, width: 160, height: 60)
        h.send(.record(.round(Fixture.round(1, info: info, dirty: [[1]]))))
        var long = Fixture.round(2, info: info, dirty: [[1]])
        long.metrics[.copiedBytes] = 80 << 20
        long.metrics[.durationNanos] = 10_000_000_000
        h.send(.record(.round(long)))   // 100 ms after round 1 began, as the fixture's rounds are
        #expect(h.lines(containing: "copied MiB/s").first?.hasSuffixNumbers(["8.0"]) == true)
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
        #expect(Set(mono.cells.map(\.role)).isSuperset(of: [.reverse, .bold, .dim]))
        let color = busyHarness(glyphs: .unicode, colors: .colors256).screen
        #expect(color.cells.contains { $0.role == .dirty })
        #expect(color.cells.contains { $0.role == .falsePositive })
        #expect(color.cells.contains { $0.role == .clearedMark && $0.char == "○" }, "the faint mark on cleared blocks")
        #expect(color.cells.contains { $0.role == .cleared }, "the CLEAR panel")
    }

    /// One block in each heatmap state, drawn in every glyph and colour mode: heat (reported
    /// a round ago), reported now, false positive, cleared and quiet, cleared and reported,
    /// missed, selected, the cursor, and nothing.
    static let states = ["heat", "reported", "false positive", "cleared", "cleared reported", "missed", "selected",
                         "cursor", "nothing"]

    private func stateCells(glyphs: GlyphMode, colors: ColorMode) throws -> [Cell] {
        let info = Fixture.info(pages: [4096])
        let h = Harness(info: info, glyphs: glyphs, colors: colors)
        h.press("z")                                   // 64 pages per cell: cell i is block i
        h.send(.record(.round(Fixture.round(1, info: info, dirty: [[0]]))))
        h.send(Fixture.event(.blocksCleared(BlockClear(slot: 0, blocks: [3, 4], calls: 1, pagesCleared: 0,
                                                       pagesCopied: 0, clearNanos: 1000))))
        h.send(.record(.round(Fixture.round(2, info: info, dirty: [[64, 128, 4 * 64]], fps: [[128]]))))
        h.send(Fixture.event(.verified(Verification(missedPerSlot: [1], comparedPages: 4096, missedBlocks: [[5]]))))
        for _ in 0..<6 { h.press(.right) }
        h.press(" ")                                   // block 6 selected
        h.press(.right)                                // the cursor on block 7
        let body = try #require(Layout(state: h.app.state).panel(of: 0)).body
        let screen = h.screen
        return (0..<Self.states.count).map { screen[body.x + $0, body.y] }
    }

    /// What the terminal shows for a role: its colours (256 or 8) and attributes, or in
    /// monochrome the attribute role itself.
    private func appearance(_ role: Role, _ colors: ColorMode) -> String {
        guard colors != .monochrome else { return "\(role)" }
        let p = Backend.palette(role)
        return colors == .colors256 ? "\(p.0)/\(p.1)/\(p.4)" : "\(p.2)/\(p.3)/\(p.4)"
    }

    @Test(arguments: [GlyphMode.unicode, .ascii], [ColorMode.colors256, .colors8, .monochrome])
    func everyHeatmapStateLooksDifferent(glyphs: GlyphMode, colors: ColorMode) throws {
        let cells = try stateCells(glyphs: glyphs, colors: colors)
        let looks = cells.map { "\($0.char) \(appearance($0.role, colors))" }
        for i in looks.indices {
            for j in looks.indices where j > i {
                #expect(looks[i] != looks[j], "\(Self.states[i]) and \(Self.states[j]) look alike: \(looks[i])")
            }
        }
        // In colour every state has a colour of its own too (the two kinds of cleared
        // block share theirs, set apart by their glyphs), whatever glyph it is drawn with.
        if colors != .monochrome {
            let coloured = cells.indices.filter { Self.states[$0] != "cleared" && Self.states[$0] != "nothing" }
            let byColour = coloured.map { appearance(cells[$0].role, colors) }
            #expect(Set(byColour).count == byColour.count, "\(zip(coloured.map { Self.states[$0] }, byColour).map { "\($0): \($1)" })")
        } else {
            #expect(cells.allSatisfy { !$0.role.needsColor })
        }
        // Without colours the states stay apart by glyph alone (selection and cursor by their own).
        if colors == .monochrome {
            let chars = cells.map(\.char)
            #expect(Set(chars).count == chars.count, "\(chars)")
        }
        if glyphs == .ascii { #expect(cells.allSatisfy { $0.char.isASCII }) }
        // The legend shows each state the way the heatmap draws it.
        let g = Theme(glyphs: glyphs, colors: colors).glyphs
        let items = Legend.items(g, showFalsePositives: true, monochrome: colors == .monochrome)
        #expect(items.contains { $0.sample.contains { $0.0 == cells[7].char } }, "the cursor's swatch")
        #expect(items.contains { $0.sample.contains { $0.0 == (colors == .monochrome ? cells[6].char : " ") && $0.1 == .selected } })
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
        for _ in 0..<5 { h.press(.right) }   // the cursor to block 5, out of the rows looked at
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

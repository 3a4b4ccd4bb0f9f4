@testable import DirtyScopeTUI
import DirtyScopeModel
import Pages
import Testing

/// The guest's side on screen: the per-vCPU throughput strip, the guest rows of the
/// metrics panel and the per-mode comparison, at 80x24 and 200x60, in colour and in
/// monochrome, live and in replay; and the `u` key.
@Suite struct GuestStripTests {
    /// A round of `mode` whose two vCPUs wrote `writes` pages each in 100 ms of work, with
    /// `stall` ns of stall each beside `cause`, `cpuWait` ns of it waiting for a CPU.
    static func round(_ index: UInt64, info: SessionInfo, mode: HarvestMode, writes: UInt64, stall: UInt64 = 0,
                      cause: GuestStallCause? = nil, cpuWait: UInt64 = 0) -> Round {
        var r = Fixture.round(index, info: info, dirty: [[]])
        r.metrics.mode = mode
        r.metrics.vcpus = (0..<2).map {
            VCPUCost(vcpu: $0, writes: writes, workNanos: 100_000_000, stallNanos: stall, cpuWaitNanos: cpuWait,
                     mainCause: stall > 0 ? cause : nil)
        }
        r.metrics[.guestTimedWrites] = 2 * writes
        r.metrics[.guestWorkNanos] = 200_000_000
        r.metrics[.guestCPUWaitNanos] = 2 * cpuWait
        if stall > 0, let cause {
            r.metrics.guestStall.record(stall)
            r.metrics.guestStall.record(stall)
            r.metrics[cause.metric] = 2 * stall
        }
        return r
    }

    /// 10 untracked rounds at 4,000 writes/s a vCPU, then 10 legacy rounds at 2,000 with a
    /// 30 ms stall a vCPU beside GET.
    static func harness(width: Int, height: Int, colors: ColorMode = .colors256, glyphs: GlyphMode = .unicode) -> Harness {
        let info = Fixture.info()
        let h = Harness(info: info, width: width, height: height, glyphs: glyphs, colors: colors)
        for i in 1...10 { h.send(.record(.round(round(UInt64(i), info: info, mode: .untracked, writes: 400)))) }
        for i in 11...20 {
            h.send(.record(.round(round(UInt64(i), info: info, mode: .legacy, writes: 200, stall: 30_000_000, cause: .get))))
        }
        return h
    }

    /// The strip's cells on the row labelled `label` ("v0"), as roles.
    static func stripRoles(_ h: Harness, _ label: String) throws -> (chars: [Unicode.Scalar], roles: [Role]) {
        let screen = h.screen
        let rect = Layout(state: h.app.state).guest
        let y = try #require((rect.y..<(rect.y + rect.height)).first { screen.line($0).hasPrefix(" " + label + " ") }, "no row \(label)")
        let cells = (GuestStrip.labelWidth..<(rect.width - GuestStrip.valueWidth)).map { screen[$0, y] }
        let drawn = cells.filter { $0.role != .plain && $0.char != " " }
        return (drawn.map(\.char), drawn.map(\.role))
    }

    @Test(arguments: [(80, 24), (200, 60)])
    func theStripShowsWhoStalledTheGuest(size: (Int, Int)) throws {
        let h = Self.harness(width: size.0, height: size.1)
        let strip = try Self.stripRoles(h, "v0")
        #expect(strip.roles.suffix(10).allSatisfy { $0 == .stallGet }, "legacy rounds: stalled beside GET, \(strip.roles)")
        #expect(strip.roles.dropLast(10).suffix(10).allSatisfy { $0 == .stallNone }, "untracked rounds ran free")
        // Heights: the untracked baseline fills the cell, half its throughput half of it.
        #expect(strip.chars.dropLast(10).suffix(10).allSatisfy { $0 == "█" })
        #expect(strip.chars.suffix(10).allSatisfy { $0 == "▄" }, "\(strip.chars)")
        #expect(!h.lines(containing: " v1 ").isEmpty, "a row per vCPU")
        #expect(h.lines(containing: " v0 ").first?.contains("2.0k/s │") == true, "the latest throughput: \(h.lines(containing: " v0 "))")
        let metrics = h.metricsText
        #expect(metrics.contains("guest stall 30% 15%"), "this round's share stalled, and overall: \(metrics)")
        #expect(metrics.contains("vs untracked 0.50x 0.50x"))
        // The per-mode comparison keeps both modes and their guest columns, even at 80x24.
        #expect(metrics.contains("legacy") && metrics.contains("0.50x 30%"), "\(metrics)")
        #expect(metrics.contains("untracked 0.0% 1.00x 0%") || metrics.contains("1.00x 0%"), "\(metrics)")
    }

    @Test func monochromeStripUsesLettersAndCPUWaitItsOwn() throws {
        let info = Fixture.info()
        let h = Harness(info: info, width: 80, height: 24, colors: .monochrome)
        for i in 1...5 { h.send(.record(.round(Self.round(UInt64(i), info: info, mode: .manual, writes: 300, stall: 40_000_000, cause: .clear)))) }
        for i in 6...8 {
            h.send(.record(.round(Self.round(UInt64(i), info: info, mode: .manual, writes: 300, stall: 40_000_000, cause: .copy,
                                             cpuWait: 30_000_000))))
        }
        let strip = try Self.stripRoles(h, "v0")
        #expect(String(String.UnicodeScalarView(strip.chars)).hasSuffix("CCCCCWWW"), "\(strip.chars)")
        let colored = Harness(info: info, width: 80, height: 24)
        for i in 1...3 {
            colored.send(.record(.round(Self.round(UInt64(i), info: info, mode: .manual, writes: 300, stall: 40_000_000, cause: .copy,
                                                   cpuWait: 30_000_000))))
        }
        #expect(try Self.stripRoles(colored, "v0").roles.suffix(3).allSatisfy { $0 == .stallCPU })
    }

    @Test func aGuestWithoutATimelineSaysSo() {
        let info = Fixture.info()
        let h = Harness(info: info, width: 80, height: 24)
        for i in 1...3 { h.send(.record(.round(Fixture.round(UInt64(i), info: info, dirty: [[1, 2]])))) }
        #expect(!h.lines(containing: "guest: no timeline").isEmpty)
        #expect(!h.metricsText.contains("guest stall"), "no guest rows without a timeline")
    }

    @Test func uGoesUntrackedAndBack() {
        let h = Harness(info: Fixture.info(mode: .manual), width: 80, height: 24)
        h.press("u")
        #expect(h.controller.commands.last == .setMode(.untracked))
        h.send(Fixture.event(.modeChanged(.untracked, .pages(64))))
        h.press("u")
        #expect(h.controller.commands.last == .setMode(.manual), "back to the mode u left")
    }

    /// Replay: the strip and the guest rows come from the recorded rounds, and a seek
    /// rebuilds exactly what playing showed.
    @Test func replayShowsTheRecordedGuestCost() throws {
        let info = Fixture.info()
        let entries = (1...30).map { i -> (events: [TimedEvent], round: Round) in
            ([], i <= 15 ? Self.round(UInt64(i), info: info, mode: .untracked, writes: 400)
                         : Self.round(UInt64(i), info: info, mode: .manual, writes: 300, stall: 20_000_000, cause: .clear))
        }
        let recording = FakeRecording(info: info, entries: entries)
        var played = AppState(info: info, replayRounds: recording.roundCount)
        _ = played.handle(.resize(width: 80, height: 24))
        let replayer = Replayer(recording)
        for i in 0..<30 { try replayer.seek(i, in: &played) }
        var sought = AppState(info: info, replayRounds: recording.roundCount)
        _ = sought.handle(.resize(width: 80, height: 24))
        try Replayer(FakeRecording(info: info, entries: entries)).seek(29, in: &sought)
        #expect(sought.session.history.map(\.vcpus) == played.session.history.map(\.vcpus))
        let screen = Render.screen(played, theme: Theme(glyphs: .unicode, colors: .colors256))
        let rect = Layout(state: played).guest
        let roles = (GuestStrip.labelWidth..<(rect.width - GuestStrip.valueWidth)).map { screen[$0, rect.y].role }
        #expect(roles.filter { $0 == .stallClear }.count == 15, "the manual rounds stalled beside CLEAR")
        #expect(roles.filter { $0 == .stallNone }.count == 15)
        #expect(screen.text.contains("0.75x"), "manual against the recorded untracked baseline")
    }

    @Test func helpExplainsTheStrip() {
        let h = Self.harness(width: 200, height: 60)
        h.press("?")
        #expect(h.text.contains("guest strip (under the heatmap)"))
        #expect(h.text.contains("GET blue"))
        #expect(h.text.contains("u") && h.text.contains("untracked (dirty logging off) and back"))
    }
}

@testable import DirtyScopeTUI
import DirtyScopeModel
import Pages
import Testing

@Suite struct ReplayTests {
    /// `count` rounds 100 ms apart over two slots, a mode change at round 5,
    /// a CLEAR before round 100.
    static func recording(rounds count: Int = 150) -> FakeRecording {
        let info = Fixture.info(mode: .legacy)  // rounds 0-4 are legacy, the switch comes before round 5
        let entries = (0..<count).map { i -> (events: [TimedEvent], round: Round) in
            let dirty = [(0..<(i % 7 + 1)).map { ($0 * 997 + i * 131) % 4096 }, [(i * 61) % 2048]]
            let fps = [Array(dirty[0].prefix(i % 3)), []]
            var round = Fixture.round(UInt64(i + 1), info: info, dirty: dirty, fps: fps)
            round.metrics.mode = i < 5 ? .legacy : .manual
            var events: [TimedEvent] = []
            if i == 5 { events.append(TimedEvent(nanos: 0, event: .modeChanged(.manual, .pages(64)))) }
            if i == 10 { events.append(TimedEvent(nanos: 0, event: .workloadChanged(WorkloadSettings(workload: .wave, rate: 900)))) }
            if i == 11 { events.append(TimedEvent(nanos: 0, event: .intervalChanged(nanos: 250_000_000))) }
            if i == 12 { events.append(TimedEvent(nanos: 0, event: .bandwidthChanged(bytesPerSecond: 8 << 20))) }
            if i == 100 {
                events.append(TimedEvent(nanos: 0, event: .blocksCleared(BlockClear(
                    slot: 0, blocks: [3, 4, 5, 6], calls: 1, pagesCleared: 20, pagesCopied: 20, clearNanos: 4000))))
            }
            return (events, round)
        }
        return FakeRecording(info: info, entries: entries,
                             trailing: [TimedEvent(nanos: 0, event: .note("recording ends here"))])
    }

    private func sequential(_ recording: FakeRecording, through k: Int) throws -> AppState {
        var state = AppState(info: recording.info, replayRounds: recording.roundCount)
        _ = state.handle(.resize(width: 160, height: 40))
        let replayer = Replayer(recording)
        for i in 0...k { try replayer.seek(i, in: &state) }
        return state
    }

    @Test(arguments: [20, 99, 120, 149])
    func seekingRebuildsExactlyWhatPlayingShowed(k: Int) throws {
        var played = try sequential(Self.recording(), through: k)
        let source = Self.recording()
        var sought = AppState(info: source.info, replayRounds: source.roundCount)
        _ = sought.handle(.resize(width: 160, height: 40))
        try Replayer(source).seek(k, in: &sought)
        // The history window, reaching back to the `heatRounds` before a CLEAR still in force.
        #expect(source.decoded <= max(historyRounds + 1, k - 100 + heatRounds + 1), "a seek decodes a bounded window")
        #expect(sought.session == played.session)
        // The status line's transient message is the one thing that may differ: it comes from
        // whichever event was folded last, and a seek folds fewer of them.
        played.message = nil
        sought.message = nil
        let theme = Theme(glyphs: .unicode, colors: .colors256)
        #expect(Render.screen(sought, theme: theme) == Render.screen(played, theme: theme))
    }

    @Test func aSeekFarPastAClearComparesEqualWindows() throws {
        let played = try sequential(Self.recording(rounds: 300), through: 299)
        let source = Self.recording(rounds: 300)
        var sought = AppState(info: source.info, replayRounds: source.roundCount)
        _ = sought.handle(.resize(width: 160, height: 40))
        try Replayer(source).seek(299, in: &sought)
        let comparison = try #require(sought.session.slots[0].comparison)
        #expect(comparison.before.rounds == heatRounds)
        #expect(comparison.since.rounds == heatRounds, "the first 16 of the 200 rounds since the CLEAR, as many as before it")
        #expect(abs(comparison.before.seconds - 1.6) < 1e-9 && abs(comparison.since.seconds - 1.6) < 1e-9,
                "16 rounds 100 ms apart on each side")
        #expect(sought.session == played.session)
        #expect(sought.session.bySetting == played.session.bySetting)
        #expect(sought.session.bySetting.keys.sorted() == [HarvestSetting(mode: .legacy, policy: .auto),
                                                          HarvestSetting(mode: .manual, policy: .auto)])
    }

    @Test func replayShowsItsPositionAndNeverTheRecordingIndicator() {
        let recording = Self.recording()
        let app = App(replaying: FakeRecording(info: recording.info, entries: [(
            [TimedEvent(nanos: 0, event: .recordingStarted(path: "live.dsrec"))], recording.entries[0].round)]
            + recording.entries.dropFirst()), theme: Theme(glyphs: .unicode, colors: .colors256))
        _ = app.handle(.resize(width: 80, height: 24))
        _ = app.handle(.key(.char(".")))
        let screen = app.render()
        #expect(screen.line(0).contains("REPLAY 1/150 paused x1"))
        #expect(!screen.text.contains("REC"))
        #expect(!screen.text.contains("recording to"))
        #expect(screen.line(23).contains("? help  q quit"))
    }

    @Test func steppingBackIsASeek() throws {
        let recording = Self.recording()
        var state = try sequential(recording, through: 120)
        try Replayer(recording).seek(119, in: &state)
        #expect(state.session == (try sequential(Self.recording(), through: 119)).session)
    }

    @Test func playbackKeepsTheRecordedPaceAtTheChosenSpeed() {
        let app = App(replaying: Self.recording(), theme: Theme(glyphs: .ascii, colors: .colors8))
        _ = app.handle(.resize(width: 160, height: 40))
        let ms: UInt64 = 1_000_000
        _ = app.handle(.tick(nanos: 1000 * ms, wallSeconds: 0))
        _ = app.handle(.tick(nanos: 1050 * ms, wallSeconds: 0))
        #expect(app.state.replay?.position == 0, "the first round shows at once")
        _ = app.handle(.tick(nanos: 1100 * ms, wallSeconds: 0))
        #expect(app.state.replay?.position == 0, "the next round is 100 ms later")
        _ = app.handle(.tick(nanos: 1150 * ms, wallSeconds: 0))
        #expect(app.state.replay?.position == 1)
        _ = app.handle(.key(.char(">")))
        _ = app.handle(.tick(nanos: 1200 * ms, wallSeconds: 0))
        #expect(app.state.replay?.position == 2, "x2: 50 ms of wall time is 100 ms recorded")
        #expect(app.render().line(0).contains("REPLAY 3/150 playing x2"))
        _ = app.handle(.key(.char(" ")))
        _ = app.handle(.tick(nanos: 5000 * ms, wallSeconds: 0))
        #expect(app.state.replay?.position == 2, "paused")
        #expect(app.render().line(0).contains("REPLAY 3/150 paused x2"))
    }

    @Test func transportKeysSeek() {
        let app = App(replaying: Self.recording(), theme: Theme(glyphs: .ascii, colors: .colors8))
        _ = app.handle(.resize(width: 160, height: 40))
        _ = app.handle(.key(.char("]")))
        #expect(app.state.replay?.position == 14, "from before the first round, 10% of 150")
        _ = app.handle(.key(.right))
        _ = app.handle(.key(.char(".")))
        #expect(app.state.replay?.position == 16)
        _ = app.handle(.key(.left))
        #expect(app.state.replay?.position == 15)
        _ = app.handle(.key(.end))
        #expect(app.state.replay?.position == 149)
        #expect(app.render().text.contains("recording ends here"), "the events after the last round")
        _ = app.handle(.key(.pageUp))
        #expect(app.state.replay?.position == 134)
        _ = app.handle(.key(.home))
        #expect(app.state.replay?.position == 0)
        for _ in 0..<10 { _ = app.handle(.key(.char("<"))) }
        #expect(app.render().line(0).contains("x0.25"))
    }

    /// n and N jump to the round after the next and the previous event, saying what it was.
    @Test func nAndShiftNJumpBetweenEvents() {
        let app = App(replaying: Self.recording(), theme: Theme(glyphs: .ascii, colors: .colors8))
        _ = app.handle(.resize(width: 160, height: 40))
        /// Presses `key` and returns where the replay is and whether the status line says `said`.
        func jump(_ key: Character, saying said: String = "") -> (Int, Bool) {
            _ = app.handle(.key(.char(key)))
            return (app.state.replay?.position ?? -1, app.render().text.contains(said))
        }
        // Events come before rounds 5 (mode), 10, 11, 12 (workload, interval, bandwidth) and 100 (CLEAR).
        #expect((0..<4).map { _ in jump("n").0 } == [5, 10, 11, 12])
        #expect(jump("n", saying: "before round 101: CLEAR of 4 blocks in slot 0") == (100, true))
        #expect(app.state.replay?.playing == false, "a jump pauses playback")
        #expect(jump("n", saying: "no event after round 101") == (100, true))
        #expect(jump("N", saying: "before round 13: bandwidth 8.0 MiB/s") == (12, true))
        #expect([jump("N").0, jump("N").0] == [11, 10])
        #expect(jump("N", saying: "before round 6: manual mode, chunk 64") == (5, true))
        #expect(jump("N", saying: "no event before round 6") == (5, true))
    }

    @Test func sessionKeysOnlyExplainThemselves() {
        let app = App(replaying: Self.recording(), theme: Theme(glyphs: .ascii, colors: .colors8))
        _ = app.handle(.resize(width: 160, height: 40))
        _ = app.handle(.key(.char("c")))
        #expect(app.render().text.contains("replay: 'c' steers a live session only"))
        _ = app.handle(.key(.char("?")))
        let help = app.render().text
        for entry in KeyHelp.replay { #expect(help.contains(entry.action)) }
        _ = app.handle(.resize(width: 80, height: 24))
        let small = app.render().text
        for entry in KeyHelp.entries(replay: true) { #expect(small.contains(entry.short), "\(entry.short) at 80x24") }
        for item in Legend.items(.ascii, showFalsePositives: true) { #expect(small.contains(item.explanation)) }
    }
}

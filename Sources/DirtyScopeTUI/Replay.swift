import DirtyScopeModel

/// Plays a recording into the state: decodes rounds from the `RecordedSession` and
/// folds them with the same code a live session's records take.
///
/// A seek rebuilds the session view from the `historyRounds + 1` rounds before the
/// target (heat is zero after `heatRounds`, sparklines keep `historyRounds`), the settings
/// events before them, and the totals from `RecordedSession.totals(through:)`, so it
/// decodes at most 65 rounds.
final class Replayer {
    let source: RecordedSession
    /// Recorded nanoseconds owed to playback since the last round was shown.
    private var owed: Double = 0
    private var lastTickNanos: UInt64?
    private var next: (events: [TimedEvent], round: Round)?

    init(_ source: RecordedSession) {
        self.source = source
    }

    /// Shows round `target` (0-based).
    func seek(_ target: Int, in state: inout AppState) throws {
        guard let position = state.replay?.position, target >= 0, target < source.roundCount else { return }
        next = nil
        owed = 0
        if target == position + 1 {
            fold(entry: try source.entry(at: target), into: &state)
        } else {
            state.session = SessionView(info: source.info)
            let first = max(0, target - historyRounds)
            // Settings changed before the window still hold; a CLEAR's running sums need every
            // round since it, and notes and verifications are transient, so those stay out.
            for timed in source.events(before: first) {
                switch timed.event {
                case .blocksCleared, .note, .verified: continue
                default: state.fold(.event(timed))
                }
            }
            for i in first...target { fold(entry: try source.entry(at: i), into: &state) }
            state.session.totals = source.totals(through: target)
        }
        state.replay?.position = target
        if target == source.roundCount - 1 { finish(&state) }
    }

    /// Advances playback by the time since the last tick, at the replay's speed, keeping
    /// the recorded spacing of rounds (at most `historyRounds` rounds per tick).
    func tick(nanos: UInt64, state: inout AppState) throws {
        defer { lastTickNanos = nanos }
        guard let status = state.replay, status.playing, let last = lastTickNanos, nanos > last else { return }
        owed += Double(nanos - last) * status.speed
        for _ in 0..<historyRounds {
            guard let position = state.replay?.position, position + 1 < source.roundCount else { break }
            let upcoming = try next ?? source.entry(at: position + 1)
            let gap = position >= 0 ? gapNanos(from: state, to: upcoming.round) : 0
            guard owed >= gap else { next = upcoming; return }
            owed = position >= 0 ? owed - gap : 0  // the pace counts from the first round shown
            next = nil
            fold(entry: upcoming, into: &state)
            state.replay?.position = position + 1
            if position + 2 == source.roundCount {
                finish(&state)
                state.say("end of recording")
            }
        }
    }

    /// At the last round: the events after it, and playback stops.
    private func finish(_ state: inout AppState) {
        for timed in source.trailingEvents { state.fold(.event(timed)) }
        state.replay?.playing = false
    }

    private func gapNanos(from state: AppState, to round: Round) -> Double {
        guard let previous = state.session.previousRoundStart, round.startNanos > previous else { return 0 }
        return Double(round.startNanos - previous)
    }

    private func fold(entry: (events: [TimedEvent], round: Round), into state: inout AppState) {
        for timed in entry.events { state.fold(.event(timed)) }
        state.fold(.round(entry.round))
    }
}

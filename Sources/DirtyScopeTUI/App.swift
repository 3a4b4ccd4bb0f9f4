import DirtyScopeModel

/// The UI without its terminal: the state, where its effects go (the live session's
/// controller or the replayer), and the render. The terminal loop and the tests drive it alike.
final class App {
    private(set) var state: AppState
    private let controller: SessionController?
    private let replayer: Replayer?
    var theme: Theme

    /// A live session: commands go to `controller`.
    init(info: SessionInfo, controller: SessionController, theme: Theme) {
        state = AppState(info: info)
        self.controller = controller
        replayer = nil
        self.theme = theme
    }

    /// A replay of `source`, starting to play from its first round.
    init(replaying source: RecordedSession, theme: Theme) {
        state = AppState(info: source.info, replayRounds: source.roundCount)
        state.replay?.playing = true
        if !source.warnings.isEmpty { state.say(source.warnings.joined(separator: "; "), .warn) }
        controller = nil
        replayer = Replayer(source)
        self.theme = theme
    }

    /// Handles one event; returns how the UI ends when it should.
    func handle(_ event: UIEvent) -> TUIExit? {
        do {
            for effect in state.handle(event) {
                switch effect {
                case .send(let command): controller?.send(command)
                case .seek(let round): try replayer?.seek(round, in: &state)
                case .seekEvent(let forward): try seekEvent(forward: forward)
                case .exit(let exit): return exit
                }
            }
            if case .tick(let nanos, _) = event { try replayer?.tick(nanos: nanos, state: &state) }
        } catch {
            state.replay?.playing = false
            state.say("cannot read the recording: \(error)", .alert)
        }
        return nil
    }

    func render() -> Screen { Render.screen(state, theme: theme) }

    /// Shows the round after the next (or previous) event worth a look, and says what it was.
    private func seekEvent(forward: Bool) throws {
        guard let replayer, let position = state.replay?.position else { return }
        guard let landmark = replayer.landmark(from: position, forward: forward) else {
            state.say("no event \(forward ? "after" : "before") round \(position + 1)", now: true)
            return
        }
        try replayer.seek(landmark.round, in: &state)
        let what = landmark.events.map(Replayer.describe)
        state.say("before round \(landmark.round + 1): " + what.prefix(3).joined(separator: "; ")
                  + (what.count > 3 ? " (+\(what.count - 3) more)" : ""), .good, now: true)
    }
}

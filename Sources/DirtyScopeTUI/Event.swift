import DirtyScopeModel

/// A key the UI understands, decoded from the terminal.
public enum Key: Equatable, Sendable {
    case char(Character)
    case up, down, left, right
    case home, end, pageUp, pageDown
    case tab, backTab, enter, escape, backspace
}

/// Everything that can change the UI's state: the one input of `AppState.handle(_:)`.
public enum UIEvent: Equatable, Sendable {
    case key(Key)
    /// The terminal's size in columns and rows.
    case resize(width: Int, height: Int)
    /// The clock: monotonic nanoseconds, and wall-clock seconds since the Unix epoch.
    case tick(nanos: UInt64, wallSeconds: Double)
    /// A round or event from the session (live) or the recording (replay).
    case record(SessionRecord)
    /// SIGINT, SIGTERM or SIGHUP arrived.
    case signal(Int32)
}

/// What a state update asks the outside world to do.
enum Effect: Equatable {
    /// Send a command to the live session.
    case send(SessionCommand)
    /// Move the replay to round `index` (0-based); the replayer decodes and folds.
    case seek(Int)
    /// Move the replay to the next (or previous) round that came after an event worth a look.
    case seekEvent(forward: Bool)
    /// Leave the UI.
    case exit(TUIExit)
}

/// How the UI ended.
public enum TUIExit: Equatable, Sendable {
    /// The user pressed `q`.
    case quit
    /// This signal arrived; the terminal has been restored.
    case signal(Int32)
}

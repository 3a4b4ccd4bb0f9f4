#if canImport(Glibc)
import Glibc
#endif
import CNcurses
import DirtyScopeModel

/// How the terminal UI draws.
public struct TUIOptions: Sendable {
    /// Glyph table; nil picks Unicode in a UTF-8 locale, else ASCII.
    public var glyphs: GlyphMode?
    /// Colors; nil detects: NO_COLOR set or a terminal without colors gives monochrome.
    public var colors: ColorMode?
    /// Frames (and input polls) per second.
    public var fps: Int

    public init(glyphs: GlyphMode? = nil, colors: ColorMode? = nil, fps: Int = 10) {
        self.glyphs = glyphs
        self.colors = colors
        self.fps = fps
    }
}

/// Why the terminal UI could not run.
public enum TUIError: Error, CustomStringConvertible {
    case notATerminal
    case terminalInitFailed(String)

    public var description: String {
        switch self {
        case .notATerminal:
            return "stdin or stdout is not a terminal: the live heatmap needs one; "
                + "use `dirtyscope bench` or `dirtyscope record FILE` for headless runs"
        case .terminalInitFailed(let reason):
            return "cannot start the terminal UI: \(reason)"
        }
    }
}

/// The live heatmap and the replay viewer, drawn with ncurses.
public enum TerminalUI {
    /// Live: drains `records` every frame and sends the keys' commands to `controller`.
    /// Returns when the user quits or SIGINT, SIGTERM or SIGHUP arrives (returning which);
    /// the terminal is restored on every way out, thrown errors included.
    public static func runLive(info: SessionInfo, controller: SessionController, records: RecordQueue,
                               options: TUIOptions) throws -> TUIExit {
        try run(options) { theme in App(info: info, controller: controller, theme: theme) } drain: { records.drain() }
    }

    /// Replays a recording with the live UI's panels and counters; needs no /dev/kvm.
    public static func runReplay(_ source: RecordedSession, options: TUIOptions) throws -> TUIExit {
        try run(options) { theme in App(replaying: source, theme: theme) } drain: { [] }
    }

    /// The keys of the live heatmap (or of replay), one `keys: what they do` a line, for
    /// the commands' --help: the same table the `?` overlay draws.
    public static func keyList(replay: Bool) -> String {
        KeyHelp.entries(replay: replay).map { "  \($0.keys): \($0.action)" }.joined(separator: "\n")
    }

    /// The glyph mode the locale allows: Unicode when its codeset is UTF-8.
    static func detectGlyphs() -> GlyphMode {
        guard let codeset = nl_langinfo(nl_item(CODESET)) else { return .ascii }
        let name = String(cString: codeset).uppercased()
        return name == "UTF-8" || name == "UTF8" ? .unicode : .ascii
    }

    private static func run(_ options: TUIOptions, makeApp: (Theme) -> App,
                            drain: () -> [SessionRecord]) throws -> TUIExit {
        guard isatty(STDOUT_FILENO) != 0, isatty(STDIN_FILENO) != 0 else { throw TUIError.notATerminal }
        setlocale(LC_ALL, "")
        let glyphs = options.glyphs ?? detectGlyphs()
        let previousHandlers = Signals.install()
        defer { Signals.restore(previousHandlers) }
        let backend = try Backend(colors: options.colors, fps: options.fps)
        defer { backend.end() }

        let app = makeApp(Theme(glyphs: glyphs, colors: backend.colors))
        _ = app.handle(.resize(width: backend.size.width, height: backend.size.height))
        var drawn: UInt64?
        while true {
            if let signal = Signals.take() { return app.handle(.signal(signal)) ?? .signal(signal) }
            var events: [UIEvent] = []
            switch backend.read() {
            case .key(let key): events.append(.key(key))
            case .resize:
                backend.invalidate()
                events.append(.resize(width: backend.size.width, height: backend.size.height))
            case nil: break
            }
            for record in drain() { events.append(.record(record)) }
            events.append(.tick(nanos: clock(CLOCK_MONOTONIC), wallSeconds: Double(clock(CLOCK_REALTIME)) / 1e9))
            for event in events {
                if let exit = app.handle(event) { return exit }
            }
            if drawn != app.state.revision {
                backend.draw(app.render())
                drawn = app.state.revision
            }
        }
    }

    static func clock(_ id: clockid_t) -> UInt64 {
        var ts = timespec()
        clock_gettime(id, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

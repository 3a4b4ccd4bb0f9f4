#if canImport(Glibc)
import Glibc
#endif
import CNcurses

/// The only place that calls ncurses; used from one thread. Draws a `Screen` by
/// redrawing only the runs of cells that changed since the last frame.
final class Backend {
    /// What the terminal sent.
    enum Input: Equatable {
        case key(Key)
        case resize
    }

    let colors: ColorMode
    private let window: UnsafeMutablePointer<WINDOW>
    private var previous: Screen?
    private var attributes: [(attr: attr_t, pair: Int16)] = []
    private var ended = false
    /// The input poll, in milliseconds (one frame).
    private let frameMillis: Int32

    // ncurses' attribute bits (NCURSES_BITS(1, n) << NCURSES_ATTR_SHIFT); Swift cannot import the macros.
    private static let underline = attr_t(1) << 17
    private static let reverse = attr_t(1) << 18
    private static let dim = attr_t(1) << 20
    private static let bold = attr_t(1) << 21

    /// Starts curses: cbreak, no echo, keypad, hidden cursor, input polled every `1000 / fps` ms.
    /// `requested` nil detects the colors: NO_COLOR set or no colors in terminfo gives monochrome.
    init(colors requested: ColorMode?, fps: Int) throws {
        guard let window = initscr() else { throw TUIError.terminalInitFailed("initscr failed (is TERM set?)") }
        self.window = window
        cbreak()
        noecho()
        nonl()
        keypad(window, true)
        curs_set(0)
        set_escdelay(25)
        frameMillis = Int32(1000 / max(1, min(fps, 100)))
        wtimeout(window, frameMillis)
        let noColor = getenv("NO_COLOR").map { $0.pointee != 0 } ?? false
        let detected: ColorMode = noColor || !has_colors() ? .monochrome : (tigetnum("colors") >= 256 ? .colors256 : .colors8)
        colors = requested ?? detected
        if colors != .monochrome, has_colors() {
            start_color()
            use_default_colors()
        }
        attributes = Role.allCases.map { role in self.style(role) }
    }

    /// Columns and rows.
    var size: (width: Int, height: Int) { (Int(getmaxx(window)), Int(getmaxy(window))) }

    /// Waits up to one frame for input.
    func read() -> Input? {
        var ch: wint_t = 0
        switch wget_wch(window, &ch) {
        case KEY_CODE_YES:
            switch Int32(ch) {
            case KEY_RESIZE: return .resize
            case KEY_UP: return .key(.up)
            case KEY_DOWN: return .key(.down)
            case KEY_LEFT: return .key(.left)
            case KEY_RIGHT: return .key(.right)
            case KEY_HOME: return .key(.home)
            case KEY_END: return .key(.end)
            case KEY_PPAGE: return .key(.pageUp)
            case KEY_NPAGE: return .key(.pageDown)
            case KEY_BTAB: return .key(.backTab)
            case KEY_BACKSPACE: return .key(.backspace)
            case KEY_ENTER: return .key(.enter)
            default: return nil
            }
        case OK:
            switch ch {
            case 9: return .key(.tab)
            case 10, 13: return .key(.enter)
            case 27: return readEscapeSequence().map { .key($0) }
            case 8, 127: return .key(.backspace)
            default: return Unicode.Scalar(ch).map { .key(.char(Character($0))) }
            }
        default:
            return nil
        }
    }

    /// After an ESC that terminfo did not match: the rest of the sequence, which arrives
    /// with it (30 ms covers a slow link), decoded by `EscapeSequence`; a lone ESC is the
    /// Escape key, and a sequence that means nothing here is dropped whole (nil).
    private func readEscapeSequence() -> Key? {
        wtimeout(window, 30)
        defer { wtimeout(window, frameMillis) }
        var bytes: [UInt32] = []
        while bytes.count < 64 {
            var ch: wint_t = 0
            switch wget_wch(window, &ch) {
            case OK: bytes.append(UInt32(ch))
            case KEY_CODE_YES: return nil   // ESC then a key terminfo knows: Alt and that key
            default: return bytes.isEmpty ? .escape : nil   // nothing more came
            }
            switch EscapeSequence.decode(bytes) {
            case .incomplete: continue
            case .key(let key): return key
            case .dropped: return nil
            }
        }
        return nil
    }

    /// Draws the cells that differ from the last frame (everything after a resize).
    func draw(_ screen: Screen) {
        if previous == nil || previous!.width != screen.width || previous!.height != screen.height {
            werase(window)
            clearok(window, true)
            previous = nil
        }
        var buffer = [wchar_t](repeating: 0, count: screen.width + 1)
        for run in screen.changes(from: previous) {
            for i in 0..<run.count { buffer[i] = wchar_t(bitPattern: screen[run.x + i, run.y].char.value) }
            buffer[run.count] = 0
            // The bottom-right cell cannot be written without scrolling: leave it.
            let count = run.y == screen.height - 1 && run.x + run.count == screen.width ? run.count - 1 : run.count
            guard count > 0 else { continue }
            let style = attributes[Int(run.role.rawValue)]
            wattr_set(window, style.attr, style.pair, nil)
            mvwaddnwstr(window, Int32(run.y), Int32(run.x), buffer, Int32(count))
        }
        wattr_set(window, 0, 0, nil)
        wnoutrefresh(window)
        doupdate()
        previous = screen
    }

    /// Forgets what is on the terminal, so the next draw repaints everything.
    func invalidate() { previous = nil }

    /// Restores the terminal (idempotent).
    func end() {
        guard !ended else { return }
        ended = true
        endwin()
    }

    /// The attributes and color pair of `role`, registering the pair.
    private func style(_ role: Role) -> (attr: attr_t, pair: Int16) {
        switch role {
        case .plain: return (0, 0)
        case .bold: return (Self.bold, 0)
        case .dim: return (Self.dim, 0)
        case .reverse: return (Self.reverse, 0)
        case .underline: return (Self.underline, 0)
        default: break
        }
        guard colors != .monochrome else { return (0, 0) }
        let (fg256, bg256, fg8, bg8, attr) = Self.palette(role)
        let pair = Int16(role.rawValue)
        if colors == .colors256 { init_pair(pair, fg256, bg256) } else { init_pair(pair, fg8, bg8) }
        return (attr, pair)
    }

    /// Colors per role: 256-color foreground and background, 8-color ones, attributes (-1: default).
    static func palette(_ role: Role) -> (Int16, Int16, Int16, Int16, attr_t) {
        let black: Int16 = 0, red: Int16 = 1, green: Int16 = 2, yellow: Int16 = 3, blue: Int16 = 4
        let magenta: Int16 = 5, cyan: Int16 = 6, white: Int16 = 7
        switch role {
        case .header: return (231, 24, white, blue, bold)
        case .title: return (117, -1, cyan, -1, bold)
        case .border: return (240, -1, white, -1, dim)
        case .key: return (221, -1, yellow, -1, bold)
        case .alert: return (231, 160, white, red, bold)
        case .warn: return (214, -1, yellow, -1, bold)
        case .good: return (114, -1, green, -1, 0)
        case .heat1: return (60, -1, blue, -1, 0)
        case .heat2: return (67, -1, blue, -1, bold)
        case .heat3: return (74, -1, cyan, -1, 0)
        case .heat4: return (81, -1, cyan, -1, bold)
        case .dirty: return (203, -1, red, -1, bold)
        case .falsePositive: return (226, -1, yellow, -1, bold)
        case .cleared: return (46, -1, green, -1, bold)
        case .clearedMark: return (29, -1, green, -1, 0)
        case .selected: return (231, 25, white, blue, 0)
        case .cursor: return (16, 220, black, yellow, bold)
        case .boundary: return (238, -1, white, -1, dim)
        case .sparkFalsePositive: return (226, -1, yellow, -1, 0)
        case .sparkDirty: return (203, -1, magenta, -1, 0)
        case .stallNone: return (114, -1, green, -1, 0)
        case .stallGet: return (39, -1, blue, -1, bold)
        case .stallClear: return (208, -1, yellow, -1, 0)
        case .stallRing: return (201, -1, magenta, -1, bold)
        case .stallCopy: return (250, -1, white, -1, 0)
        case .stallVerify: return (178, -1, yellow, -1, bold)
        case .stallOther: return (196, -1, red, -1, bold)
        case .stallCPU: return (141, -1, magenta, -1, 0)
        case .plain, .bold, .dim, .reverse, .underline: return (-1, -1, -1, -1, 0)
        }
    }
}

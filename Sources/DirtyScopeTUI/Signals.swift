#if canImport(Glibc)
import Glibc
#endif
import CNcurses
import Synchronization

/// Signal handling while the UI runs. SIGINT, SIGTERM and SIGHUP only store their
/// number, which the loop picks up to restore the terminal and return. Crashes
/// (SIGSEGV, SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGABRT) restore the terminal and die of
/// the same signal, doing only async-signal-safe work: the terminal settings saved before
/// curses started go back with tcsetattr, a reset and a one-line message go out with
/// write(2), and the signal is raised again with the previous handler. No curses call
/// runs in a handler: curses is neither reentrant nor safe on another thread.
enum Signals {
    static let stopping: [Int32] = [SIGINT, SIGTERM, SIGHUP]
    static let fatal: [Int32] = [SIGSEGV, SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGABRT]

    /// The last stopping signal that arrived, or 0.
    static let pending = Atomic<Int32>(0)

    /// Installs the handlers; returns the previous ones for `restore`. Call it before
    /// curses starts: it saves the terminal's settings for the fatal path.
    static func install() -> [(Int32, sigaction)] {
        _ = pending.load(ordering: .relaxed)  // initialise it here, not inside a handler
        let state = FatalState.shared
        state.hasTerminal = tcgetattr(STDIN_FILENO, state.terminal) == 0
        var previous: [(Int32, sigaction)] = []
        for signal in fatal { sigaction(signal, nil, state.previous + Int(signal)) }
        for signal in stopping + fatal {
            var action = sigaction()
            let isFatal = fatal.contains(signal)
            if isFatal {
                action.__sigaction_handler.sa_handler = restoreAndDie
            } else {
                action.__sigaction_handler.sa_handler = note
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            var old = sigaction()
            if sigaction(signal, &action, &old) == 0 { previous.append((signal, old)) }
        }
        return previous
    }

    static func restore(_ previous: [(Int32, sigaction)]) {
        for (signal, action) in previous {
            var action = action
            sigaction(signal, &action, nil)
        }
    }

    /// Takes the pending stopping signal, if any.
    static func take() -> Int32? {
        let signal = pending.exchange(0, ordering: .acquiringAndReleasing)
        return signal == 0 ? nil : signal
    }
}

private func note(_ signal: Int32) {
    Signals.pending.store(signal, ordering: .releasing)
}

/// Everything the fatal handler touches, allocated once before any handler is installed,
/// so the handler reads plain memory and allocates nothing.
private final class FatalState: @unchecked Sendable {
    static let shared = FatalState()

    /// The terminal's settings from before curses.
    let terminal = UnsafeMutablePointer<termios>.allocate(capacity: 1)
    var hasTerminal = false
    /// The fatal signals' handlers from before `install`, by signal number.
    let previous = UnsafeMutablePointer<sigaction>.allocate(capacity: 65)
    /// Attributes off, cursor shown, keypad mode off, alternate screen left, a new line.
    let reset: [UInt8] = Array("\u{1b}[0m\u{1b}[?25h\u{1b}[?1l\u{1b}>\u{1b}[?1049l\r\n".utf8)
    let prefix: [UInt8] = Array("dirtyscope: fatal signal ".utf8)
    /// The message's number and newline are written here.
    let digits = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)

    private init() {
        terminal.initialize(to: termios())
        previous.initialize(repeating: sigaction(), count: 65)
        digits.initialize(repeating: 0, count: 16)
    }
}

private func restoreAndDie(_ signal: Int32) {
    let state = FatalState.shared
    if state.hasTerminal { tcsetattr(STDIN_FILENO, TCSANOW, state.terminal) }
    state.reset.withUnsafeBytes { _ = write(STDOUT_FILENO, $0.baseAddress, $0.count) }
    state.prefix.withUnsafeBytes { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    var n = Int(signal), count = 0
    repeat {
        state.digits[14 - count] = UInt8(48 + n % 10)
        n /= 10
        count += 1
    } while n > 0 && count < 14
    state.digits[15] = 10
    _ = write(STDERR_FILENO, state.digits + 15 - count, count + 1)
    if signal > 0 && signal < 65 { sigaction(signal, state.previous + Int(signal), nil) }
    raise(signal)  // blocked until this handler returns, then the previous action runs
}

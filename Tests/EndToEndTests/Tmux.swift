import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A private tmux server (its own socket) with one detached session of a fixed size that
/// runs one program. A wrapper script writes the program's pid to a file, runs it in the
/// foreground of the pane, then prints `E2E-EXIT rc=N` and keeps the pane open, so a test
/// sees what the program left on the terminal after it exited.
final class TmuxSession {
    static let exitMarker = "E2E-EXIT rc="

    let tmux: String
    let socket: String
    let name: String
    let scratch: URL
    private let pidFile: URL

    /// Starts `argv` in a `width` x `height` pane.
    init(tmux: String, scratch: URL, name: String, width: Int, height: Int, argv: [String]) throws {
        self.tmux = tmux
        self.scratch = scratch
        self.name = name
        socket = "dirtyscope-tests-\(getpid())"
        pidFile = scratch.appendingPathComponent("\(name).pid")
        let wrapper = scratch.appendingPathComponent("\(name)-wrap.sh")
        try """
            #!/bin/sh
            pidfile=$1; shift
            sh -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@"
            echo "\(Self.exitMarker)$?"
            exec sleep 3600

            """.write(to: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper.path, 0o755)
        let command = ([wrapper.path, pidFile.path] + argv).map(shellQuote).joined(separator: " ")
        let started = try tmuxCommand(["-f", "/dev/null", "new-session", "-d", "-s", name,
                                       "-x", "\(width)", "-y", "\(height)", command])
        guard started.exited, started.status == 0 else {
            throw XCTSkip("tmux cannot start a session: \(started.stderr)")
        }
    }

    @discardableResult
    func tmuxCommand(_ args: [String]) throws -> Outcome {
        try Running(tmux, ["-L", socket] + args, in: scratch).finish(timeout: 10)
    }

    /// The pane's text now (one string, lines joined by newlines).
    func capture() -> String {
        (try? tmuxCommand(["capture-pane", "-p", "-t", name]))?.stdout ?? ""
    }

    /// The first line of the pane (the header).
    func header() -> String { capture().split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? "" }

    /// Sends keys (tmux key names such as `Escape`, `Right`, or literal characters).
    func send(_ keys: String..., literal: Bool = false, file: StaticString = #filePath, line: UInt = #line) {
        let outcome = try? tmuxCommand(["send-keys", "-t", name] + (literal ? ["-l"] : []) + keys)
        XCTAssertEqual(outcome?.status, 0, "tmux send-keys \(keys) failed: \(outcome?.stderr ?? "")", file: file, line: line)
    }

    /// A pane format value such as `#{alternate_on}`.
    func format(_ f: String) -> String {
        ((try? tmuxCommand(["display-message", "-p", "-t", name, f]))?.stdout ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The program's pid (written by the wrapper before it exec'ed it).
    func programPID(timeout: TimeInterval = 10, file: StaticString = #filePath, line: UInt = #line) -> pid_t? {
        poll(timeout: timeout, "the program's pid file", file: file, line: line) {
            (try? String(contentsOf: pidFile, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
    }

    /// Waits until the pane satisfies `predicate`; returns the pane text (nil after a failure).
    @discardableResult
    func waitFor(_ what: String, timeout: TimeInterval = 15, file: StaticString = #filePath, line: UInt = #line,
                 _ predicate: (String) -> Bool) -> String? {
        var last = ""
        return poll(timeout: timeout, what, describe: { "pane was:\n\(last)" }, file: file, line: line) { () -> String? in
            last = capture()
            return predicate(last) ? last : nil
        }
    }

    /// Waits until the pane shows `text`.
    @discardableResult
    func waitFor(text: String, timeout: TimeInterval = 15, file: StaticString = #filePath, line: UInt = #line) -> String? {
        waitFor("'\(text)' on screen", timeout: timeout, file: file, line: line) { $0.contains(text) }
    }

    /// Waits for the wrapper's exit line; returns the program's exit code.
    func waitForExit(timeout: TimeInterval = 15, file: StaticString = #filePath, line: UInt = #line) -> (code: Int32?, screen: String) {
        guard let screen = waitFor(text: Self.exitMarker, timeout: timeout, file: file, line: line) else { return (nil, capture()) }
        let rest = screen.components(separatedBy: Self.exitMarker)[1].prefix { $0.isNumber }
        return (Int32(rest), screen)
    }

    /// The pane's terminal settings as `stty -a` prints them.
    func sttySettings() -> String {
        let tty = format("#{pane_tty}")
        return (try? shell("stty -a -F \(shellQuote(tty))", in: scratch))?.stdout ?? ""
    }

    func kill() {
        _ = try? tmuxCommand(["kill-server"])
    }
}

/// `text` matches the regular expression `pattern` somewhere.
func matches(_ text: String, _ pattern: String) -> Bool {
    text.range(of: pattern, options: .regularExpression) != nil
}

/// The first capture group of `pattern` in `text`.
func firstMatch(_ text: String, _ pattern: String) -> String? {
    guard let re = try? NSRegularExpression(pattern: pattern),
          let m = re.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)), m.numberOfRanges > 1,
          let r = Range(m.range(at: 1), in: text) else { return nil }
    return String(text[r])
}

/// Checks the terminal left behind after the program exited: not in the alternate screen,
/// cooked mode with echo, and none of the UI's text on it.
func assertTerminalRestored(_ session: TmuxSession, screen: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(session.format("#{alternate_on}"), "0", "the pane is still in the alternate screen", file: file, line: line)
    let stty = " " + session.sttySettings().replacingOccurrences(of: "\n", with: " ") + " "
    XCTAssertTrue(stty.contains(" icanon "), "the terminal was left without icanon: \(stty)", file: file, line: line)
    XCTAssertTrue(stty.contains(" echo "), "the terminal was left without echo: \(stty)", file: file, line: line)
    for uiText in ["DirtyScope", "? help  q quit", "round ", "terminal too small"] {
        XCTAssertFalse(screen.contains(uiText), "'\(uiText)' left on the screen after exit:\n\(screen)", file: file, line: line)
    }
    // The UI drew in the alternate screen: back on the main screen only the wrapper's line shows.
    let lines = screen.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    XCTAssertEqual(lines.count, 1, "more than the exit line on the restored screen:\n\(screen)", file: file, line: line)
    XCTAssertTrue(lines.first?.hasPrefix(TmuxSession.exitMarker) ?? false, "screen after exit:\n\(screen)", file: file, line: line)
}

import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The `dirtyscope` executable that `swift build --build-tests` put next to the test bundle.
/// DIRTYSCOPE_BIN overrides it.
enum Tool {
    static let path: String? = {
        let fm = FileManager.default
        if let override = ProcessInfo.processInfo.environment["DIRTYSCOPE_BIN"], fm.isExecutableFile(atPath: override) {
            return override
        }
        var folders: [URL] = []
        let runner = URL(fileURLWithPath: CommandLine.arguments[0],
                         relativeTo: URL(fileURLWithPath: fm.currentDirectoryPath)).standardizedFileURL
        folders.append(runner.deletingLastPathComponent())
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            // Linux: .../debug/X.xctest is the runner; macOS: .../debug/X.xctest/Contents/MacOS/X.
            folders.append(bundle.bundleURL.deletingLastPathComponent())
        }
        folders.append(Bundle.main.bundleURL)
        return folders.map { $0.appendingPathComponent("dirtyscope").path }.first { fm.isExecutableFile(atPath: $0) }
    }()

    /// The executable, or a failure that says where it was looked for.
    static func binary(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        guard let path else {
            let message = """
                the dirtyscope executable is not next to the test runner \(CommandLine.arguments[0]); \
                build it with `swift build --build-tests` or set DIRTYSCOPE_BIN
                """
            XCTFail(message, file: file, line: line)
            throw MissingTool(message: message)
        }
        return path
    }
}

struct MissingTool: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// What a finished command left behind.
struct Outcome {
    var status: Int32
    /// False when the process died of a signal (then `status` is the signal number).
    var exited: Bool
    var stdout: String
    var stderr: String

    var stderrLines: [String] { stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
    var stdoutLines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
}

/// A child process whose stdout and stderr go to files (no pipe can fill up and block it),
/// spawned and reaped here with posix_spawn and waitpid: Foundation's Process lost track
/// of tmux's client (it daemonizes the server) and hung in waitUntilExit.
final class Running {
    let pid: pid_t
    let command: String
    private let outURL: URL
    private let errURL: URL
    private var waitStatus: Int32?

    init(_ executable: String, _ arguments: [String], in scratch: URL) throws {
        let id = UUID().uuidString
        outURL = scratch.appendingPathComponent("stdout-\(id)")
        errURL = scratch.appendingPathComponent("stderr-\(id)")
        command = ([executable] + arguments).joined(separator: " ")

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outURL.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errURL.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        // The child starts with no blocked signals and default handlers, whatever the runner has.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var child = pid_t()
        let rc = posix_spawnp(&child, executable, &actions, &attributes, argv, environ)
        guard rc == 0 else {
            throw NSError(domain: NSPOSIXErrorDomain, code: Int(rc),
                          userInfo: [NSLocalizedDescriptionKey: "cannot start \(command): \(String(cString: strerror(rc)))"])
        }
        pid = child
    }

    deinit {
        if isRunning {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }

    /// Reaps the child if it has exited.
    var isRunning: Bool {
        guard waitStatus == nil else { return false }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { waitStatus = status; return false }
        return r == 0
    }

    /// Waits for the exit; past `timeout` the process is killed and the test fails.
    func finish(timeout: TimeInterval, file: StaticString = #filePath, line: UInt = #line) -> Outcome {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning && Date() < deadline { usleep(5_000) }
        if isRunning {
            XCTFail("\(command) still running after \(timeout)s: killed", file: file, line: line)
            kill(pid, SIGKILL)
            while isRunning { usleep(5_000) }
        }
        let status = waitStatus ?? 0
        let signal = status & 0x7f
        let out = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        return Outcome(status: signal == 0 ? (status >> 8) & 0xff : signal, exited: signal == 0, stdout: out, stderr: err)
    }
}

/// A fresh folder per test, removed afterwards.
func makeScratch() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("dirtyscope-e2e-\(getpid())-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Runs `dirtyscope args...` to completion.
func dirtyscope(_ args: [String], in scratch: URL, timeout: TimeInterval = 30,
                file: StaticString = #filePath, line: UInt = #line) throws -> Outcome {
    try Running(try Tool.binary(file: file, line: line), args, in: scratch).finish(timeout: timeout, file: file, line: line)
}

/// Runs `sh -c script` to completion.
func shell(_ script: String, in scratch: URL, timeout: TimeInterval = 30) throws -> Outcome {
    try Running("/bin/sh", ["-c", script], in: scratch).finish(timeout: timeout)
}

/// Quotes `s` for a POSIX shell.
func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

/// Skips unless /dev/kvm opens read-write.
func requireKVM() throws {
    let fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)
    guard fd >= 0 else {
        throw XCTSkip("/dev/kvm not available: \(String(cString: strerror(errno)))")
    }
    close(fd)
}

/// Skips unless tmux is on the PATH.
func requireTmux() throws -> String {
    for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let candidate = "\(folder)/tmux"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw XCTSkip("tmux is not installed: the terminal UI cannot be driven")
}

/// Runs a command in a mount namespace whose /dev is an empty tmpfs, so /dev/kvm does not
/// exist for it; the descriptors it inherits (a terminal included) keep working.
enum HiddenKVM {
    /// The argument vector prefix: `unshare -m sh -c 'mount ... && exec "$0" "$@"'`.
    static let prefix = ["unshare", "-m", "sh", "-c", "mount -t tmpfs none /dev && exec \"$0\" \"$@\""]

    /// Skips unless this process may make the namespace and hide /dev/kvm in it.
    static func require(in scratch: URL) throws {
        let probe = try shell("unshare -m sh -c 'mount -t tmpfs none /dev && test ! -e /dev/kvm' 2>&1", in: scratch)
        guard probe.exited, probe.status == 0 else {
            throw XCTSkip("cannot hide /dev/kvm (unshare -m and mount need root or CAP_SYS_ADMIN): "
                          + probe.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    /// `dirtyscope args...` with /dev/kvm hidden.
    static func run(_ args: [String], in scratch: URL, timeout: TimeInterval = 30,
                    file: StaticString = #filePath, line: UInt = #line) throws -> Outcome {
        let all = Array(prefix.dropFirst()) + [try Tool.binary(file: file, line: line)] + args
        return try Running("/usr/bin/env", [prefix[0]] + all, in: scratch).finish(timeout: timeout, file: file, line: line)
    }
}

/// Polls `probe` until it returns a value or `timeout` passes (then fails with `describe()`).
func poll<T>(timeout: TimeInterval, _ what: String, describe: () -> String = { "" },
             file: StaticString = #filePath, line: UInt = #line, _ probe: () throws -> T?) rethrows -> T? {
    let deadline = Date().addingTimeInterval(timeout)
    repeat {
        if let value = try probe() { return value }
        usleep(50_000)
    } while Date() < deadline
    if let value = try probe() { return value }
    XCTFail("timed out after \(timeout)s waiting for \(what)\n\(describe())", file: file, line: line)
    return nil
}

/// A recording made by the real tool, for tests that read one.
func recordFixture(_ path: String, in scratch: URL, extra: [String] = ["--rounds", "15"],
                   file: StaticString = #filePath, line: UInt = #line) throws -> Outcome {
    let outcome = try dirtyscope(["record", path, "--interval", "20ms", "--slots", "4M,4M"] + extra, in: scratch,
                                 file: file, line: line)
    XCTAssertTrue(outcome.exited && outcome.status == 0,
                  "record failed: status \(outcome.status), stderr: \(outcome.stderr)", file: file, line: line)
    return outcome
}

/// `inspect --json` parsed.
func inspectJSON(_ path: String, in scratch: URL, file: StaticString = #filePath, line: UInt = #line) throws
    -> (outcome: Outcome, json: [String: Any]?) {
    let outcome = try dirtyscope(["inspect", "--json", path], in: scratch, file: file, line: line)
    let json = try? JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any]
    return (outcome, json)
}

/// An end-to-end test with a scratch folder of its own, removed afterwards, and at most
/// one tmux session, killed afterwards.
class ScratchTestCase: XCTestCase {
    var scratch: URL!
    var session: TmuxSession?

    override func setUpWithError() throws {
        scratch = try makeScratch()
    }

    override func tearDownWithError() throws {
        session?.kill()
        if let scratch { try? FileManager.default.removeItem(at: scratch) }
    }
}

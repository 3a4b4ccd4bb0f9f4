import ArgumentParser
import DirtyScopeCore
import DirtyScopeModel
import DirtyScopeRecording
import DirtyScopeTUI
import Foundation

/// Opens a replay file, printing its warnings (truncation, skipped records) on stderr.
func openRecording(_ path: String) throws -> RecordingReader {
    do {
        let reader = try RecordingReader(path: path)
        for w in reader.warnings { printError("warning: \(w)") }
        return reader
    } catch {
        printError("\(error)")
        throw ExitCode(2)
    }
}

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay a recording in the heatmap UI (needs no /dev/kvm).",
        discussion: "Keys: space/p play-pause, left/right step, [ ] seek 10%, Home/End, < > speed x0.25 to x16, q quit.")

    @Argument(help: "The replay file.")
    var file: String
    @OptionGroup var display: DisplayOptions

    func run() throws {
        guard isatty(STDOUT_FILENO) == 1 else {
            printError("stdout is not a terminal: replay needs one; use `dirtyscope inspect FILE` or `dirtyscope export FILE --csv` headless")
            throw ExitCode(2)
        }
        let reader = try openRecording(file)
        let exit: TUIExit
        do {
            exit = try TerminalUI.runReplay(reader, options: display.tuiOptions)
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        if case .signal(let n) = exit { throw ExitCode(128 + n) }
    }
}

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Print a recording's header and summary.")

    @Argument(help: "The replay file.")
    var file: String
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let summary = RecordingSummary(try openRecording(file))
        print(json ? summary.json() : summary.text(), terminator: json ? "\n" : "")
        try finishStdout()
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a recording's per-round metrics as CSV.")

    @Argument(help: "The replay file.")
    var file: String
    @Flag(help: "Write CSV (the only format).")
    var csv = false
    @Option(name: .shortAndLong, help: "Write to this file instead of stdout.")
    var output: String?

    func validate() throws {
        guard csv else { throw ValidationError("choose a format: --csv") }
    }

    func run() throws {
        let reader = try openRecording(file)
        do {
            try CSVExport.write(reader, toPath: output ?? "/dev/stdout")
        } catch RecordingError.ioFailed(_, _, EPIPE) {
            return  // the reader of the pipe has what it wanted (`export FILE --csv | head`)
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }
}

/// Flushes stdout; a write that failed (a full disk, `> /dev/full`) is an error (exit 1),
/// a closed pipe is not: its reader stopped reading.
func finishStdout() throws {
    guard fflush(nil) != 0 else { return }
    let e = errno
    guard e != EPIPE else { return }
    printError("stdout: write failed: \(String(cString: strerror(e))) (errno \(e))")
    throw ExitCode(1)
}

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
        discussion: "Keys:\n" + TerminalUI.keyList(replay: true))

    @Argument(help: "The replay file.")
    var file: String
    @OptionGroup var display: DisplayOptions

    func run() throws {
        // The file first: a missing or broken file is what to fix, terminal or not.
        let reader = try openRecording(file)
        guard isatty(STDOUT_FILENO) == 1 else {
            printError("stdout is not a terminal: replay needs one; use `dirtyscope inspect FILE` or `dirtyscope export FILE --csv` headless")
            throw ExitCode(2)
        }
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
        abstract: "Write a recording's numbers for spreadsheets and plots: per round (default), per block, per slot, or its events.",
        discussion: "time_s counts from the start of the recording. Blocks are 64 pages; a block row is written for every round in which it reported pages or false positives.")

    @Argument(help: "The replay file.")
    var file: String
    @Flag(help: "Write CSV (the default).")
    var csv = false
    @Flag(help: "Write NDJSON: one JSON object a line, with the CSV's column names.")
    var json = false
    @Flag(help: "One row per round and 64-page block with any activity: reported and false-positive pages, cleared by the user.")
    var blocks = false
    @Flag(name: .customLong("per-slot"), help: "One row per round and slot.")
    var perSlot = false
    @Flag(help: "One row per event (mode, policy, CLEAR, workload, notes), by name.")
    var events = false
    @Option(name: .shortAndLong, help: "Write to this file instead of stdout.")
    var output: String?

    func validate() throws {
        guard !(csv && json) else { throw ValidationError("--csv and --json exclude each other: choose one format") }
        guard [blocks, perSlot, events].filter({ $0 }).count <= 1 else {
            throw ValidationError("--blocks, --per-slot and --events exclude each other: choose one kind of row")
        }
    }

    func run() throws {
        let reader = try openRecording(file)
        let path = output ?? "/dev/stdout"
        do {
            let kind: RowExport.Kind = blocks ? .blocks : perSlot ? .slots : events ? .events : .rounds
            if kind == .rounds && !json {
                try CSVExport.write(reader, toPath: path)
                return
            }
            guard let stream = fopen(path, "w") else { throw RecordingError.cannotOpen(path: path, errno: errno) }
            defer { fclose(stream) }
            try RowExport.write(reader, kind: kind, encoding: json ? .ndjson : .csv) { line in
                guard fputs(line + "\n", stream) >= 0 else { throw RecordingError.ioFailed(path: path, call: "write", errno: errno) }
            }
            if fflush(stream) != 0 || ferror(stream) != 0 { throw RecordingError.ioFailed(path: path, call: "write", errno: errno) }
        } catch RecordingError.ioFailed(_, _, EPIPE) {
            return  // the reader of the pipe has what it wanted (`export FILE | head`)
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

import ArgumentParser
import DirtyScopeCore
import DirtyScopeModel
import DirtyScopeRecording
import Foundation

struct RecordCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Record a session to a replay file without the UI.")

    @Argument(help: "The replay file to write.")
    var file: String
    @OptionGroup var session: SessionOptions
    @Option(parsing: .unconditional, help: "Stop after this long (e.g. 10s, 500ms); without it and --rounds, 100 rounds.")
    var duration: String?

    func run() throws {
        let (s, queue, limitRounds, deadline) = try reportingErrors { () throws(SessionError) -> (Session, RecordQueue, Int, UInt64) in
            var deadline = UInt64.max
            if let duration {
                let d = try parseInterval(duration, what: "--duration")
                guard d > 0 else { throw .invalidArgument("--duration \(duration) must be above 0") }
                deadline = monotonicNanos() + d
            }
            var config = try session.sessionConfig()
            // Checked: at most SessionLimits.maxRounds.
            let limit = config.roundLimit.map { Int($0) } ?? (duration == nil ? 100 : Int.max)
            if config.roundLimit == nil && duration == nil { config.roundLimit = 100 }
            let host = try KVMSystemInfo.open()
            try checkHostSupports([config.mode], ringEntries: config.ringEntries, system: host)
            let writer: RecordingWriter
            let s = try Session(config: config, system: host.system)
            do {
                writer = try RecordingWriter(path: file, info: s.info)
            } catch {
                throw .invalidArgument("cannot record: \(error)")
            }
            let q = RecordQueue()
            s.subscribe(q)
            s.attachRecorder(writer, path: file)
            return (s, q, limit, deadline)
        }
        let stop = SignalFlag.install()
        s.start()
        var seen = 0
        var missed = 0
        var fault: String?
        var recordingFailure: String?
        func take(_ records: [SessionRecord]) {
            for record in records {
                switch record {
                case .round(let r):
                    seen += 1
                    missed += r.missed ?? 0
                case .event(let e):
                    if case .guestFault(let reason) = e.event, fault == nil { fault = reason }
                    if case .note(let text) = e.event, text.hasPrefix("recording stopped: "), recordingFailure == nil {
                        recordingFailure = String(text.dropFirst("recording stopped: ".count))
                    }
                }
            }
        }
        while seen < limitRounds && monotonicNanos() < deadline && !stop.isSet && fault == nil && recordingFailure == nil {
            // The session itself stops harvesting at the limit, so exactly that many are recorded.
            usleep(20_000)
            take(queue.drain())
        }
        s.stop()
        take(queue.drain())
        let warning = missed > 0 ? " (WARNING: \(missed) pages changed but were never reported)" : ""
        if let recordingFailure {
            printError("recording failed: \(recordingFailure); \(file) holds \(roundsInFile()) of the \(seen) rounds harvested")
            throw ExitCode(1)
        }
        print("recorded \(seen) rounds to \(file)\(warning)")
        if let fault {
            printError("guest fault: \(fault); recording stopped there")
            throw ExitCode(1)
        }
        if let n = stop.caughtSignal { throw ExitCode(128 + n) }
    }

    /// Rounds the finished file replays (what survived a failed write).
    private func roundsInFile() -> Int {
        (try? RecordingReader(path: file))?.roundCount ?? 0
    }
}

/// SIGINT/SIGTERM/SIGHUP set a flag, so a headless run can finish its recording.
final class SignalFlag: @unchecked Sendable {
    nonisolated(unsafe) private static var caught: Int32 = 0

    static func install() -> SignalFlag {
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            _ = Glibc.signal(sig) { n in SignalFlag.caught = n }
        }
        return SignalFlag()
    }

    var isSet: Bool { SignalFlag.caught != 0 }
    var caughtSignal: Int32? { SignalFlag.caught == 0 ? nil : SignalFlag.caught }
}

import ArgumentParser
import DirtyScopeCore
import DirtyScopeModel
import DirtyScopeRecording
import Foundation
import Synchronization

struct RecordCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Record a session to a replay file without the UI.")

    @Argument(help: "The replay file to write.")
    var file: String
    @OptionGroup var session: SessionOptions
    @Option(parsing: .unconditional, help: "Stop after this long (e.g. 10s, 500ms); without it and --rounds, 100 rounds.")
    var duration: String?
    @Option(name: .customLong("at"), help: ArgumentHelp(
        "After round N, do ACTION, as the UI's keys would: N:mode=manual, N:policy=hand, N:clear=SLOT:A-B, N:drop=SLOT, N:workload=NAME, N:pause, N:resume (repeatable).",
        valueName: "N:ACTION"))
    var steps: [String] = []

    func run() throws {
        var script: [ScriptedStep] = []
        let (s, queue, limitRounds, deadline) = try reportingErrors { () throws(SessionError) -> (Session, RecordQueue, Int, UInt64) in
            for text in steps { script.append(try ScriptedStep(parsing: text)) }
            script.sort { $0.afterRound < $1.afterRound }
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
            config.ringEntries = resolveRingEntries(session.ringEntries, host: host)
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
        var missed = 0, lost = 0
        var totals = MetricValues()
        var settings: [HarvestSetting: Int] = [:]
        var span: (first: UInt64, last: UInt64)?
        var fault: String?
        var recordingFailure: String?
        func take(_ records: [SessionRecord]) {
            for record in records {
                switch record {
                case .round(let r):
                    seen += 1
                    missed += r.missed ?? 0
                    lost += r.count(.lostPages)
                    totals.add(r.values)
                    settings[r.setting, default: 0] += 1
                    let end = r.startNanos &+ r[.durationNanos]
                    span = (span?.first ?? r.startNanos, max(span?.last ?? end, end))
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
            while let step = script.first, UInt64(seen) >= step.afterRound {
                s.send(step.command)
                script.removeFirst()
            }
        }
        s.stop()
        take(queue.drain())
        if let recordingFailure {
            printError("recording failed: \(recordingFailure); \(file) holds \(roundsInFile()) of the \(seen) rounds harvested")
            throw ExitCode(1)
        }
        print(Self.summary(rounds: seen, file: file, totals: totals, settings: settings,
                           seconds: span.map { Double($0.last &- $0.first) / 1e9 } ?? 0))
        if lost > 0 {
            print("\(lost) pages were written between their copy and their CLEAR (after-copy): KVM never reported those writes")
        }
        if missed > 0 {
            print("WARNING: verification found \(missed) pages that changed but were never reported")
        }
        if let fault {
            printError("guest fault: \(fault); recording stopped there")
            throw ExitCode(1)
        }
        if let n = stop.caughtSignal { throw ExitCode(128 + n) }
    }

    /// The line that says what was recorded: the rounds and their span, each mode and
    /// policy with its rounds, and the figures the recording is about.
    static func summary(rounds: Int, file: String, totals: MetricValues, settings: [HarvestSetting: Int], seconds: Double) -> String {
        let modes = settings.keys.sorted().map { "\($0) \(settings[$0]!)" }.joined(separator: ", ")
        let verifications = totals[.verifications]
        return "recorded \(rounds) round\(rounds == 1 ? "" : "s") (" + String(format: "%.1f s", seconds)
            + (modes.isEmpty ? "" : ": " + modes) + ") to \(file): "
            + "\(totals[.reportedPages]) pages \(Metric.reportedPages.label), \(totals[.falsePositivePages]) \(Metric.falsePositivePages.label) ("
            + String(format: "%.2f%%", totals.falsePositiveFraction * 100) + "), "
            + (verifications == 0 ? "not verified"
               : "\(totals[.missedPages]) \(Metric.missedPages.label) in \(verifications) verification\(verifications == 1 ? "" : "s")")
    }

    /// Rounds the finished file replays (what survived a failed write).
    private func roundsInFile() -> Int {
        (try? RecordingReader(path: file))?.roundCount ?? 0
    }
}

/// SIGINT/SIGTERM/SIGHUP set a flag, so a headless run can finish its recording. The
/// handler does one atomic store, nothing else.
final class SignalFlag: Sendable {
    private static let caught = Atomic<Int32>(0)

    static func install() -> SignalFlag {
        _ = caught.load(ordering: .relaxed)  // initialise it here, not inside a handler
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            _ = Glibc.signal(sig) { n in SignalFlag.caught.store(n, ordering: .releasing) }
        }
        return SignalFlag()
    }

    var isSet: Bool { caughtSignal != nil }
    var caughtSignal: Int32? {
        let n = SignalFlag.caught.load(ordering: .acquiring)
        return n == 0 ? nil : n
    }
}

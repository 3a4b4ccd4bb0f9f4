import ArgumentParser
import DirtyScopeCore
import DirtyScopeModel
import DirtyScopeRecording
import Foundation

struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Run a guest, then migrate it live to another process: pre-copy rounds, the switch-over, and the guest runs on there.",
        discussion: """
            The guest runs as `record` would (the same options) for --after, then pre-copy begins: \
            rounds back to back in the session's mode, clear policy and chunk, every page they copy \
            streamed to the destination at --bandwidth, the first round followed by every page not yet \
            sent. Once the pages the last round reported could be sent within --downtime-limit at the \
            rate measured (or after --max-iterations), the vCPUs stop, the last dirty pages, the system \
            slot and the vCPUs' state go over, every page is compared by hash, and the destination \
            resumes the guest. Without --to, a receiver is started on a private Unix socket. \
            --compare runs the same guest once per mode and prints one table.
            """)

    @OptionGroup var session: SessionOptions
    @Option(name: .customLong("to"), help: ArgumentHelp("The destination: unix:PATH or HOST:PORT (a `dirtyscope receive`); default: one started here.", valueName: "ADDR"))
    var to: String?
    @Option(name: .customLong("compare"), help: ArgumentHelp("Migrate once per mode (e.g. legacy,manual,ring) and print one table.", valueName: "MODES"))
    var compare: String?
    @Option(parsing: .unconditional, help: "Run the guest this long before migrating (e.g. 2s).")
    var after = "2s"
    @Option(name: .customLong("downtime-limit"), parsing: .unconditional, help: "Switch over once the pages left could be sent within this long (e.g. 300ms).")
    var downtimeLimit = "300ms"
    @Option(name: .customLong("max-iterations"), parsing: .unconditional, help: "Pre-copy rounds at most, the bulk copy included (1 to 1000).")
    var maxIterations = MigrationPlan.defaultMaxIterations
    @Option(name: .customLong("record"), help: ArgumentHelp("Record the source's session, the migration's events and figures included.", valueName: "FILE"))
    var record: String?
    @Option(name: .customLong("run-there"), parsing: .unconditional, help: "With the receiver started here: how long it runs the guest after the resume (e.g. 2s).")
    var runThere = "2s"
    @Flag(help: "Print the figures as JSON, one object per migration.")
    var json = false

    func run() throws {
        let (base, modes, afterNanos, plan, runThereNanos) = try reportingErrors {
            () throws(SessionError) -> (SessionConfig, [HarvestMode], UInt64, MigrationPlan, UInt64) in
            var c = try session.sessionConfig()
            c.roundLimit = nil
            var modes = [c.mode]
            if let compare { modes = try parseModes(compare) }
            if let m = modes.first(where: { !$0.entry.tracks }) {
                throw .invalidArgument("\(m.rawValue) mode tracks nothing: a migration needs legacy, manual or ring")
            }
            let afterNanos = try parseInterval(after, what: "--after")
            let limit = try parseInterval(downtimeLimit, what: "--downtime-limit")
            guard limit > 0 else { throw .invalidArgument("--downtime-limit \(downtimeLimit) must be above 0") }
            guard (1...1000).contains(maxIterations) else { throw .invalidArgument("--max-iterations \(maxIterations): allowed 1 to 1000") }
            if let to { _ = try MigrationAddress(parsing: to) }
            if record != nil && modes.count > 1 { throw .invalidArgument("--record takes one migration; --compare runs \(modes.count)") }
            let plan = MigrationPlan(to: to ?? "", downtimeLimitNanos: limit, maxIterations: maxIterations)
            return (c, modes, afterNanos, plan, try parseInterval(runThere, what: "--run-there"))
        }
        let host = try reportingErrors { () throws(SessionError) in try KVMSystemInfo.open() }
        let stop = SignalFlag.install()
        var results: [(HarvestMode, MigrationFigures, String?)] = []
        for mode in modes {
            var config = base
            config.mode = mode
            config.ringEntries = resolveRingEntries(session.ringEntries, host: host)
            try reportingErrors { () throws(SessionError) in try checkHostSupports([mode], ringEntries: config.ringEntries, system: host) }
            var receiver: LocalReceiver?
            var target = plan
            if to == nil {
                do { receiver = try LocalReceiver.start(runFor: runThereNanos) } catch {
                    printError("cannot start a receiver: \(error)")
                    throw ExitCode(1)
                }
                target.to = receiver!.address
            }
            if !json { print("[\(mode.rawValue)] running the guest for \(formatNanos(afterNanos)), then migrating to \(target.to)"); fflush(nil) }
            let figures = try migrateOnce(config, plan: target, after: afterNanos, host: host, stop: stop)
            let there = receiver?.finish()
            results.append((mode, figures, there))
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                if let data = try? encoder.encode(figures) { print(String(decoding: data, as: UTF8.self)) }
            } else {
                print("[\(mode.rawValue)] \(figures.summary)")
                if figures.phase == .completed {
                    print("  downtime \(formatNanos(figures.downtimeNanos)) = last dirty pages \(formatNanos(figures.lastCopyNanos)) + check \(formatNanos(figures.checkNanos))"
                          + " + state capture \(formatNanos(figures.stateCaptureNanos)) + transfer \(formatNanos(figures.transferNanos))"
                          + " + load \(formatNanos(figures.loadNanos)) + resume \(formatNanos(figures.resumeNanos))")
                }
                if let there { print("  destination: \(there)") }
            }
            fflush(nil)
            if stop.isSet { break }
        }
        if !json && results.count > 1 { print(Self.table(results, plan: plan, config: base)) }
        if let n = stop.caughtSignal { throw ExitCode(128 + n) }
        if results.contains(where: { $0.1.phase != .completed }) { throw ExitCode(1) }
    }

    /// One session: the guest runs for `after`, then migrates; returns the last figures.
    private func migrateOnce(_ config: SessionConfig, plan: MigrationPlan, after: UInt64, host: KVMSystemInfo,
                             stop: SignalFlag) throws -> MigrationFigures {
        let (s, queue) = try reportingErrors { () throws(SessionError) -> (Session, RecordQueue) in
            let s = try Session(config: config, system: host.system)
            let q = RecordQueue()
            s.subscribe(q)
            if let record {
                do { s.attachRecorder(try RecordingWriter(path: record, info: s.info), path: record) } catch {
                    throw .invalidArgument("cannot record: \(error)")
                }
            }
            return (s, q)
        }
        defer { s.stop() }
        s.start()
        let started = monotonicNanos()
        var asked = false
        var last: MigrationFigures?
        while !stop.isSet {
            usleep(20_000)
            for record in queue.drain() {
                guard case .event(let e) = record else { continue }
                switch e.event {
                case .migration(let m):
                    if m.phase != .started { last = m }
                    else if !json { print("  pre-copy started (\(m.setting))"); fflush(nil) }
                case .guestFault(let reason):
                    printError("guest fault: \(reason)")
                    throw ExitCode(1)
                default: break
                }
            }
            if let last { return last }
            if !asked && monotonicNanos() - started >= after {
                s.send(.migrate(plan))
                asked = true
            }
        }
        s.send(.cancelMigration)
        var failed = MigrationFigures(phase: .failed, to: plan.to, setting: config.mode.rawValue)
        failed.reason = "interrupted"
        return failed
    }

    /// The comparison: one row per mode.
    static func table(_ results: [(HarvestMode, MigrationFigures, String?)], plan: MigrationPlan, config: SessionConfig) -> String {
        func mib(_ b: UInt64) -> String { String(format: "%.1f", Double(b) / 1_048_576) }
        var rows = [["mode", "result", "total", "rounds", "sent MiB", "FP MiB", "zero pages", "downtime", "last copy", "check",
                     "capture", "transfer", "load", "resume"]]
        for (_, f, _) in results {
            rows.append([f.setting, f.phase == .completed ? (f.converged ? "converged" : "max rounds") : "FAILED",
                         formatNanos(f.totalNanos), "\(f.iterations)", mib(f.bytesSent), mib(f.falsePositiveBytes), "\(f.zeroPages)",
                         formatNanos(f.downtimeNanos), formatNanos(f.lastCopyNanos), formatNanos(f.checkNanos),
                         formatNanos(f.stateCaptureNanos), formatNanos(f.transferNanos), formatNanos(f.loadNanos), formatNanos(f.resumeNanos)])
        }
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max() ?? 0 }
        var out = "\ndirtyscope migrate --compare: \(config.slotBytes.map { formatBytes(UInt64($0)) }.joined(separator: ",")), "
            + "\(config.vcpus) vCPUs, \(config.workload.summary), bandwidth \(config.bandwidth == 0 ? "unlimited" : formatBytes(config.bandwidth) + "/s"), "
            + "downtime limit \(formatNanos(plan.downtimeLimitNanos)), load average \(loadAverage())\n"
        for r in rows {
            out += r.enumerated().map { c, v in c == 0 ? v.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                : String(repeating: " ", count: widths[c] - v.count) + v }.joined(separator: "  ") + "\n"
        }
        return out
    }
}

/// A `dirtyscope receive` started by this process on a private Unix socket, its output
/// kept to say how the guest went on there.
final class LocalReceiver: @unchecked Sendable {
    let address: String
    private let process: Process
    private let output: Pipe
    private let directory: String
    private var text = Data()
    private let lock = NSLock()

    private init(address: String, process: Process, output: Pipe, directory: String) {
        self.address = address
        self.process = process
        self.output = output
        self.directory = directory
    }

    static func start(runFor: UInt64) throws -> LocalReceiver {
        let directory = NSTemporaryDirectory() + "dirtyscope-migrate-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(directory, 0o700) == 0 else { throw SessionError.io("cannot make \(directory): \(String(cString: strerror(errno)))") }
        let address = "unix:\(directory)/receive.sock"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["receive", "--listen", address, "--run-for", "\(runFor / 1_000_000)ms", "--wait", "60s"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let r = LocalReceiver(address: address, process: process, output: pipe, directory: directory)
        // Drained as it comes, so the receiver never blocks on a full pipe.
        pipe.fileHandleForReading.readabilityHandler = { [weak r] handle in
            let data = handle.availableData
            guard let r, !data.isEmpty else { return }
            r.lock.lock(); r.text.append(data); r.lock.unlock()
        }
        // Ready once it says it listens.
        let deadline = monotonicNanos() + 10_000_000_000
        while monotonicNanos() < deadline && process.isRunning {
            if r.snapshot.contains("listening on") { return r }
            usleep(10_000)
        }
        let said = r.snapshot
        r.kill()
        throw SessionError.io("the receiver did not start listening: \(said.split(separator: "\n").last ?? "no output")")
    }

    private var snapshot: String { lock.lock(); defer { lock.unlock() }; return String(decoding: text, as: UTF8.self) }

    /// Waits for the receiver to end (it runs the guest for its --run-for), and says what it saw.
    func finish() -> String {
        let deadline = monotonicNanos() + 120_000_000_000
        while process.isRunning && monotonicNanos() < deadline { usleep(20_000) }
        if process.isRunning { kill() }
        output.fileHandleForReading.readabilityHandler = nil
        lock.lock(); text.append(output.fileHandleForReading.readDataToEndOfFile()); lock.unlock()
        rmdir(directory)
        let lines = snapshot.split(separator: "\n").map(String.init)
        let resumed = lines.first { $0.hasPrefix("guest resumed here") }
        let stopped = lines.last { $0.hasPrefix("guest stopped here") }
        let failure = lines.last { $0.hasPrefix("migration failed") || $0.hasPrefix("guest fault") }
        return [failure, resumed, stopped].compactMap { $0 }.joined(separator: "; ")
            + (process.terminationStatus == 0 ? "" : " (receiver exit status \(process.terminationStatus))")
    }

    private func kill() {
        process.terminate()
        process.waitUntilExit()
        unlink(String(address.dropFirst("unix:".count)))
        rmdir(directory)
    }
}

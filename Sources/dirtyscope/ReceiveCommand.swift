import ArgumentParser
import DirtyScopeCore
import DirtyScopeModel
import DirtyScopeRecording
import DirtyScopeTUI
import Foundation
import KVM

struct ReceiveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "receive",
        abstract: "Wait for a migrating guest, load it, check every page and run it here.",
        discussion: """
            Listens on ADDR (unix:PATH, HOST:PORT, or a port alone for 127.0.0.1:PORT) for one \
            `dirtyscope migrate`. It builds a VM with the source's memslot layout, loads the pages as \
            they arrive, compares every page with the source's hashes at the switch-over, loads the \
            vCPUs' state and resumes the guest, which then runs here. A second connection is refused; \
            a stream that breaks or lies before the resume is discarded.
            """)

    @Option(name: .customLong("listen"), help: ArgumentHelp("Where to listen: unix:PATH, HOST:PORT, or PORT (127.0.0.1).", valueName: "ADDR"))
    var listen: String
    @Option(name: .customLong("run-for"), parsing: .unconditional, help: "Headless: after the guest resumes here, run it this long, then stop (e.g. 5s); default: until a signal.")
    var runFor: String?
    @Option(name: .customLong("wait"), parsing: .unconditional, help: "Give up when no source connects within this long (e.g. 30s); default: wait for ever.")
    var wait: String?
    @Flag(help: "Print progress lines instead of opening the heatmap (the default without a terminal).")
    var headless = false
    @Option(parsing: .unconditional, help: "Once the guest runs here: the heatmap's harvest interval (e.g. 100ms).")
    var interval = "100ms"
    @Option(name: .customLong("record"), help: ArgumentHelp("Record the destination's side: the pre-copy rounds as they arrive, the migration's figures, then the guest running here.", valueName: "FILE"))
    var record: String?
    @OptionGroup var display: DisplayOptions

    func run() throws {
        let (address, runNanos, waitNanos, intervalNanos) = try reportingErrors { () throws(SessionError) -> (MigrationAddress, UInt64?, UInt64?, UInt64) in
            let address: MigrationAddress
            if let port = UInt16(listen), port > 0 { address = .tcp(host: "127.0.0.1", port: port) } else { address = try MigrationAddress(parsing: listen) }
            var runNanos: UInt64?, waitNanos: UInt64?
            if let runFor { runNanos = try parseInterval(runFor, what: "--run-for") }
            if let wait { waitNanos = try parseInterval(wait, what: "--wait") }
            let interval = try parseInterval(self.interval)
            guard interval > 0 else { throw .invalidArgument("--interval \(self.interval) must be above 0") }
            return (address, runNanos, waitNanos, interval)
        }
        let ui = !headless && isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1
        let host = try reportingErrors { () throws(SessionError) in try KVMSystemInfo.open() }
        let listener: MigrationListener
        do { listener = try MigrationListener(address) } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        if !address.isLocal { print("note: listening on \(address), reachable from other machines (asked for explicitly)") }
        print("listening on \(address)")
        fflush(nil)
        let stop = SignalFlag.install()
        let started = monotonicNanos()
        var channel: MigrationChannel?
        while channel == nil && !stop.isSet {
            if let waitNanos, monotonicNanos() - started > waitNanos {
                printError("no source connected to \(address) within \(formatNanos(waitNanos))")
                throw ExitCode(1)
            }
            do { channel = try listener.accept(timeoutNanos: 200_000_000) } catch {
                printError("\(error)")
                throw ExitCode(1)
            }
        }
        guard let channel else { throw ExitCode(128 + (stop.caughtSignal ?? SIGINT)) }
        // One migration at a time: later connections are told so and closed.
        let refusing = RefusingListener(listener, reason: "busy: this receiver already takes a migration")
        defer { refusing.stop() }
        if ui {
            try runWithHeatmap(channel, system: host.system, refusing: refusing, intervalNanos: intervalNanos)
            return
        }
        let receiver = MigrationReceiver(system: host.system, channel: channel)
        let recorder = DestinationRecorder(path: record, system: host.system, intervalNanos: intervalNanos)
        defer { recorder.finish() }
        receiver.onNote = { print($0); fflush(nil) }
        receiver.onHello = { (hello) throws(MigrationError) in try recorder.begin(hello) }
        receiver.onRound = { r in
            let pages = r.received.reduce(0) { $0 + $1.count }, unchanged = r.unchanged.reduce(0) { $0 + $1.count }
            print("round \(r.index): \(pages) pages arrived (\(r.zeroPages) zero, \(unchanged) unchanged: the source counted \(r.sourceFalsePositives) false positives), \(formatBytes(r.bytes))")
            fflush(nil)
            recorder.append(r)
        }
        let outcome: MigrationReceiver.Outcome
        do { outcome = try receiver.run() } catch {
            recorder.failed("\(error)")
            printError("migration failed: \(error); nothing of it is kept here")
            throw ExitCode(1)
        }
        refusing.reason = "busy: a migrated guest runs here"
        let machine = outcome.machine
        defer { machine.stop() }
        // The guest runs here in a session of its own when recording (its rounds go on in the file).
        let session = recorder.isRecording ? recorder.adopt(outcome, from: address.description) : nil
        defer { session?.stop() }
        if let failure = recorder.failure { printError(failure) }
        print("guest resumed here after \(outcome.rounds) rounds: \(outcome.pages) pages (\(outcome.zeroPages) zero, "
              + "\(outcome.unchangedPages) unchanged), \(formatBytes(outcome.bytesReceived)) received; "
              + "state loaded in \(formatNanos(outcome.loadNanos)), resumed in \(formatNanos(outcome.resumeNanos))")
        for (v, refused) in outcome.refusedMSRs.enumerated() where !refused.isEmpty {
            print("vCPU \(v): KVM would not take back MSRs " + refused.map { "0x" + String($0, radix: 16) }.joined(separator: ", "))
        }
        fflush(nil)
        // The guest runs here: say how it goes, once a second.
        let resumed = monotonicNanos()
        let writesAtResume = machine.guestWrites
        var lastWrites = writesAtResume, lastTime = resumed
        while !stop.isSet {
            if let runNanos, monotonicNanos() - resumed >= runNanos { break }
            usleep(100_000)
            if let fault = machine.currentFault {
                printError("guest fault here: \(fault)")
                throw ExitCode(1)
            }
            let now = monotonicNanos()
            if now - lastTime >= 1_000_000_000 {
                let writes = machine.guestWrites
                print("guest running here: \(writes) writes (+\(Int(Double(writes &- lastWrites) * 1e9 / Double(now - lastTime)))/s)")
                fflush(nil)
                lastWrites = writes
                lastTime = now
            }
        }
        let writes = machine.guestWrites
        print("guest stopped here after \(formatNanos(monotonicNanos() - resumed)): \(writes &- writesAtResume) writes here, \(writes) in all")
        if let n = stop.caughtSignal { throw ExitCode(128 + n) }
    }
}

extension ReceiveCommand {
    /// The destination's heatmap: the pages arriving, round by round (those that came
    /// with the content already here are its false positives), then, once the guest
    /// resumes here, a session around it (nothing tracked: the guest's own timeline shows
    /// its throughput). A failed stream is said on the screen; the UI stays until quit.
    private func runWithHeatmap(_ channel: MigrationChannel, system: KVMSystem, refusing: RefusingListener,
                                intervalNanos: UInt64) throws {
        let queue = RecordQueue()
        let controller = ForwardingController()
        // Used by the receiving thread alone once it starts.
        nonisolated(unsafe) let receiver = MigrationReceiver(system: system, channel: channel)
        let state = ReceiveState()
        let started = monotonicNanos()
        var lastRoundAt = started
        var index: UInt64 = 0
        let recorder = DestinationRecorder(path: record, system: system, intervalNanos: intervalNanos, queue: queue, started: started)
        receiver.onHello = { (hello) throws(MigrationError) in
            try recorder.begin(hello)
            state.post(hello: hello)
        }
        receiver.onNote = { queue.push(.event(TimedEvent(nanos: monotonicNanos() - started, event: .note($0)))) }
        receiver.onRound = { r in
            index += 1
            let now = monotonicNanos()
            let round = r.record(index: index, startNanos: lastRoundAt - started, durationNanos: now - lastRoundAt)
            queue.push(.round(round))
            recorder.append(round)
            lastRoundAt = now
        }
        let thread = Thread {
            do throws(MigrationError) {
                let outcome = try receiver.run()
                refusing.reason = "busy: a migrated guest runs here"
                var config = SessionConfig()
                config.intervalNanos = intervalNanos
                do {
                    let session = try Session(adopting: outcome.machine, config: config, system: system, roundsBefore: outcome.rounds)
                    session.subscribe(queue)
                    recorder.handOver(outcome, from: "the source", to: session)
                    session.start()
                    controller.target = session
                    if let w = outcome.machine.workloadInControlBlock {
                        queue.push(.event(TimedEvent(nanos: monotonicNanos() - started, event: .workloadChanged(w))))
                    }
                    queue.push(.event(TimedEvent(nanos: monotonicNanos() - started, event: .note(
                        "guest resumed here after \(outcome.rounds) rounds: \(outcome.pages) pages (\(outcome.zeroPages) zero, "
                        + "\(outcome.unchangedPages) unchanged), state loaded in \(formatNanos(outcome.loadNanos)), resumed in \(formatNanos(outcome.resumeNanos))"))))
                } catch {
                    outcome.machine.stop()
                    state.post(failure: "the guest arrived but cannot run here: \(error)", queue: queue, started: started)
                }
            } catch {
                recorder.failed("\(error)")
                state.post(failure: "migration failed: \(error); nothing of it is kept here", queue: queue, started: started)
            }
            state.finish()
        }
        thread.start()
        // The heatmap needs the layout: it opens once the source's hello is here.
        guard let hello = state.waitForHello() else {
            state.waitForFinish()
            printError(state.failure ?? "the source went away before its hello")
            throw ExitCode(1)
        }
        let info = MigrationReceiver.sessionInfo(hello, system: system, intervalNanos: intervalNanos, bandwidth: SessionConfig().bandwidth)
        let exit: TUIExit
        do {
            exit = try TerminalUI.runLive(info: info, controller: controller, records: queue, options: display.tuiOptions)
        } catch {
            channel.close()
            state.waitForFinish()
            controller.target?.stop()
            printError("\(error)")
            throw ExitCode(1)
        }
        // Quitting mid-stream gives the migration up (the source's guest runs on there).
        channel.close()
        state.waitForFinish()
        controller.target?.stop()
        recorder.finish()
        if let failure = recorder.failure { printError(failure) }
        if case .signal(let n) = exit { throw ExitCode(128 + n) }
    }
}

/// `receive --record`: the destination's recording. It begins with the source's hello
/// (the layout), holds each pre-copy round as it arrived and the migration's figures as
/// the destination saw them, then the rounds of the session around the guest running
/// here. A recording that cannot be written is said once and stops; the migration goes on.
final class DestinationRecorder: @unchecked Sendable {
    private let path: String?
    private let system: KVMSystem
    private let intervalNanos: UInt64
    private let queue: RecordQueue?
    private let started: UInt64
    private var writer: RecordingWriter?
    private var index: UInt64 = 0
    private var lastRoundAt: UInt64
    private(set) var failure: String?

    init(path: String?, system: KVMSystem, intervalNanos: UInt64, queue: RecordQueue? = nil, started: UInt64 = monotonicNanos()) {
        self.path = path
        self.system = system
        self.intervalNanos = intervalNanos
        self.queue = queue
        self.started = started
        lastRoundAt = started
    }

    var isRecording: Bool { writer != nil }

    /// Opens the file for the layout in `hello`; a file that cannot be made refuses the migration.
    func begin(_ hello: MigrationWire.Hello) throws(MigrationError) {
        guard let path else { return }
        let info = MigrationReceiver.sessionInfo(hello, system: system, intervalNanos: intervalNanos, bandwidth: SessionConfig().bandwidth)
        do { writer = try RecordingWriter(path: path, info: info) } catch {
            throw MigrationError("cannot record to \(path): \(error)")
        }
        write(.event(TimedEvent(nanos: 0, event: .recordingStarted(path: path))))
    }

    /// A pre-copy round, as it arrived (headless: numbered and timed here).
    func append(_ r: MigrationReceiver.Round) {
        index += 1
        let now = monotonicNanos()
        append(r.record(index: index, startNanos: lastRoundAt - started, durationNanos: now - lastRoundAt))
        lastRoundAt = now
    }

    func append(_ round: DirtyScopeModel.Round) { write(.round(round)) }

    /// The figures as the destination saw them, then the file to `session` (its rounds follow).
    func handOver(_ outcome: MigrationReceiver.Outcome, from source: String, to session: Session) {
        let figures = TimedEvent(nanos: monotonicNanos() - started, event: .migration(outcome.figures(from: source)))
        queue?.push(.event(figures))
        write(.event(figures))
        guard let writer, let path else { return }
        self.writer = nil
        session.attachRecorder(writer, path: path)
    }

    /// Headless: a session around the guest running here, recording on; nil if none can be made.
    func adopt(_ outcome: MigrationReceiver.Outcome, from source: String) -> Session? {
        var config = SessionConfig()
        config.intervalNanos = intervalNanos
        do {
            let session = try Session(adopting: outcome.machine, config: config, system: system, roundsBefore: outcome.rounds)
            handOver(outcome, from: source, to: session)
            session.start()
            return session
        } catch {
            failure = "the guest runs here, but its rounds cannot be recorded: \(error)"
            finish()
            return nil
        }
    }

    /// The migration failed: said in the file, which is finished.
    func failed(_ reason: String) {
        var f = MigrationFigures(phase: .failed, to: "here", setting: "destination")
        f.reason = reason
        write(.event(TimedEvent(nanos: monotonicNanos() - started, event: .migration(f))))
        finish()
    }

    func finish() {
        guard let writer else { return }
        self.writer = nil
        do { try writer.finish() } catch { failure = failure ?? "recording to \(path ?? "") failed: \(error)" }
    }

    private func write(_ record: SessionRecord) {
        guard let writer else { return }
        do { try writer.append(record) } catch {
            failure = "recording to \(path ?? "") stopped: \(error)"
            self.writer = nil
            try? writer.finish()
        }
    }
}

/// Hands the UI's commands to the session around the migrated guest once there is one
/// (before that, there is nothing to steer: the pages are still arriving).
final class ForwardingController: SessionController, @unchecked Sendable {
    private let lock = NSLock()
    private var _target: Session?
    var target: Session? {
        get { lock.lock(); defer { lock.unlock() }; return _target }
        set { lock.lock(); _target = newValue; lock.unlock() }
    }

    func send(_ command: SessionCommand) { target?.send(command) }
}

/// The receiving thread's news for the main thread: the hello, a failure, the end.
private final class ReceiveState: @unchecked Sendable {
    private let condition = NSCondition()
    private var hello: MigrationWire.Hello?
    private(set) var failure: String?
    private var finished = false

    func post(hello: MigrationWire.Hello) {
        condition.lock(); self.hello = hello; condition.broadcast(); condition.unlock()
    }

    func post(failure: String, queue: RecordQueue, started: UInt64) {
        condition.lock(); self.failure = failure; condition.unlock()
        queue.push(.event(TimedEvent(nanos: monotonicNanos() - started, event: .guestFault(failure))))
    }

    func finish() {
        condition.lock(); finished = true; condition.broadcast(); condition.unlock()
    }

    /// The hello, or nil once the thread ended without one.
    func waitForHello() -> MigrationWire.Hello? {
        condition.lock(); defer { condition.unlock() }
        while hello == nil && !finished { condition.wait() }
        return hello
    }

    func waitForFinish() {
        condition.lock(); defer { condition.unlock() }
        while !finished { condition.wait() }
    }
}

/// Accepts and refuses connections on a listener in a thread of its own (with an abort
/// frame saying why), until stopped.
final class RefusingListener: @unchecked Sendable {
    private let listener: MigrationListener
    private let lock = NSLock()
    private var _reason: String
    private var stopped = false
    private var thread: Thread?

    var reason: String {
        get { lock.lock(); defer { lock.unlock() }; return _reason }
        set { lock.lock(); _reason = newValue; lock.unlock() }
    }

    init(_ listener: MigrationListener, reason: String) {
        self.listener = listener
        _reason = reason
        let t = Thread { [self] in
            while !isStopped {
                guard let c = try? listener.accept(timeoutNanos: 200_000_000) else { continue }
                try? c.send(MigrationWire.greeting(.destination))
                try? c.send(.abort(self.reason))
                c.close()
            }
        }
        thread = t
        t.start()
    }

    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    func stop() {
        lock.lock()
        stopped = true
        lock.unlock()
    }
}

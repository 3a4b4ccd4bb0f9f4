import DirtyScopeModel
import DirtyScopeRecording
import Foundation
import KVM

/// Where a session's records go besides the UI: the recorder.
public protocol RecordSink: AnyObject {
    func append(_ record: SessionRecord) throws
    /// Writes buffered records that are due; called at least every half second.
    func flushIfDue() throws
    /// Flushes and closes; idempotent.
    func finish() throws
}

extension RecordingWriter: RecordSink {}

/// A live session: the VM and its guest, harvested every interval on a thread of its
/// own. The UI (or a test) sends `SessionCommand`s and reads `SessionRecord`s from the
/// queues it subscribed; the recorder, when attached, gets every record too.
///
/// A handle: the harvest thread holds the `SessionLoop`, so dropping the last reference
/// to the session stops it.
public final class Session: SessionController, @unchecked Sendable {
    private let loop: SessionLoop

    /// Builds the VM and guest; the guest starts with `start()`.
    public init(config: SessionConfig, system: KVMSystem) throws(SessionError) {
        loop = try SessionLoop(config: config, system: system)
    }

    /// A session around a machine that already runs: a guest migrated here. Nothing on
    /// its slots is tracked (untracked mode: the guest's own timeline still times it);
    /// `config` gives the interval, bandwidth and the rest, its layout is the machine's.
    /// Its rounds are numbered from `roundsBefore + 1` (the pre-copy rounds that brought it).
    public init(adopting machine: GuestMachine, config: SessionConfig, system: KVMSystem, roundsBefore: UInt64 = 0) throws(SessionError) {
        loop = try SessionLoop(config: config, system: system, adopting: machine)
        loop.roundBase = roundsBefore
    }

    deinit { loop.stop() }

    /// The session's header: layout, host, settings at the start.
    public var info: SessionInfo { loop.info }
    /// Makes a recorder for `.startRecording(path:)`; the CLI supplies it.
    public var recorderFactory: (@Sendable (String, SessionInfo) throws -> RecordSink)? {
        get { loop.recorderFactory }
        set { loop.recorderFactory = newValue }
    }
    /// Adds a queue that receives every record from now on.
    public func subscribe(_ queue: RecordQueue) { loop.subscribe(queue) }
    /// Attaches a recorder (already created, so an unwritable path failed before the session started).
    public func attachRecorder(_ sink: RecordSink, path: String) { loop.attachRecorder(sink, path: path) }
    /// Starts the guest and the harvest thread.
    public func start() { loop.start() }
    /// Stops harvesting, finishes any recording and tears the VM down. Idempotent.
    public func stop() { loop.stop() }
    /// SessionController: queue a command for the harvest thread.
    public func send(_ command: SessionCommand) { loop.send(command) }
}

/// The session's state and its harvest thread.
final class SessionLoop: @unchecked Sendable {
    public private(set) var info: SessionInfo
    private let system: KVMSystem
    private var config: SessionConfig
    private var machine: GuestMachine
    private var harvester: Harvester
    /// Every harvester's consumer looks at it: `stop` asks a paced copy to finish at once,
    /// `send` pokes it so that commands act in the middle of a round.
    private let copyControl = CopyControl()
    private let startNanos = monotonicNanos()
    var roundBase: UInt64 = 0

    private let lock = MonotonicCondition()
    private var commands: [SessionCommand] = []
    private var pendingEvents: [SessionEvent] = []
    private var stopRequested = false
    private var thread: pthread_t?
    private var subscribers: [RecordQueue] = []
    private var paused = false
    private var stepRequested = 0
    private var recorder: RecordSink?
    private var recorderPath = ""
    /// Makes a recorder for `.startRecording(path:)`; the CLI supplies it.
    var recorderFactory: (@Sendable (String, SessionInfo) throws -> RecordSink)?

    /// Builds the VM and guest (or takes `adopted`, running already); the guest starts with `start()`.
    init(config: SessionConfig, system: KVMSystem, adopting adopted: GuestMachine? = nil) throws(SessionError) {
        var config = config
        if let adopted {
            config.slotBytes = adopted.dataSlots.map(\.byteCount)
            config.vcpus = adopted.config.vcpus
            config.mode = adopted.logsDirtyPages ? .legacy : .untracked
            config.falsePositiveMethod = adopted.guestStamps ? .stamp : .content
            if let w = adopted.workloadInControlBlock { config.workload = w }
        }
        try config.validate()
        self.config = config
        self.system = system
        if let adopted { machine = adopted } else { machine = try GuestMachine(system: system, config: config.machineConfig()) }
        let method = config.falsePositiveMethod ?? (machine.guestStamps ? .stamp : .content)
        self.config.falsePositiveMethod = method
        harvester = try Harvester(machine: machine, mode: config.mode, clearChunk: config.clearChunk,
                                  clearPolicy: config.clearPolicy, method: method, bandwidth: config.bandwidth,
                                  startNanos: startNanos)
        info = SessionInfo(
            toolVersion: dirtyScopeVersion, hostKernel: hostKernelRelease(), pageSize: PageSize.system,
            slots: machine.dataSlots.enumerated().map {
                SlotInfo(index: $0, kvmSlot: $1.id, guestPhysicalAddress: $1.guestPhysicalAddress, pages: $1.pageCount)
            },
            vcpus: config.vcpus, guestName: machine.guestName, capabilities: dirtyTrackingCapabilities(system),
            mode: config.mode, clearChunk: config.clearChunk, clearPolicy: config.clearPolicy, workload: config.workload, intervalNanos: config.intervalNanos,
            bandwidth: config.bandwidth, ringEntries: config.mode.entry.source == .rings ? config.ringEntries : 0,
            falsePositiveMethod: method, startTime: Date().timeIntervalSince1970)
        wireMachine()
        copyControl.interrupt = { [unowned self] in self.serviceMidRound() }
    }

    /// Adds a queue that receives every record from now on.
    func subscribe(_ queue: RecordQueue) {
        lock.lock(); subscribers.append(queue); lock.unlock()
    }

    /// Attaches a recorder (already created, so an unwritable path failed before the session started).
    func attachRecorder(_ sink: RecordSink, path: String) {
        lock.lock()
        recorder = sink
        recorderPath = path
        lock.unlock()
        emit(.event(TimedEvent(nanos: now, event: .recordingStarted(path: path))))
    }

    /// Starts the guest and the harvest thread.
    func start() {
        machine.start()
        thread = spawnThread { [self] in
            var next = monotonicNanos()
            while turn(next: &next) {}
        }
    }

    /// Stops harvesting, finishes any recording and tears the VM down. Idempotent.
    func stop() {
        copyControl.request()   // a copy paced at a low bandwidth finishes at once
        lock.lock()
        stopRequested = true
        lock.broadcast()
        let t = thread
        thread = nil
        lock.unlock()
        if let t { joinOrDetach([t]) }
        machine.stop()
        stopRecording()
    }

    /// SessionController: queue a command for the harvest thread.
    func send(_ command: SessionCommand) {
        lock.lock()
        commands.append(command)
        lock.broadcast()
        lock.unlock()
        copyControl.poke()   // a round in progress takes it within 16 pages or one pacing slice
    }

    // MARK: The harvest thread

    private var now: UInt64 { monotonicNanos() - startNanos }

    /// One turn of the harvest thread: events, commands, then a round if one is due, else
    /// a wait (at most 0.5 s). Returns false once a stop is requested.
    private func turn(next: inout UInt64) -> Bool {
        lock.lock()
        let cmds = commands
        commands.removeAll()
        acknowledgedWaiting = 0
        let events = pendingEvents
        pendingEvents.removeAll()
        let stop = stopRequested
        lock.unlock()
        if stop {
            if migration != nil { failMigration("the source session stopped") }
            if config.stopAndCopy && harvester.mode.entry.tracks && !migratedAway {
                if !paused { machine.pause(reason: .verification) }
                paused = true
                harvestOnce(verify: true)
            }
            return false
        }
        for e in events {
            if case .ringFull = e {
                do { try harvester.drainRings() } catch { note("draining the dirty rings failed: \(error)") }
            }
            emit(.event(TimedEvent(nanos: now, event: e)))
        }
        flushRecorder()
        for c in cmds { apply(c) }
        if rescheduled {
            rescheduled = false
            if let start = lastRoundStart { next = min(next, start &+ config.intervalNanos) }
        }

        let t = monotonicNanos()
        var due = false
        if migratedAway {
            due = false
        } else if migration != nil {
            // Pre-copy: rounds back to back, each as long as its copy at the bandwidth.
            due = true
            lastRoundStart = t
            next = t
        } else if let limit = config.roundLimit, roundBase + harvesterRounds >= limit {
            due = false
            // Nothing more will be harvested: park the vCPUs, so a finished session idles.
            if !paused && !parkedAtLimit {
                machine.pause()
                parkedAtLimit = true
            }
        } else if paused {
            if stepRequested > 0 { stepRequested -= 1; due = true }
        } else if t >= next {
            due = true
            lastRoundStart = t
            next = config.intervalNanos == 0 ? t : max(next + config.intervalNanos, t - config.intervalNanos)
        }
        if due {
            harvestOnce()
            return true
        }
        // With the round limit reached nothing is due: wait like a paused session, not
        // until a `next` that has passed (that spun a core once the rounds were done).
        let idle = paused || migratedAway || config.roundLimit.map { roundBase + harvesterRounds >= $0 } ?? false
        lock.lock()
        if commands.isEmpty && pendingEvents.isEmpty && !stopRequested {
            let now = monotonicNanos()
            lock.wait(untilNanos: idle ? now + 500_000_000 : min(now + 500_000_000, max(next, now)))
        }
        lock.unlock()
        return true
    }

    private func harvestOnce(verify forced: Bool = false) {
        let index = roundBase + harvesterRounds + 1
        // Untracked mode has nothing to verify: nothing was tracked.
        let verify = harvester.mode.entry.tracks && (forced || (config.verifyEvery > 0 && index % UInt64(config.verifyEvery) == 0))
        if verify && !paused { machine.pause(reason: .verification) }
        inRound = true
        verifying = verify
        defer { inRound = false; verifying = false }
        do {
            var round = try harvester.harvestRound(verify: verify)
            if harvester.ringResetMismatches != ringMismatchesShown, let m = harvester.lastRingResetMismatch {
                ringMismatchesShown = harvester.ringResetMismatches
                note("KVM_RESET_DIRTY_RINGS reset \(m.reset) entries but \(m.harvested) were harvested")
            }
            noteClampedWriteCounts()
            round.metrics.index = index
            harvesterRounds += 1
            if verify && !paused { machine.resume() }
            // The missed blocks go out with the `verified` event only; the round keeps the counts.
            let missedBlocks = round.verification?.missedBlocks
            round.verification?.missedBlocks = nil
            emit(.round(round))
            if var v = round.verification {
                v.missedBlocks = missedBlocks
                emit(.event(TimedEvent(nanos: now, event: .verified(v))))
            }
            if migration != nil { migrationRoundEnded(round) }
        } catch {
            if verify && !paused { machine.resume() }
            if migration != nil, case .migration = error {
                failMigration("\(error)")
                return
            }
            emit(.event(TimedEvent(nanos: now, event: .note("harvest failed: \(error)"))))
        }
    }

    private var harvesterRounds: UInt64 = 0
    /// A round is being harvested (commands arrive through `serviceMidRound`), and it
    /// ends with a verification, for which the vCPUs must stay parked.
    private var inRound = false
    /// When the last scheduled round began, and whether the interval changed since.
    private var lastRoundStart: UInt64?
    private var rescheduled = false
    private var verifying = false
    /// `serviceMidRound` is running (a command it applies may copy, and poke again).
    private var servicing = false
    /// Commands at the head of the queue already told they wait for the round's end.
    private var acknowledgedWaiting = 0

    /// On the harvest thread, in the middle of a round (its copy's pacing or its
    /// verification, poked by `send`): the commands that can act now do, in order; the
    /// others (mode, clear policy and chunk, CLEAR, restart) would change the round being
    /// counted, so they wait for its end, in order, and say so at once.
    private func serviceMidRound() {
        guard inRound, !servicing else { return }
        servicing = true
        defer { servicing = false }
        lock.lock()
        let cmds = commands
        commands.removeAll()
        lock.unlock()
        var waiting: [SessionCommand] = []
        for (k, c) in cmds.enumerated() {
            if c.actsMidRound {
                apply(c)
            } else {
                // The ones already waiting come first (put back at the head last time).
                if k >= acknowledgedWaiting { note("\(c.summary): waits for this round to end (it is still copying)") }
                waiting.append(c)
            }
        }
        acknowledgedWaiting = waiting.count
        guard !waiting.isEmpty else { return }
        lock.lock()
        commands.insert(contentsOf: waiting, at: 0)
        lock.unlock()
    }
    /// The vCPUs were parked because the round limit was reached.
    private var parkedAtLimit = false
    /// Ring reset mismatches already reported as notes (for the current harvester).
    private var ringMismatchesShown: UInt64 = 0
    /// Clamped write counts already noted (for the current harvester), and when the last
    /// note went out: a scribbling guest makes one every round, noted once a second.
    private var clampsShown: UInt64 = 0
    private var clampNotedAt: UInt64?

    /// Says that guest-written write counters were impossible and clamped, at most once a
    /// second, with the rounds since the last note.
    private func noteClampedWriteCounts() {
        let clamped = harvester.clampedWriteCounts &- clampsShown
        let t = monotonicNanos()
        guard clamped > 0, clampNotedAt.map({ t &- $0 >= 1_000_000_000 }) ?? true else { return }
        note("guest write counters out of range (stepped back, or past one write a nanosecond per vCPU) in \(clamped) "
             + (clamped == 1 ? "round" : "rounds") + ": writes clamped")
        clampsShown = harvester.clampedWriteCounts
        clampNotedAt = t
    }

    private func apply(_ command: SessionCommand) {
        switch command {
        case .setMode(let mode):
            guard mode != harvester.mode else { return }
            if migration != nil && (!mode.entry.tracks || mode.entry.fixedAtCreation || harvester.mode.entry.fixedAtCreation) {
                note("cannot switch to \(mode.rawValue) during a migration: " + (mode.entry.tracks ? "it needs a new VM" : "it tracks nothing"))
                return
            }
            if mode.entry.fixedAtCreation || harvester.mode.entry.fixedAtCreation {
                config.mode = mode
                restart(reason: "switching to \(mode.rawValue) mode needs a new VM: dirty rings are enabled before vCPUs exist")
                emit(.event(TimedEvent(nanos: now, event: .modeChanged(mode, harvester.clearChunk))))
                return
            }
            // Tracking back on resynchronises the destination with the vCPUs stopped.
            let resyncs = mode.entry.tracks && !harvester.mode.entry.tracks
            let stopped = monotonicNanos()
            if resyncs && !paused { machine.pause() }
            let resynced: Int?
            do {
                resynced = try harvester.setMode(mode)
            } catch {
                if resyncs && !paused { machine.resume() }
                note("cannot switch to \(mode.rawValue): \(error)")
                return
            }
            if resyncs && !paused { machine.resume() }
            config.mode = mode
            emit(.event(TimedEvent(nanos: now, event: .modeChanged(mode, harvester.clearChunk))))
            if let resynced {
                note("dirty tracking on: \(resynced) pages written while untracked were copied, the vCPUs stopped for "
                     + formatNanos(monotonicNanos() - stopped))
            }
        case .setClearPolicy(let policy):
            guard policy != harvester.clearPolicy else { return }
            harvester.clearPolicy = policy
            config.clearPolicy = policy
            emit(.event(TimedEvent(nanos: now, event: .clearPolicyChanged(policy))))
        case .dropClearedBlocks(let slot):
            harvester.dropClearedBlocks(slot: slot)
            emit(.event(TimedEvent(nanos: now, event: .clearedBlocksDropped(slot: slot))))
        case .setClearChunk(let chunk):
            harvester.clearChunk = chunk
            config.clearChunk = chunk
            emit(.event(TimedEvent(nanos: now, event: .modeChanged(harvester.mode, chunk))))
        case .clearBlocks(let slot, let blocks):
            do {
                let result = try harvester.clearBlocks(slot: slot, blocks: blocks)
                emit(.event(TimedEvent(nanos: now, event: .blocksCleared(result))))
            } catch {
                note("clear failed: \(error)")
            }
        case .pause:
            guard !paused else { return }
            machine.pause()
            paused = true
            emit(.event(TimedEvent(nanos: now, event: .paused)))
        case .resume:
            guard paused else { return }
            if !verifying { machine.resume() }   // else the verification resumes it when done
            paused = false
            stepRequested = 0   // steps asked while paused were for this pause
            emit(.event(TimedEvent(nanos: now, event: .resumed)))
        case .step:
            if paused { stepRequested += 1 } else { note("step harvests one round while paused: press p first") }
        case .setWorkload(let workload):
            let defaults = WorkloadSettings.defaultParameters(for: workload)
            config.workload.workload = workload
            config.workload.param0 = defaults.0
            config.workload.param1 = defaults.1
            machine.setWorkload(config.workload)
            harvester.meter.resetBaselines()
            emit(.event(TimedEvent(nanos: now, event: .workloadChanged(config.workload))))
        case .scaleRate(let factor):
            let base = config.workload.rate == 0 ? 100_000 : Double(config.workload.rate)
            config.workload.rate = UInt64(min(1_000_000, max(10, (base * factor).rounded())))
            machine.setRate(config.workload.rate)
            emit(.event(TimedEvent(nanos: now, event: .workloadChanged(config.workload))))
        case .setIntervalNanos(let nanos):
            config.intervalNanos = nanos
            rescheduled = true   // the next round is due one new interval after the last one began
            machine.paceCapNanos = nanos
            emit(.event(TimedEvent(nanos: now, event: .intervalChanged(nanos: nanos))))
        case .setBandwidth(let bytes):
            guard bytes > 0 else { note("bandwidth must be above 0"); return }
            config.bandwidth = bytes
            harvester.bandwidth = bytes
            copyControl.changeBandwidth(bytes)   // and the copy in progress, if any, from now
            emit(.event(TimedEvent(nanos: now, event: .bandwidthChanged(bytesPerSecond: bytes))))
        case .restartGuest:
            if migration != nil { failMigration("the guest was restarted") }
            restart(reason: "restarted by the user")
        case .startRecording(let path):
            guard recorder == nil else { note("already recording to \(recorderPath)"); return }
            guard let factory = recorderFactory else { note("recording is not available in this session"); return }
            do {
                var header = info
                header.mode = harvester.mode
                header.clearChunk = harvester.clearChunk
                header.clearPolicy = harvester.clearPolicy
                header.workload = config.workload
                header.intervalNanos = config.intervalNanos
                header.bandwidth = config.bandwidth
                attachRecorder(try factory(path, header), path: path)
            } catch {
                note("cannot record to \(path): \(error)")
            }
        case .stopRecording:
            stopRecording()
        case .migrate(let plan):
            startMigration(plan)
        case .cancelMigration:
            guard let migration else { note("no migration in progress"); return }
            migration.cancel()   // the copy in progress fails at its next page; the round ends the migration
        }
    }

    // MARK: Migration

    /// The migration in progress: rounds run back to back, into its stream.
    private var migration: MigrationSource?
    /// The guest was migrated away: this VM stays stopped, nothing more is harvested.
    private var migratedAway = false
    /// The first migration round is followed by the bulk copy.
    private var bulkPending = false

    private func startMigration(_ asked: MigrationPlan) {
        var plan = asked
        if plan.to.isEmpty {
            guard let configured = config.migration else {
                note("no destination to migrate to: start with --migrate-to ADDR, a `dirtyscope receive --listen ADDR` there")
                return
            }
            plan = configured
        }
        guard migration == nil else { note("a migration to \(migration!.plan.to) is in progress"); return }
        guard !migratedAway else { note("the guest was migrated away: nothing left to migrate"); return }
        let setting = harvester.mode == .manual
            ? "\(HarvestSetting(mode: harvester.mode, policy: harvester.clearPolicy)) chunk \(harvester.clearChunk)"
            : harvester.mode.rawValue
        do {
            let m = try MigrationSource(plan: plan, harvester: harvester, setting: setting)
            m.attach()
            migration = m
            bulkPending = true
            emit(.event(TimedEvent(nanos: now, event: .migration(m.figures))))
        } catch {
            var failed = MigrationFigures(phase: .failed, to: plan.to, setting: setting)
            failed.reason = "\(error)"
            emit(.event(TimedEvent(nanos: now, event: .migration(failed))))
        }
    }

    /// After each round of a migration: the bulk copy after the first, the round's end
    /// told, and the switch-over once pre-copy is done.
    private func migrationRoundEnded(_ round: Round) {
        guard let m = migration else { return }
        do {
            if bulkPending {
                bulkPending = false
                try m.sendBulk()
            }
            guard try m.endRound(round) else { return }
            if !paused { machine.pause(reason: .verification) }
            let stoppedAt = monotonicNanos()
            let outcome: Result<MigrationFigures, SessionError>
            do { outcome = .success(try m.switchOver(stoppedAt: stoppedAt)) } catch { outcome = .failure(error) }
            if var last = m.lastRound {
                // The last dirty pages, harvested with the vCPUs stopped: a round like the others.
                harvesterRounds += 1
                last.metrics.index = roundBase + harvesterRounds
                emit(.round(last))
            }
            let figures = try outcome.get()
            migration = nil
            migratedAway = true
            // The guest runs at the destination now: this VM stays stopped for good.
            emit(.event(TimedEvent(nanos: now, event: .migration(figures))))
        } catch {
            failMigration("\(error)")
        }
    }

    /// Ends the migration in progress with `reason`: the destination told, the in-memory
    /// copy brought up to date with the vCPUs stopped, the guest running on here.
    private func failMigration(_ reason: String) {
        guard let m = migration else { return }
        migration = nil
        bulkPending = false
        let figures = m.fail(reason)
        machine.pause(reason: .verification)
        let resynced = harvester.retarget(.memory(harvester.destination))
        if !paused { machine.resume() }
        emit(.event(TimedEvent(nanos: now, event: .migration(figures))))
        note("the in-memory copy caught up: \(resynced) pages written during the migration were copied")
    }

    private func restart(reason: String) {
        machine.stop()
        let wasPaused = paused
        do {
            let m = try GuestMachine(system: system, config: config.machineConfig())
            let h = try Harvester(machine: m, mode: config.mode, clearChunk: config.clearChunk,
                                  clearPolicy: config.clearPolicy, method: config.falsePositiveMethod ?? .stamp, bandwidth: config.bandwidth, startNanos: startNanos)
            machine = m
            harvester = h
            migratedAway = false
            roundBase += harvesterRounds
            harvesterRounds = 0
            parkedAtLimit = false   // the new machine's vCPUs run until the limit check parks them
            ringMismatchesShown = 0
            clampsShown = 0
            wireMachine()
            m.start()
            if wasPaused { m.pause() }
            emit(.event(TimedEvent(nanos: now, event: .restarted(reason))))
        } catch {
            note("restart failed: \(error)")
        }
    }

    private func wireMachine() {
        machine.paceCapNanos = config.intervalNanos
        harvester.copyControl = copyControl
        machine.onFault = { [weak self] fault in self?.post(.guestFault(fault.description)) }
        machine.onRingFull = { [weak self] vcpu, dropped in
            if dropped > 0 { self?.post(.note("(\(dropped) ring-full reports dropped by the rate limit)")) }
            self?.post(.ringFull(vcpu: vcpu))
        }
        machine.onConsoleLine = { [weak self] line in self?.post(.note("guest: \(line)")) }
    }

    /// Queues an event from another thread (a vCPU's).
    private func post(_ event: SessionEvent) {
        lock.lock()
        pendingEvents.append(event)
        lock.broadcast()
        lock.unlock()
    }

    private func note(_ text: String) {
        emit(.event(TimedEvent(nanos: now, event: .note(text))))
    }

    private func stopRecording() {
        lock.lock()
        let r = recorder
        let path = recorderPath
        lock.unlock()
        guard let r else { return }
        emit(.event(TimedEvent(nanos: now, event: .recordingStopped(path: path))))
        lock.lock()
        recorder = nil
        lock.unlock()
        do { try r.finish() } catch { note("finishing \(path) failed: \(error)") }
    }

    private func flushRecorder() {
        lock.lock()
        let r = recorder
        lock.unlock()
        guard let r else { return }
        do { try r.flushIfDue() } catch { recordingFailed(r, error) }
    }

    /// A write to the recording failed (a full disk): recording stops, the file keeps what
    /// reached it, and the queues hear why and that it stopped (the UI drops its REC mark).
    private func recordingFailed(_ r: RecordSink, _ error: Error) {
        lock.lock()
        let queues = subscribers
        let path = recorderPath
        if recorder === r { recorder = nil }
        lock.unlock()
        for q in queues {
            q.push(.event(TimedEvent(nanos: now, event: .note("recording stopped: \(error)"))))
            q.push(.event(TimedEvent(nanos: now, event: .recordingStopped(path: path))))
        }
        try? r.finish()
    }

    private func emit(_ record: SessionRecord) {
        lock.lock()
        let queues = subscribers
        let r = recorder
        lock.unlock()
        for q in queues { q.push(record) }
        if let r {
            do { try r.append(record) } catch { recordingFailed(r, error) }
        }
    }
}

extension SessionCommand {
    /// Whether the command can act in the middle of a round without changing what the
    /// round counts: it steers the guest, the pace, the schedule or the recorder.
    var actsMidRound: Bool {
        switch self {
        case .pause, .resume, .step, .setWorkload, .scaleRate, .setIntervalNanos, .setBandwidth,
             .startRecording, .stopRecording, .cancelMigration:
            return true
        case .setMode, .setClearChunk, .setClearPolicy, .dropClearedBlocks, .clearBlocks, .restartGuest, .migrate:
            return false
        }
    }

    /// What the command asks for, in a few words (for "waits for this round to end").
    var summary: String {
        switch self {
        case .setMode(let mode): return "\(mode.rawValue) mode"
        case .setClearChunk(let chunk): return "clear chunk \(chunk)"
        case .setClearPolicy(let policy): return "clear policy \(policy.rawValue)"
        case .dropClearedBlocks(let slot): return "dropping the cleared blocks of slot \(slot)"
        case .clearBlocks(let slot, let blocks): return "CLEAR of \(blocks.count) block\(blocks.count == 1 ? "" : "s") in slot \(slot)"
        case .restartGuest: return "restart"
        case .pause: return "pause"
        case .resume: return "resume"
        case .step: return "one round"
        case .setWorkload(let w): return "workload \(w.rawValue)"
        case .scaleRate: return "write rate"
        case .setIntervalNanos: return "interval"
        case .setBandwidth: return "bandwidth"
        case .startRecording: return "recording"
        case .stopRecording: return "stopping the recording"
        case .migrate(let plan): return "migration to \(plan.to)"
        case .cancelMigration: return "cancelling the migration"
        }
    }
}

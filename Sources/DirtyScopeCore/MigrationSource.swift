import DirtyScopeModel
import DirtyScopeRecording
import KVM
import Pages

/// The source's side of a live migration, driven round by round by the session's
/// harvest thread: the harvester's copies go to the stream instead of the in-memory
/// destination, in the session's mode, clear policy and chunk, at its bandwidth.
///
/// 1. `begin`: connect, hello, a first round, then every resident page not yet sent (the
///    bulk copy), with the ground truth (`GroundTruth`) keeping each page's fingerprint
///    as sent.
/// 2. `endRound` after every pre-copy round: converged once the pages it reported could
///    be sent within the downtime limit at the rate the stream measured, or done at
///    `maxIterations`.
/// 3. `switchOver`, with the vCPUs stopped by the caller: the last dirty pages, the check
///    that no page changed without being reported (a lost write), the system slot, the
///    vCPUs' state, every page's hash for the destination to compare, and the resume there.
///
/// Any failure (the peer gone, a refusal, a lost page) ends it: the destination is told,
/// and `end` puts the in-memory destination back, so the session runs on as before.
final class MigrationSource {
    let plan: MigrationPlan
    private let harvester: Harvester
    private let sender: MigrationSender
    private let truth: GroundTruth
    private let sink: StreamSink
    private let started: UInt64
    private(set) var figures: MigrationFigures
    /// Pages and bytes of the round in progress, for the rate.
    private var roundStart: UInt64 = 0
    private var roundBytesBefore: UInt64 = 0
    /// The stream's rate as last measured: data bytes per second while a round copied.
    private(set) var rate: Double = 0
    /// The round the switch-over harvested with the vCPUs stopped (the last dirty pages).
    private(set) var lastRound: Round?
    /// Set by `cancel` from the harvest thread's mid-round commands.
    private var cancelled = false

    /// Connects and announces the guest; the destination builds its VM before this returns.
    init(plan: MigrationPlan, harvester: Harvester, setting: String) throws(SessionError) {
        guard harvester.mode.entry.tracks else {
            throw .invalidArgument("migrating needs dirty tracking: \(harvester.mode.rawValue) mode tracks nothing (switch to legacy, manual or ring)")
        }
        let address = try MigrationAddress(parsing: plan.to)
        self.plan = plan
        self.harvester = harvester
        started = monotonicNanos()
        figures = MigrationFigures(phase: .started, to: address.description, setting: setting)
        do {
            let channel = try MigrationChannel.connect(to: address)
            sender = MigrationSender(channel: channel, machine: harvester.machine)
            try sender.open()
        } catch {
            throw .migration(error)
        }
        truth = GroundTruth(slots: harvester.machine.dataSlots, method: harvester.method)
        sink = StreamSink(sender, truth: truth)
    }

    /// From now on the harvester's rounds go to the stream.
    func attach() {
        harvester.retarget(.stream(sink))
        roundStart = monotonicNanos()
        roundBytesBefore = sender.channel.bytesSent
    }

    /// After the first round: every resident page the stream has not carried yet.
    func sendBulk() throws(SessionError) {
        do { try harvester.sendUnsent(into: sink, truth: truth) } catch { throw .migration(error) }
    }

    /// After each pre-copy round (`round` its record): tells the destination the round
    /// ended, measures the rate, and says whether to switch over now.
    func endRound(_ round: Round) throws(SessionError) -> Bool {
        let fp = round[.falsePositivePages]
        figures.iterations += 1
        figures.falsePositivePages &+= fp
        do { try sender.endRound(UInt64(figures.iterations), falsePositives: fp) } catch { throw .migration(error) }
        let now = monotonicNanos()
        let bytes = sender.channel.bytesSent &- roundBytesBefore
        if now > roundStart, bytes > 0 { rate = Double(bytes) * 1e9 / Double(now - roundStart) }
        roundStart = now
        roundBytesBefore = sender.channel.bytesSent
        let remaining = round[.reportedPages]
        figures.remainingPages = remaining
        let expected = rate > 0 ? Double(remaining) * Double(PageSize.system) / rate * 1e9 : .infinity
        figures.converged = expected <= Double(plan.downtimeLimitNanos)
        return figures.converged || figures.iterations >= plan.maxIterations
    }

    /// The switch-over, with the vCPUs stopped by the caller since `stoppedAt`: returns the
    /// completed figures, or throws (the destination told to give up).
    func switchOver(stoppedAt: UInt64) throws(SessionError) -> MigrationFigures {
        let machine = harvester.machine
        let t0 = stoppedAt
        // The last dirty pages, as any round.
        let last = try harvester.harvestRound()
        lastRound = last
        figures.iterations += 1
        let lastFP = last[.falsePositivePages]
        figures.falsePositivePages &+= lastFP
        do { try sender.endRound(UInt64(figures.iterations), falsePositives: lastFP) } catch { throw .migration(error) }
        let t1 = monotonicNanos()
        figures.lastCopyNanos = t1 - t0
        // Nothing changed that was not sent: with the vCPUs stopped, every page's
        // fingerprint now against the one it was sent with.
        var lost: UInt64 = 0
        var blocks: [[Int]] = []
        for (i, s) in machine.dataSlots.enumerated() {
            let changed = truth.changedSinceSent(slot: i, source: s.memory).changed
            lost += UInt64(changed.count)
            var listed: [Int] = []
            changed.withUnsafeWords { words in
                for (b, w) in words.enumerated() where w != 0 && listed.count < Verification.maxListedBlocks { listed.append(b) }
            }
            blocks.append(listed)
        }
        let t2 = monotonicNanos()
        figures.checkNanos = t2 - t1
        figures.lostPages = lost
        if lost > 0 {
            figures.blocks = blocks
            throw .migration(MigrationError("\(lost) pages changed on the source without being reported: lost by the dirty tracking "
                                            + "(blocks \(Self.listBlocks(blocks)))"))
        }
        let states = try machine.captureVCPUStates()
        let t3 = monotonicNanos()
        figures.stateCaptureNanos = t3 - t2
        let verified: MigrationWire.Verified
        let times: (load: UInt64, resume: UInt64)
        do throws(MigrationError) {
            try sender.sendResident(slot: MigrationWire.systemSlot)
            try sender.sendStates(states)
            verified = try sender.switchOver()
            figures.differingPages = verified.differingPages
            if verified.differingPages > 0 {
                var perSlot = [[Int]](repeating: [], count: machine.dataSlots.count)
                for b in verified.blocks where Int(b.slot) < perSlot.count { perSlot[Int(b.slot)].append(Int(b.block)) }
                figures.blocks = perSlot
                throw MigrationError("\(verified.differingPages) pages differ between the two ends (blocks \(Self.listBlocks(perSlot)))")
            }
            let t4 = monotonicNanos()
            figures.transferNanos = t4 - t3
            times = try sender.resume()
        } catch {
            throw .migration(error)
        }
        let t5 = monotonicNanos()
        figures.loadNanos = times.load
        figures.resumeNanos = times.resume
        // The resume's round trip less the destination's own work is transfer too: the
        // parts add up to the downtime.
        let resumeTrip = t5 - (t3 + figures.transferNanos)
        figures.transferNanos += resumeTrip - min(resumeTrip, times.load + times.resume)
        figures.downtimeNanos = t5 - t0
        finishCounts()
        figures.phase = .completed
        sender.channel.close()
        return figures
    }

    /// Gives up at the next page sent: the round in progress fails, and with it the migration.
    func cancel() { sink.cancelled = true }

    /// Ends a failed migration: the destination told why (best effort), the stream
    /// closed, the figures as far as they went.
    func fail(_ reason: String) -> MigrationFigures {
        sender.abort(reason)
        sender.channel.close()
        finishCounts()
        figures.phase = .failed
        figures.reason = reason
        return figures
    }

    private func finishCounts() {
        figures.totalNanos = monotonicNanos() - started
        figures.pagesSent = sender.totalPages &+ sender.roundPages
        figures.zeroPages = sender.totalZeroPages &+ sender.roundZeroPages
        figures.bytesSent = sender.channel.bytesSent
        figures.falsePositiveBytes = figures.falsePositivePages &* UInt64(PageSize.system)
    }

    /// A few blocks of each slot, as "slot 0 #12, #13, slot 1 #4, ...".
    static func listBlocks(_ blocks: [[Int]]) -> String {
        var parts: [String] = []
        for (slot, list) in blocks.enumerated() where !list.isEmpty {
            parts.append("slot \(slot) " + list.prefix(4).map { "#\($0)" }.joined(separator: ", ") + (list.count > 4 ? ", ..." : ""))
        }
        return parts.prefix(4).joined(separator: "; ")
    }
}

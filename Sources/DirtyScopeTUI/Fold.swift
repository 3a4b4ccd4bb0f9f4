import DirtyScopeModel
import Pages

/// Folding the session's records into the state: the one path live rounds and replayed
/// rounds take, so a replay shows exactly what was shown live.
extension AppState {
    mutating func fold(_ record: SessionRecord) {
        switch record {
        case .round(let round): fold(round)
        case .event(let timed): fold(timed.event)
        }
        revision &+= 1
    }

    private mutating func fold(_ round: Round) {
        session.mode = round.mode
        session.clearChunk = round.clearChunk
        if round.mode == .manual { session.clearPolicy = round.clearPolicy }
        var bySlot = [SlotRound?](repeating: nil, count: session.slots.count)
        for slotRound in round.slots where slotRound.slot >= 0 && slotRound.slot < session.slots.count {
            bySlot[slotRound.slot] = slotRound
        }
        for i in session.slots.indices {
            let slotRound = bySlot[i] ?? SlotRound(slot: i, reported: DirtyBitmap(pageCount: session.slots[i].info.pages),
                                                   falsePositives: DirtyBitmap(pageCount: session.slots[i].info.pages))
            session.slots[i].fold(slotRound, round: round.index)
        }
        // The slots counted their bitmaps already; `Round`'s counts walk every word on each call.
        let counts = round.slots.map { s -> (reported: Int, falsePositives: Int) in
            guard s.slot >= 0, s.slot < session.slots.count, s.reported.pageCount == session.slots[s.slot].info.pages,
                  s.falsePositives.pageCount == s.reported.pageCount else {
                return (s.reportedCount, s.falsePositiveCount)
            }
            return (session.slots[s.slot].lastReported, session.slots[s.slot].lastFalsePositives)
        }
        let m = RoundMetrics(round, counts: counts)
        session.totals.add(m)
        session.bySetting[round.setting, default: SettingTotals()].add(m)

        let sinceLast = session.previousRoundStart.map { round.startNanos > $0 ? round.startNanos - $0 : 0 } ?? 0
        let seconds = Double(sinceLast > 0 ? sinceLast : max(1, round.durationNanos)) / 1e9
        let reported = m.reported, falsePositives = m.falsePositives
        let base = reported - m.initial
        let metrics = RoundReadout(
            index: round.index, reported: reported, falsePositives: falsePositives, missed: round.missed,
            falsePositiveRate: base > 0 ? Double(falsePositives) / Double(base) : 0,
            getLastNanos: round.getLatency.lastNanos, clearLastNanos: round.clearLatency.lastNanos,
            writeProtectFaultsPerSecond: Double(round.writeProtectFaults) / seconds,
            guestWritesPerSecond: Double(round.guestWrites) / seconds,
            copyMiBPerSecond: round.copyNanos > 0 ? Double(round.bytesCopied) / 1_048_576 / (Double(round.copyNanos) / 1e9) : 0,
            reportedPerSecond: Double(reported) / seconds)
        session.lastRound = metrics
        session.previousRoundStart = round.startNanos
        var mark: HistoryMark?
        if let last = session.lastSetting, last != round.setting { mark = .setting }
        else if session.clearSinceLastRound { mark = .clear }
        session.history.append(HistoryPoint(falsePositiveRate: metrics.falsePositiveRate,
                                            reportedPerSecond: metrics.reportedPerSecond, mark: mark))
        if session.history.count > historyRounds { session.history.removeFirst(session.history.count - historyRounds) }
        session.lastSetting = round.setting
        session.lastOrigins = round.origins
        session.clearSinceLastRound = false
    }

    private mutating func fold(_ event: SessionEvent) {
        switch event {
        case .modeChanged(let newMode, let chunk):
            session.mode = newMode
            session.clearChunk = chunk
            say("harvest mode now \(HarvestSetting(mode: newMode, policy: session.clearPolicy))"
                + (newMode == .manual ? ", clear chunk \(chunk): \(session.clearPolicy.explanation)" : ""), .good)
        case .clearPolicyChanged(let policy):
            session.clearPolicy = policy
            requestedPolicy = nil
            say("clear policy now \(policy.rawValue): \(policy.explanation)"
                + (session.mode == .manual ? "" : " (applies in manual mode: m)"), .good)
        case .clearedBlocksDropped(let slot):
            guard slot >= 0, slot < session.slots.count else { return }
            session.slots[slot].dropClear()
        case .workloadChanged(let settings):
            session.workload = settings
            say("workload now \(settings.summary)")
        case .intervalChanged(let nanos):
            session.intervalNanos = nanos
            say("harvest interval now \(Format.interval(nanos))")
        case .bandwidthChanged(let bytesPerSecond):
            session.bandwidth = bytesPerSecond
            say("bandwidth now \(Format.bandwidth(bytesPerSecond))")
        case .paused:
            session.paused = true
        case .resumed:
            session.paused = false
        case .blocksCleared(let clear):
            guard clear.slot >= 0, clear.slot < session.slots.count else { return }
            session.slots[clear.slot].noteClear(clear, afterRound: roundIndex)
            session.clearSinceLastRound = true
            let what = clear.pagesCleared.map { "KVM cleared \($0) dirty bits" }
                ?? "mask of \(clear.maskPages ?? clear.blocks.count * 64) pages"
            say("CLEAR slot \(clear.slot): \(clear.blocks.count) block\(clear.blocks.count == 1 ? "" : "s"), \(what), "
                + "\(clear.calls) call\(clear.calls == 1 ? "" : "s")", .good)
        case .verified(let verification):
            for i in session.slots.indices {
                let blocks = verification.missedBlocks.map { i < $0.count ? $0[i] : [] } ?? []
                session.slots[i].noteMissed(blocks)
            }
            say("verified \(verification.comparedPages) pages: \(verification.missed) missed",
                verification.missed == 0 ? .good : .alert)
        case .guestFault(let reason):
            session.fault = reason
        case .restarted(let reason):
            session.fault = nil
            say("guest restarted: \(reason)", .good)
        case .ringFull(let vcpu):
            say("vCPU \(vcpu): dirty ring full", .warn)
        case .recordingStarted where isReplay, .recordingStopped where isReplay:
            break  // a replay is not recording: the recorder's own events stay out of view
        case .recordingStarted(let path):
            session.recordingPath = path
            say("recording to \(path)", .good)
        case .recordingStopped(let path):
            session.recordingPath = nil
            say("recording saved: \(path)", .good)
        case .note(let text):
            say(text)
        }
    }
}

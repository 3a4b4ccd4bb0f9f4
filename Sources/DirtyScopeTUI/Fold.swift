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
        var bySlot = [Int?](repeating: nil, count: session.slots.count)
        for (k, slotMetrics) in round.slots.enumerated() where slotMetrics.slot >= 0 && slotMetrics.slot < session.slots.count {
            bySlot[slotMetrics.slot] = k
        }
        let sinceLast = session.previousRoundStart.map { round.startNanos > $0 ? round.startNanos - $0 : 0 } ?? 0
        let seconds = Double(sinceLast > 0 ? sinceLast : max(1, round[.durationNanos])) / 1e9
        for i in session.slots.indices {
            let bitmaps = bySlot[i].map { round.bitmaps[$0] } ?? SlotBitmaps(pages: session.slots[i].info.pages)
            session.slots[i].fold(bitmaps, round: round.index, seconds: seconds)
        }
        let values = round.values
        session.totals.add(values)
        session.bySetting[round.setting, default: MetricValues()].add(values)

        session.lastRound = round.metrics
        session.lastRoundSeconds = seconds
        session.previousRoundStart = round.startNanos
        var mark: HistoryMark?
        if let last = session.lastSetting, last != round.setting { mark = .setting }
        else if session.clearSinceLastRound { mark = .clear }
        session.history.append(HistoryPoint(falsePositiveFraction: values.falsePositiveFraction,
                                            reportedPerSecond: Double(values[.reportedPages]) / seconds, mark: mark,
                                            vcpus: round.metrics.vcpus, setting: round.setting))
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
            if requestedPause == true { requestedPause = nil }
        case .resumed:
            session.paused = false
            if requestedPause == false { requestedPause = nil }
        case .blocksCleared(let clear):
            guard clear.slot >= 0, clear.slot < session.slots.count else { return }
            session.slots[clear.slot].noteClear(clear, afterRound: roundIndex)
            session.clearSinceLastRound = true
            let what = clear.pagesCleared.map { "KVM cleared \($0) dirty bits" }
                ?? "mask of \(clear.maskPages ?? clear.blocks.count * DirtyBitmap.pagesPerBlock) pages"
            say("CLEAR slot \(clear.slot): \(clear.blocks.count) block\(clear.blocks.count == 1 ? "" : "s"), \(what), "
                + "\(clear.calls) call\(clear.calls == 1 ? "" : "s")", .good)
        case .verified(let verification):
            for i in session.slots.indices {
                let blocks = verification.missedBlocks.map { i < $0.count ? $0[i] : [] } ?? []
                session.slots[i].noteMissed(blocks)
            }
            say("verified \(verification.comparedPages) pages: \(verification.missed) missed",
                verification.missed == 0 ? .good : .alert, routine: verification.missed == 0)
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
        case .migration(let m):
            session.migration = m
            say(m.summary, m.phase == .failed ? .alert : .good)
        }
    }
}

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
        let before = session.totals
        session.totals.add(round)

        let sinceLast = session.previousRoundStart.map { round.startNanos > $0 ? round.startNanos - $0 : 0 } ?? 0
        let seconds = Double(sinceLast > 0 ? sinceLast : max(1, round.durationNanos)) / 1e9
        // The totals counted the bitmaps already; `Round`'s counts walk every word on each call.
        let reported = Int(session.totals.reported - before.reported)
        let falsePositives = Int(session.totals.falsePositives - before.falsePositives)
        let base = reported - Int(session.totals.initial - before.initial)
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
        append(metrics.falsePositiveRate, to: &session.falsePositiveHistory)
        append(metrics.reportedPerSecond, to: &session.dirtyHistory)
    }

    private func append(_ value: Double, to history: inout [Double]) {
        history.append(value)
        if history.count > historyRounds { history.removeFirst(history.count - historyRounds) }
    }

    private mutating func fold(_ event: SessionEvent) {
        switch event {
        case .modeChanged(let newMode, let chunk):
            session.mode = newMode
            session.clearChunk = chunk
            say("harvest mode now \(newMode.rawValue), clear chunk \(chunk)", .good)
        case .clearPolicyChanged(let policy):
            session.clearPolicy = policy
            say("clear policy now \(policy.rawValue): \(policy.explanation)", .good)
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
            say("CLEAR slot \(clear.slot): \(clear.blocks.count) blocks, "
                + (clear.pagesCleared.map { "\($0) pages cleared" } ?? "\(clear.maskPages ?? 0) pages in the mask")
                + ", \(clear.calls) calls", .good)
        case .verified(let verification):
            say("verified \(verification.comparedPages) pages: \(verification.missed) missed",
                verification.missed == 0 ? .good : .alert)
        case .guestFault(let reason):
            session.fault = reason
        case .restarted(let reason):
            session.fault = nil
            say("guest restarted: \(reason)", .good)
        case .ringFull(let vcpu):
            say("vCPU \(vcpu): dirty ring full", .warn)
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

import DirtyScopeModel

/// Plays a recording into the state: decodes rounds from the `RecordedSession` and
/// folds them with the same code a live session's records take.
///
/// A seek rebuilds the session view from the `historyRounds + 1` rounds before the
/// target (heat is zero after `heatRounds`, sparklines keep `historyRounds`), the settings
/// events before them, and the totals from `RecordedSession.totals(through:)`, so it
/// decodes 65 rounds; where a CLEAR is still in force it reaches back to the `heatRounds`
/// before that CLEAR (at most `clearReach` rounds), since its comparison counts every round
/// since. The FP totals per mode and policy come from the totals too: no round is decoded for them.
final class Replayer {
    let source: RecordedSession
    /// Recorded nanoseconds owed to playback since the last round was shown.
    private var owed: Double = 0
    private var lastTickNanos: UInt64?
    private var next: (events: [TimedEvent], round: Round)?

    init(_ source: RecordedSession) {
        self.source = source
    }

    /// Shows round `target` (0-based).
    func seek(_ target: Int, in state: inout AppState) throws {
        guard let position = state.replay?.position, target >= 0, target < source.roundCount else { return }
        next = nil
        owed = 0
        if target == position + 1 {
            fold(entry: try source.entry(at: target), into: &state)
        } else {
            state.session = SessionView(info: source.info)
            let first = max(0, target - historyRounds)
            // A CLEAR still in force compares its blocks over every round since it and the
            // `heatRounds` before it, so the refold starts there (within `clearReach` rounds).
            let clears = standingClears(before: target + 1)
            let start = clears.map(\.round).filter { target - $0 <= Self.clearReach }.map { max(0, $0 - heatRounds) }.min()
                .map { min($0, first) } ?? first
            // Settings changed before the refold still hold, and the last verification's missed
            // blocks stay marked; notes are transient and CLEARs come with their rounds.
            let earlier = source.events(before: start)
            let lastVerification = earlier.lastIndex { if case .verified = $0.event { return true } else { return false } }
            for (k, timed) in earlier.enumerated() {
                switch timed.event {
                case .blocksCleared, .note: continue
                case .verified where k != lastVerification: continue
                default: state.fold(.event(timed))
                }
            }
            // A CLEAR beyond reach shows its blocks with the rounds of the refold only.
            for clear in clears where clear.round < start { state.fold(.event(clear.event)) }
            // The first round's period runs from the start of the one before it, as when playing.
            if start > 0 { state.session.previousRoundStart = try source.metrics(at: start - 1).startNanos }
            for i in start...target { fold(entry: try source.entry(at: i), into: &state) }
            state.session.totals = source.totals(through: target)
            state.session.bySetting = totalsBySetting(through: target)
            state.message = nil
            state.waitingMessages.removeAll()
        }
        state.replay?.position = target
        if target == source.roundCount - 1 { finish(&state) }
    }

    /// Advances playback by the time since the last tick, at the replay's speed, keeping
    /// the recorded spacing of rounds (at most `historyRounds` rounds per tick).
    func tick(nanos: UInt64, state: inout AppState) throws {
        defer { lastTickNanos = nanos }
        guard let status = state.replay, status.playing, let last = lastTickNanos, nanos > last else { return }
        owed += Double(nanos - last) * status.speed
        for _ in 0..<historyRounds {
            guard let position = state.replay?.position, position + 1 < source.roundCount else { break }
            let upcoming = try next ?? source.entry(at: position + 1)
            let gap = position >= 0 ? gapNanos(from: state, to: upcoming.round) : 0
            guard owed >= gap else { next = upcoming; return }
            owed = position >= 0 ? owed - gap : 0  // the pace counts from the first round shown
            next = nil
            fold(entry: upcoming, into: &state)
            state.replay?.position = position + 1
            if position + 2 == source.roundCount {
                finish(&state)
                state.say("end of recording")
            }
        }
    }

    /// How many rounds back a seek refolds to rebuild a CLEAR's comparison.
    static let clearReach = 4096

    /// Per slot, the last CLEAR before round `end` that no later `x` dropped, with the
    /// position of the round it came before.
    private func standingClears(before end: Int) -> [(event: TimedEvent, round: Int)] {
        let events = source.events(before: end)
        var standing: [Int: Int] = [:]
        for (k, timed) in events.enumerated() {
            switch timed.event {
            case .blocksCleared(let clear): standing[clear.slot] = k
            case .clearedBlocksDropped(let slot): standing[slot] = nil
            default: break
            }
        }
        return standing.values.sorted().map { k in (events[k], round(holdingEvent: k, below: end)) }
    }

    /// The round (0-based, below `limit`) that event number `k` came before: the events of
    /// round i's entry are the first ones `events(before: i + 1)` holds.
    private func round(holdingEvent k: Int, below limit: Int) -> Int {
        var lo = 0, hi = max(0, limit - 1)
        while lo < hi {
            let mid = (lo + hi) / 2
            if source.eventCount(before: mid + 1) > k { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    /// The rounds (0-based) that come right after an event worth jumping to (`isLandmark`),
    /// in order, with those events; found once, by a binary search per event.
    private lazy var landmarks: [(round: Int, events: [SessionEvent])] = {
        let count = source.roundCount
        guard count > 0 else { return [] }
        var result: [(round: Int, events: [SessionEvent])] = []
        for (k, timed) in source.events(before: count).enumerated() where Self.isLandmark(timed.event) {
            let r = round(holdingEvent: k, below: count)
            if result.last?.round == r { result[result.count - 1].events.append(timed.event) } else { result.append((r, [timed.event])) }
        }
        return result
    }()

    /// Events a presenter looks for: settings changed, CLEARs, pauses, notes, faults, and
    /// verifications that found missed pages (not the routine ones, nor the recorder's own).
    static func isLandmark(_ event: SessionEvent) -> Bool {
        switch event {
        case .verified(let v): return v.missed > 0
        case .recordingStarted, .recordingStopped: return false
        default: return true
        }
    }

    /// An event in a few words, for the status line.
    static func describe(_ event: SessionEvent) -> String {
        switch event {
        case .modeChanged(let mode, let chunk): return "\(mode.rawValue) mode" + (mode == .manual ? ", chunk \(chunk)" : "")
        case .clearPolicyChanged(let policy): return "clear policy \(policy.rawValue)"
        case .workloadChanged(let w): return "workload \(w.summary)"
        case .intervalChanged(let nanos): return "interval \(Format.interval(nanos))"
        case .bandwidthChanged(let b): return "bandwidth \(Format.bandwidth(b))"
        case .paused: return "paused"
        case .resumed: return "resumed"
        case .blocksCleared(let c): return "CLEAR of \(c.blocks.count) block\(c.blocks.count == 1 ? "" : "s") in slot \(c.slot)"
        case .clearedBlocksDropped(let slot): return "cleared blocks of slot \(slot) dropped"
        case .verified(let v): return "verification: \(v.missed) missed"
        case .guestFault(let reason): return "guest fault: \(reason)"
        case .restarted(let reason): return "restarted: \(reason)"
        case .ringFull(let vcpu): return "vCPU \(vcpu): dirty ring full"
        case .recordingStarted(let path): return "recording to \(path)"
        case .recordingStopped(let path): return "recording saved: \(path)"
        case .note(let text): return text
        case .migration(let m): return m.summary
        }
    }

    /// The round of the next (`forward`) or previous event after or before `position`, and its events.
    func landmark(from position: Int, forward: Bool) -> (round: Int, events: [SessionEvent])? {
        forward ? landmarks.first { $0.round > position } : landmarks.last { $0.round < position }
    }

    /// The FP totals of each mode and policy over rounds `0...target`, without decoding a
    /// round: the settings events split the rounds, the checkpointed totals sum each part.
    private func totalsBySetting(through target: Int) -> [HarvestSetting: MetricValues] {
        let events = source.events(before: target + 1)
        var mode = source.info.mode, policy = source.info.clearPolicy
        var segments = [(start: 0, setting: HarvestSetting(mode: mode, policy: policy))]
        for (k, timed) in events.enumerated() {
            switch timed.event {
            case .modeChanged(let m, _): mode = m
            case .clearPolicyChanged(let p): policy = p
            default: continue
            }
            let setting = HarvestSetting(mode: mode, policy: policy)
            guard setting != segments[segments.count - 1].setting else { continue }
            let round = round(holdingEvent: k, below: target + 1)
            if segments[segments.count - 1].start == round { segments[segments.count - 1].setting = setting }
            else { segments.append((round, setting)) }
        }
        var result: [HarvestSetting: MetricValues] = [:]
        for (i, segment) in segments.enumerated() {
            let end = i + 1 < segments.count ? segments[i + 1].start - 1 : target
            guard end >= segment.start else { continue }
            let before = segment.start > 0 ? source.totals(through: segment.start - 1) : MetricValues()
            result[segment.setting, default: MetricValues()].add(source.totals(through: end).subtracting(before))
        }
        return result
    }

    /// At the last round: the events after it, and playback stops.
    private func finish(_ state: inout AppState) {
        for timed in source.trailingEvents { state.fold(.event(timed)) }
        state.replay?.playing = false
    }

    private func gapNanos(from state: AppState, to round: Round) -> Double {
        guard let previous = state.session.previousRoundStart, round.startNanos > previous else { return 0 }
        return Double(round.startNanos - previous)
    }

    private func fold(entry: (events: [TimedEvent], round: Round), into state: inout AppState) {
        for timed in entry.events { state.fold(.event(timed)) }
        state.fold(.round(entry.round))
    }
}

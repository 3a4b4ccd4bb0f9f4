import DirtyScopeModel
import Pages

/// Which picture the slot panels show.
enum HeatmapView: Equatable {
    /// Address space laid out in rows, colored by heat.
    case heatmap
    /// Address across, rounds down (newest on top), like DAMON's heatmaps.
    case time
}

/// Something that happened before a round, marked on the FP% history.
enum HistoryMark: Equatable {
    /// The mode or the clear policy changed.
    case setting
    /// A manual CLEAR (`c`).
    case clear
}

/// One round in the sparklines.
struct HistoryPoint: Equatable {
    var falsePositiveFraction: Double
    var reportedPerSecond: Double
    var mark: HistoryMark?
    /// What the guest paid this round, per vCPU (empty without a timeline), for the strip.
    var vcpus: [VCPUCost] = []
    /// The round's mode and policy.
    var setting: HarvestSetting? = nil
}

/// A line of text the user is typing a number into (`s`, `b`).
struct Prompt: Equatable {
    enum Kind: Equatable { case intervalMillis, bandwidthMiB }
    var kind: Kind
    var text = ""
}

/// A transient message on the status line.
struct Message: Equatable {
    var text: String
    var role: Role
    var untilNanos: UInt64
    /// When it went up; a message waiting behind it gets the line once it has had `minimumNanos`.
    var shownAt: UInt64 = 0
    /// Routine news (a verification that found nothing) never displaces another message.
    var routine = false

    static let normalNanos: UInt64 = 4_000_000_000
    /// Warnings and alerts stay longer.
    static let importantNanos: UInt64 = 8_000_000_000
    static let minimumNanos: UInt64 = 2_000_000_000
    /// Messages kept waiting at most; beyond that the oldest waiting one goes.
    static let queueLimit = 8
}

/// Where a replay stands.
struct ReplayStatus: Equatable {
    static let speeds: [Double] = [0.25, 0.5, 1, 2, 4, 8, 16]

    var roundCount: Int
    /// Round shown (0-based), -1 before the first.
    var position = -1
    var playing = false
    var speedIndex = 2

    var speed: Double { Self.speeds[speedIndex] }
}

/// Everything the UI shows, as a value: `handle(_:)` updates it, `Render.screen` draws it.
struct AppState: Equatable {
    let info: SessionInfo
    var replay: ReplayStatus?
    var width = 80
    var height = 24

    /// What the session reported: everything folded from records.
    var session: SessionView

    // What the user steers.
    var selectedSlot = 0
    var cursors: [Int]
    var selections: [DirtyBitmap]
    var rangeAnchor: Int?
    /// Index into `zoomLevels`.
    var zoom = 0
    var view = HeatmapView.heatmap
    /// The clear policy last asked for with `o`, until the session confirms it: quick
    /// presses step on from it rather than from the policy still in force.
    var requestedPolicy: ClearPolicy?
    /// The mode `u` left for untracked, to return to.
    var trackedMode: HarvestMode?
    /// Paused or running as last asked with `p`, until the session confirms it: `p p`
    /// pauses and resumes, and `n` right after `p` steps.
    var requestedPause: Bool?
    /// The false-positive overlay: on from the start, `f` hides it.
    var showFalsePositives = true
    /// The help page shown (0: keys and glyphs, then what each number means), nil when closed.
    var helpPage: Int?
    var prompt: Prompt?
    var message: Message?
    /// Messages that came while another had the line for less than `Message.minimumNanos`.
    var waitingMessages: [Message] = []
    var nowNanos: UInt64 = 0
    var wallSeconds: Double = 0
    /// Bumped whenever something visible changes; the loop redraws only then.
    var revision: UInt64 = 0

    /// Pages per cell when zoomed; nil fits the whole slot into its panel.
    static let zoomLevels: [Int?] = [nil, 64, 8, 1]

    init(info: SessionInfo, replayRounds: Int? = nil) {
        self.info = info
        replay = replayRounds.map { ReplayStatus(roundCount: $0) }
        session = SessionView(info: info)
        cursors = info.slots.map { _ in 0 }
        selections = info.slots.map { DirtyBitmap(pageCount: $0.blocks) }
    }

    var roundIndex: UInt64 { session.lastRound?.index ?? 0 }
    /// Mode and policy as the session now runs them.
    var setting: HarvestSetting { HarvestSetting(mode: session.mode, policy: session.clearPolicy) }
    var isReplay: Bool { replay != nil }
    var pagesPerZoomedCell: Int? { Self.zoomLevels[zoom] }

    /// Shows `text` on the status line for four seconds (eight for a warning or an alert).
    /// A message on the line keeps it for at least two seconds: one arriving sooner waits
    /// its turn, and a `routine` one is dropped rather than displace another (and gives way
    /// to any other at once).
    /// `now`: the answer to a key the user just pressed, shown at once.
    mutating func say(_ text: String, _ role: Role = .plain, routine: Bool = false, now: Bool = false) {
        let m = Message(text: text, role: role, untilNanos: 0, routine: routine)
        if !now, let current = message, nowNanos < current.untilNanos, !current.routine {
            if routine { return }
            if nowNanos &- current.shownAt < Message.minimumNanos || !waitingMessages.isEmpty {
                waitingMessages.append(m)
                if waitingMessages.count > Message.queueLimit { waitingMessages.removeFirst() }
                return
            }
        }
        show(m)
    }

    private mutating func show(_ m: Message) {
        var m = m
        m.shownAt = nowNanos
        m.untilNanos = nowNanos + (m.role == .warn || m.role == .alert ? Message.importantNanos : Message.normalNanos)
        message = m
    }

    /// On a tick: the message ends at its time, or hands the line to the next waiting one
    /// once it has had its minimum. Returns whether the line changed.
    mutating func advanceMessages() -> Bool {
        guard let current = message else { return false }
        let expired = nowNanos >= current.untilNanos
        if !waitingMessages.isEmpty, expired || nowNanos &- current.shownAt >= Message.minimumNanos {
            show(waitingMessages.removeFirst())
            return true
        }
        if expired { message = nil; return true }
        return false
    }

    /// Blocks selected in the current slot, including an open range.
    func selectedBlocks(slot: Int) -> DirtyBitmap {
        var selected = selections[slot]
        if slot == selectedSlot, let anchor = rangeAnchor {
            let cursor = cursors[slot]
            selected.set(min(anchor, cursor)..<(max(anchor, cursor) + 1))
        }
        return selected
    }
}

/// The session as its records told it: settings, the slots' heat, counts and history.
/// A replay seek rebuilds it from a window of rounds; the user's view settings stay.
struct SessionView: Equatable {
    var mode: HarvestMode
    var clearChunk: ClearChunk
    var clearPolicy: ClearPolicy
    var workload: WorkloadSettings
    var intervalNanos: UInt64
    var bandwidth: UInt64
    var paused = false
    var recordingPath: String?
    var fault: String?
    /// The last migration's figures: started (in progress), completed or failed.
    var migration: MigrationFigures?
    var slots: [SlotView]
    /// The last round's metrics, and the seconds since the round before it started (the
    /// rates' denominator).
    var lastRound: RoundMetrics?
    var lastRoundSeconds: Double = 1
    var totals = MetricValues()
    var previousRoundStart: UInt64?
    /// The last `historyRounds` rounds, oldest first, for the sparklines.
    var history: [HistoryPoint] = []
    /// Totals per mode and policy used in this session.
    var bySetting: [HarvestSetting: MetricValues] = [:]
    /// The last round's mode and policy, and where its false positives came from.
    var lastSetting: HarvestSetting?
    var lastOrigins = FalsePositiveOrigins()
    /// A CLEAR happened since the last round: the next history point is marked.
    var clearSinceLastRound = false

    init(info: SessionInfo) {
        mode = info.mode
        clearChunk = info.clearChunk
        clearPolicy = info.clearPolicy
        workload = info.workload
        intervalNanos = info.intervalNanos
        bandwidth = info.bandwidth
        slots = info.slots.map(SlotView.init)
    }
}

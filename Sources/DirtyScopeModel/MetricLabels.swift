/// What the outputs meant for people call each metric: `inspect`'s table, `bench`'s table
/// and the heatmap's panel all use these words, as the CSV and JSON outputs all use
/// `spec.name`. One label per metric, kept beside the table so a new metric needs one.
extension Metric {
    public var label: String {
        switch self {
        case .rounds: return "rounds"
        case .durationNanos: return "duration"
        case .reportedPages: return "reported"
        case .falsePositivePages: return "false pos"
        case .falsePositiveFraction: return "FP rate"
        case .falsePositivesRaced: return "raced"
        case .falsePositivesNeverCleared: return "never cleared"
        case .falsePositivesRewritten: return "rewritten"
        case .initialPages: return "initial"
        case .copiedPages: return "copied"
        case .copiedBytes: return "copied bytes"
        case .verifications: return "verifications"
        case .missedPages: return "missed"
        case .lostPages: return "lost"
        case .getDirtyLog: return "GET"
        case .clearDirtyLog: return "CLEAR"
        case .copyNanos: return "copy time"
        case .bookkeepingNanos: return "bookkeeping"
        case .guestWrites: return "guest writes"
        case .writeProtectFaults: return "WP faults"
        case .vcpuExits: return "exits"
        case .ringEntriesHarvested: return "ring entries"
        case .ringFullExits: return "ring full exits"
        case .guestStall: return "guest stall"
        case .guestStallGet: return "stall in GET"
        case .guestStallClear: return "stall in CLEAR"
        case .guestStallRing: return "stall in ring"
        case .guestStallCopy: return "stall in copy"
        case .guestStallVerify: return "stall verifying"
        case .guestStallOther: return "stall, other"
        case .guestStallCPUWait: return "stall, CPU wait"
        case .guestWorkNanos: return "guest work"
        case .guestTimedWrites: return "timed writes"
        case .guestCPUWaitNanos: return "CPU wait"
        case .guestThroughput: return "writes/s"
        case .guestTimelineLost: return "timeline lost"
        }
    }
}

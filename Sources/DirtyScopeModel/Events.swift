import Pages

/// The user cleared blocks by hand (`c` in the UI, or `Session.clearBlocks`).
public struct BlockClear: Equatable, Codable, Sendable {
    public var slot: Int
    /// Block indices (64 pages each), sorted and unique.
    public var blocks: [Int]
    /// `KVM_CLEAR_DIRTY_LOG` calls made (adjacent blocks are merged into one call).
    public var calls: Int
    /// Dirty bits KVM cleared: the pages a GET just before showed dirty inside the blocks,
    /// which is the mask passed. Nil in legacy mode, where userspace cannot see the bits
    /// set since the last GET (a GET would re-arm the whole slot), so the mask is every
    /// page of the blocks and KVM clears whichever of them are set.
    public var pagesCleared: Int?
    /// Pages set in the mask passed to the ioctl.
    public var maskPages: Int?
    public var pagesCopied: Int
    public var clearNanos: UInt64
    /// The mode and policy in force (nil in recordings made before they were kept).
    public var mode: HarvestMode?
    public var policy: ClearPolicy?

    public init(slot: Int, blocks: [Int], calls: Int, pagesCleared: Int?, maskPages: Int? = nil, pagesCopied: Int,
                clearNanos: UInt64, mode: HarvestMode? = nil, policy: ClearPolicy? = nil) {
        self.slot = slot
        self.blocks = blocks
        self.calls = calls
        self.pagesCleared = pagesCleared
        self.maskPages = maskPages
        self.pagesCopied = pagesCopied
        self.clearNanos = clearNanos
        self.mode = mode
        self.policy = policy
    }
}

/// Something that happened in a session besides a round.
public enum SessionEvent: Equatable, Codable, Sendable {
    case modeChanged(HarvestMode, ClearChunk)
    /// Manual mode's clear policy changed (it applies only in manual mode).
    case clearPolicyChanged(ClearPolicy)
    case workloadChanged(WorkloadSettings)
    case intervalChanged(nanos: UInt64)
    case bandwidthChanged(bytesPerSecond: UInt64)
    case paused
    case resumed
    case blocksCleared(BlockClear)
    /// The user dropped a slot's cleared blocks (`x`).
    case clearedBlocksDropped(slot: Int)
    case verified(Verification)
    /// The guest stopped with a fault (shutdown, internal error, failed entry, panic port).
    case guestFault(String)
    /// The guest (and VM) were restarted, with the reason.
    case restarted(String)
    /// A vCPU stopped because its dirty ring was full.
    case ringFull(vcpu: Int)
    case recordingStarted(path: String)
    case recordingStopped(path: String)
    case note(String)
    /// A migration started, completed or failed (`MigrationFigures`).
    case migration(MigrationFigures)
}

/// An event with the time it happened, nanoseconds since the session started.
public struct TimedEvent: Equatable, Codable, Sendable {
    public var nanos: UInt64
    public var event: SessionEvent

    public init(nanos: UInt64, event: SessionEvent) {
        self.nanos = nanos
        self.event = event
    }
}

/// What a session produces, in order: the stream the UI folds and the recorder writes.
public enum SessionRecord: Equatable, Sendable {
    case round(Round)
    case event(TimedEvent)
}

/// Commands the UI (or a test) sends to a live session.
public enum SessionCommand: Equatable, Sendable {
    case setMode(HarvestMode)
    case setClearChunk(ClearChunk)
    case setClearPolicy(ClearPolicy)
    /// Forget the blocks last cleared in a slot: no longer watched, nor cleared under the hand policy.
    case dropClearedBlocks(slot: Int)
    /// Clear these blocks of a slot with `KVM_CLEAR_DIRTY_LOG` and copy them.
    case clearBlocks(slot: Int, blocks: [Int])
    case pause
    case resume
    /// Harvest one round while paused.
    case step
    case setWorkload(Workload)
    /// Multiply the guest's write rate by this factor.
    case scaleRate(Double)
    case setIntervalNanos(UInt64)
    case setBandwidth(UInt64)
    case restartGuest
    case startRecording(path: String)
    case stopRecording
    /// Migrate the running guest: pre-copy rounds to another process, then the switch-over.
    case migrate(MigrationPlan)
    /// Give up the migration in progress: the guest runs on here.
    case cancelMigration
}

/// Where the UI sends commands. The live session implements it; a replay ignores
/// session commands and offers its own transport.
public protocol SessionController: AnyObject, Sendable {
    func send(_ command: SessionCommand)
}

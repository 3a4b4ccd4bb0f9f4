/// The harvest modes and clear policies as two tables, in the shape of the kernel
/// selftests' `log_modes[]`: each entry says what its mode or policy does, and the
/// harvester, the session, bench and the CLI read the entry instead of switching on the
/// mode. A new mode or policy is a new entry (and the few lines that act on a new trait).
public struct HarvestModeEntry: Sendable, Equatable {
    /// Where a round's reports come from.
    public enum Source: Sendable, Equatable {
        /// KVM_GET_DIRTY_LOG per memslot.
        case dirtyLog
        /// Every vCPU's dirty ring, then KVM_RESET_DIRTY_RINGS.
        case rings
        /// Nothing: dirty logging is off on the data slots.
        case none
    }

    public let mode: HarvestMode
    public let source: Source
    /// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is on while the mode harvests: GET leaves
    /// protection alone, KVM_CLEAR_DIRTY_LOG re-arms it, and the clear policies apply.
    public let manualProtect: Bool
    /// The KVM capability the host must offer, by name (nil: every KVM has the mode).
    public let capability: String?
    /// One line for help and `caps`.
    public let summary: String

    /// The mode is fixed when the VM is made: dirty rings are enabled before vCPUs exist,
    /// so switching to or from it needs a new VM.
    public var fixedAtCreation: Bool { source == .rings }
    /// GET itself write-protects what it returns, so the race window opens at GET.
    public var getProtects: Bool { source == .dirtyLog && !manualProtect }
    /// KVM_CLEAR_DIRTY_LOG can be called (it is refused while dirty rings are on).
    public var canClear: Bool { source == .dirtyLog }
    /// The data slots log dirty pages (KVM_MEM_LOG_DIRTY_PAGES) in this mode.
    public var tracks: Bool { source != .none }

    public static let table: [HarvestModeEntry] = [
        HarvestModeEntry(mode: .legacy, source: .dirtyLog, manualProtect: false, capability: nil,
                         summary: "KVM_GET_DIRTY_LOG returns and write-protects in one step"),
        HarvestModeEntry(mode: .manual, source: .dirtyLog, manualProtect: true,
                         capability: "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2",
                         summary: "GET leaves protection alone; KVM_CLEAR_DIRTY_LOG re-arms it as the clear policy says"),
        HarvestModeEntry(mode: .ring, source: .rings, manualProtect: false, capability: "KVM_CAP_DIRTY_LOG_RING",
                         summary: "per-vCPU dirty rings, collected and reset each round"),
        HarvestModeEntry(mode: .untracked, source: .none, manualProtect: false, capability: nil,
                         summary: "no dirty tracking: the baseline for what tracking costs the guest"),
    ]
}

extension HarvestMode {
    /// This mode's entry in `HarvestModeEntry.table`.
    public var entry: HarvestModeEntry { HarvestModeEntry.table.first { $0.mode == self }! }
}

/// When manual mode's KVM_CLEAR_DIRTY_LOG calls happen, as one entry per policy.
public struct ClearPolicyEntry: Sendable, Equatable {
    /// Which reported pages of a chunk are cleared just before the chunk is copied.
    public enum BeforeCopy: Sendable, Equatable {
        case nothing
        /// Every reported page (the seed patch's order).
        case allReported
        /// Only the reported pages inside the blocks the user cleared with `c`.
        case userBlocks
    }

    public let policy: ClearPolicy
    /// CLEAR each slot's reports right after its GET, before any copy.
    public let clearsAtGet: Bool
    public let beforeCopy: BeforeCopy
    /// CLEAR each slot's reports once the whole slot is copied; writes in between are lost,
    /// and the harvester looks for them.
    public let clearsAfterCopy: Bool

    public static let table: [ClearPolicyEntry] = [
        ClearPolicyEntry(policy: .auto, clearsAtGet: false, beforeCopy: .allReported, clearsAfterCopy: false),
        ClearPolicyEntry(policy: .hand, clearsAtGet: false, beforeCopy: .userBlocks, clearsAfterCopy: false),
        ClearPolicyEntry(policy: .afterCopy, clearsAtGet: false, beforeCopy: .nothing, clearsAfterCopy: true),
        ClearPolicyEntry(policy: .atGet, clearsAtGet: true, beforeCopy: .nothing, clearsAfterCopy: false),
    ]

    /// What a mode without manual protect does: no CLEAR at all.
    public static let noClear = ClearPolicyEntry(policy: .auto, clearsAtGet: false, beforeCopy: .nothing, clearsAfterCopy: false)
}

extension ClearPolicy {
    /// This policy's entry in `ClearPolicyEntry.table`.
    public var entry: ClearPolicyEntry { ClearPolicyEntry.table.first { $0.policy == self }! }
}

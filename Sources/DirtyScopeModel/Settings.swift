import Pages
/// How dirty pages are harvested from KVM each round.
public enum HarvestMode: String, CaseIterable, Codable, Sendable {
    /// `KVM_GET_DIRTY_LOG`, which returns the bitmap and write-protects in one step.
    case legacy
    /// Manual protect (`KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`): GET, then
    /// `KVM_CLEAR_DIRTY_LOG` per chunk just before the chunk is copied.
    case manual
    /// Per-vCPU dirty rings (`KVM_CAP_DIRTY_LOG_RING[_ACQ_REL]`).
    case ring
    /// No dirty tracking: the data slots log nothing and nothing is harvested or copied.
    /// The reference for what tracking costs the guest.
    case untracked
}

/// Who runs `KVM_CLEAR_DIRTY_LOG` in manual mode, and when: the order the seed patch
/// prescribes, and the orders it exists to prevent. Legacy and ring mode ignore it.
public enum ClearPolicy: String, CaseIterable, Codable, Sendable {
    /// CLEAR each chunk just before it is copied (the seed's order).
    case auto
    /// The harvester never clears on its own: only blocks the user cleared (`c`) are
    /// re-protected, each round just before their copy. Every other page GET has ever
    /// reported stays set and writable, so GET reports it again and again.
    case hand
    /// The wrong order: copy a chunk, then CLEAR it. A guest write between the copy and
    /// the CLEAR is lost; the verifier counts it as missed.
    case afterCopy = "after-copy"
    /// CLEAR the whole slot right after GET, before any copy: legacy's window with
    /// manual's ioctls.
    case atGet = "at-get"

    /// Parses "auto", "hand", "after-copy" or "at-get"; throws a message naming the value and what is allowed.
    public init(parsing text: String) throws(ModelError) {
        guard let p = ClearPolicy(rawValue: text) else {
            throw ModelError("clear policy '\(text)' is not one of \(Self.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = p
    }

    /// The next policy in the cycle the UI's key steps through.
    public var next: ClearPolicy {
        let all = Self.allCases
        return all[(all.firstIndex(of: self)! + 1) % all.count]
    }

    /// One line for help and panels: who clears, and when.
    public var explanation: String {
        switch self {
        case .auto: return "CLEAR each chunk just before its copy"
        case .hand: return "only blocks you clear (c) are re-protected"
        case .afterCopy: return "copy, then CLEAR: writes in between are lost"
        case .atGet: return "CLEAR all right after GET: legacy's window"
        }
    }
}

/// A harvest mode with its clear policy, as one label ("legacy", "manual/hand"): the key
/// the UI and `inspect` total false positives by.
public struct HarvestSetting: Hashable, Codable, Sendable, Comparable, CustomStringConvertible {
    public var mode: HarvestMode
    /// The policy; `.auto` outside manual mode, where it does not apply.
    public var policy: ClearPolicy

    public init(mode: HarvestMode, policy: ClearPolicy) {
        self.mode = mode
        self.policy = mode.entry.manualProtect ? policy : .auto
    }

    public var description: String { mode.entry.manualProtect ? "\(mode.rawValue)/\(policy.rawValue)" : mode.rawValue }

    public static func < (a: Self, b: Self) -> Bool {
        let modes = HarvestMode.allCases, policies = ClearPolicy.allCases
        return (modes.firstIndex(of: a.mode)!, policies.firstIndex(of: a.policy)!)
            < (modes.firstIndex(of: b.mode)!, policies.firstIndex(of: b.policy)!)
    }
}

/// The granularity of `KVM_CLEAR_DIRTY_LOG` calls in manual mode.
public enum ClearChunk: Equatable, Hashable, Codable, Sendable, CustomStringConvertible {
    /// Chunks of this many pages (a positive multiple of 64).
    case pages(Int)
    /// One call per memslot.
    case wholeSlot

    /// Parses "64", "4096" or "slot"; throws a message naming the value and what is allowed.
    public init(parsing text: String) throws(ModelError) {
        if text == "slot" || text == "whole" { self = .wholeSlot; return }
        guard let n = Int(text) else {
            throw ModelError("clear chunk '\(text)' is not a number of pages or 'slot'")
        }
        guard n > 0, n % DirtyBitmap.pagesPerBlock == 0 else {
            throw ModelError("clear chunk \(n) is not a positive multiple of 64 pages (allowed: 64, 128, ..., or 'slot')")
        }
        self = .pages(n)
    }

    /// Pages per chunk for a slot of `slotPages` pages (rounded up to whole blocks).
    public func pages(forSlotOf slotPages: Int) -> Int {
        switch self {
        case .pages(let n): return n
        case .wholeSlot: return max(DirtyBitmap.pagesPerBlock, DirtyBitmap.blocks(covering: slotPages) * DirtyBitmap.pagesPerBlock)
        }
    }

    public var description: String {
        switch self {
        case .pages(let n): return "\(n)"
        case .wholeSlot: return "slot"
        }
    }

    /// JSON: "slot" or the pages as a number in a string ("64"), as on the command line.
    /// Recordings before the metric table wrote `{"pages":{"_0":64}}` and `{"wholeSlot":{}}`,
    /// which still decode.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    public init(from decoder: Decoder) throws {
        if let text = try? decoder.singleValueContainer().decode(String.self) {
            if text == "slot" { self = .wholeSlot; return }
            guard let n = Int(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "clear chunk '\(text)' is not a number of pages or 'slot'"))
            }
            self = .pages(n)
            return
        }
        let c = try decoder.container(keyedBy: LegacyKeys.self)
        if c.contains(.wholeSlot) { self = .wholeSlot; return }
        self = .pages(try c.nestedContainer(keyedBy: LegacyPayload.self, forKey: .pages).decode(Int.self, forKey: ._0))
    }

    private enum LegacyKeys: String, CodingKey { case pages, wholeSlot }
    private enum LegacyPayload: String, CodingKey { case _0 }
}

/// The built-in guest's workloads (ds_workload in Guests/include/dirtyscope_abi.h).
public enum Workload: String, CaseIterable, Codable, Sendable {
    case sweep, random, hotset, stripes, wave, idle

    /// The value of `enum ds_workload`.
    public var abiValue: UInt32 {
        switch self {
        case .idle: return 0
        case .sweep: return 1
        case .random: return 2
        case .hotset: return 3
        case .stripes: return 4
        case .wave: return 5
        }
    }

    /// Key `1`...`6` in the TUI.
    public static let byKey: [Workload] = [.sweep, .random, .hotset, .stripes, .wave, .idle]
}

/// Everything that steers the guest's writes; the host may change it while the guest runs.
public struct WorkloadSettings: Equatable, Codable, Sendable {
    public var workload: Workload
    /// Writes per second per vCPU; 0 means as fast as the guest can.
    public var rate: UInt64
    /// Workload parameters: hotset (hot pages, percent hot), stripes (stride, -),
    /// wave (window pages, step pages); ignored by the others.
    public var param0: UInt64
    public var param1: UInt64
    public var seed: UInt64

    public init(workload: Workload, rate: UInt64 = 4000, param0: UInt64? = nil, param1: UInt64? = nil, seed: UInt64 = 1) {
        self.workload = workload
        self.rate = rate
        let defaults = WorkloadSettings.defaultParameters(for: workload)
        self.param0 = param0 ?? defaults.0
        self.param1 = param1 ?? defaults.1
        self.seed = seed
    }

    /// Sensible parameters per workload.
    public static func defaultParameters(for workload: Workload) -> (UInt64, UInt64) {
        switch workload {
        case .hotset: return (512, 90)
        case .stripes: return (8, 0)
        case .wave: return (4096, 512)
        default: return (0, 0)
        }
    }

    /// A short description, e.g. "hotset 512p/90% @4000/s".
    public var summary: String {
        let rateText = rate == 0 ? "max" : "\(rate)/s"
        switch workload {
        case .hotset: return "hotset \(param0)p/\(param1)% @\(rateText)"
        case .stripes: return "stripes 1/\(param0) @\(rateText)"
        case .wave: return "wave \(param0)p+\(param1) @\(rateText)"
        default: return "\(workload.rawValue) @\(rateText)"
        }
    }
}

/// How false positives are recognised.
public enum FalsePositiveMethod: String, CaseIterable, Codable, Sendable {
    /// Compare the guest's stamp at the start of the page with the destination's copy.
    case stamp
    /// Compare the whole page with the destination (for guests that do not stamp).
    case content
}

/// A message for bad input, naming the value and the limit.
public struct ModelError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

import Pages
/// One memslot the session watches.
public struct SlotInfo: Equatable, Codable, Sendable {
    /// Position in the session's slot list (0-based), as shown to the user.
    public var index: Int
    /// KVM slot id.
    public var kvmSlot: UInt32
    public var guestPhysicalAddress: UInt64
    public var pages: Int

    public init(index: Int, kvmSlot: UInt32, guestPhysicalAddress: UInt64, pages: Int) {
        self.index = index
        self.kvmSlot = kvmSlot
        self.guestPhysicalAddress = guestPhysicalAddress
        self.pages = pages
    }

    /// 64-page blocks in the slot.
    public var blocks: Int { DirtyBitmap.blocks(covering: pages) }
}

/// What a session is: written as a recording's header, shown in the UI's header line.
public struct SessionInfo: Equatable, Codable, Sendable {
    public var toolVersion: String
    /// `uname -r` of the host that ran the guest.
    public var hostKernel: String
    /// Host page size in bytes.
    public var pageSize: Int
    public var slots: [SlotInfo]
    public var vcpus: Int
    /// "workload" for the built-in guest, or the file name of a user's guest.
    public var guestName: String
    /// KVM capabilities that matter to dirty tracking, by name (for example
    /// "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2" -> 3).
    public var capabilities: [String: Int]
    /// Settings in force when the session started.
    public var mode: HarvestMode
    public var clearChunk: ClearChunk
    /// Manual mode's clear policy at the start (`.auto` in files made before it was kept).
    public var clearPolicy: ClearPolicy
    public var workload: WorkloadSettings
    /// Harvest interval in nanoseconds; 0 means back to back.
    public var intervalNanos: UInt64
    /// Consumer bandwidth in bytes per second.
    public var bandwidth: UInt64
    /// Dirty ring size in entries per vCPU (ring mode), else 0.
    public var ringEntries: Int
    public var falsePositiveMethod: FalsePositiveMethod
    /// Wall-clock start, seconds since the Unix epoch.
    public var startTime: Double

    public init(toolVersion: String, hostKernel: String, pageSize: Int, slots: [SlotInfo], vcpus: Int,
                guestName: String, capabilities: [String: Int], mode: HarvestMode, clearChunk: ClearChunk,
                clearPolicy: ClearPolicy = .auto, workload: WorkloadSettings, intervalNanos: UInt64, bandwidth: UInt64, ringEntries: Int,
                falsePositiveMethod: FalsePositiveMethod, startTime: Double) {
        self.toolVersion = toolVersion
        self.hostKernel = hostKernel
        self.pageSize = pageSize
        self.slots = slots
        self.vcpus = vcpus
        self.guestName = guestName
        self.capabilities = capabilities
        self.mode = mode
        self.clearChunk = clearChunk
        self.clearPolicy = clearPolicy
        self.workload = workload
        self.intervalNanos = intervalNanos
        self.bandwidth = bandwidth
        self.ringEntries = ringEntries
        self.falsePositiveMethod = falsePositiveMethod
        self.startTime = startTime
    }

    private enum CodingKeys: String, CodingKey {
        case toolVersion, hostKernel, pageSize, slots, vcpus, guestName, capabilities, mode, clearChunk, clearPolicy
        case workload, intervalNanos, bandwidth, ringEntries, falsePositiveMethod, startTime
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        toolVersion = try c.decode(String.self, forKey: .toolVersion)
        hostKernel = try c.decode(String.self, forKey: .hostKernel)
        pageSize = try c.decode(Int.self, forKey: .pageSize)
        slots = try c.decode([SlotInfo].self, forKey: .slots)
        vcpus = try c.decode(Int.self, forKey: .vcpus)
        guestName = try c.decode(String.self, forKey: .guestName)
        capabilities = try c.decode([String: Int].self, forKey: .capabilities)
        mode = try c.decode(HarvestMode.self, forKey: .mode)
        clearChunk = try c.decode(ClearChunk.self, forKey: .clearChunk)
        clearPolicy = try c.decodeIfPresent(ClearPolicy.self, forKey: .clearPolicy) ?? .auto
        workload = try c.decode(WorkloadSettings.self, forKey: .workload)
        intervalNanos = try c.decode(UInt64.self, forKey: .intervalNanos)
        bandwidth = try c.decode(UInt64.self, forKey: .bandwidth)
        ringEntries = try c.decode(Int.self, forKey: .ringEntries)
        falsePositiveMethod = try c.decode(FalsePositiveMethod.self, forKey: .falsePositiveMethod)
        startTime = try c.decode(Double.self, forKey: .startTime)
    }

    /// Total guest memory in the watched slots, in bytes.
    public var totalBytes: UInt64 { slots.reduce(0) { $0 + UInt64($1.pages) * UInt64(pageSize) } }
}

import Pages

/// The largest session DirtyScope runs, and so the largest a replay file may describe.
/// The command line refuses more, the writer never writes more, and the reader refuses a
/// header that claims more before it allocates anything (FORMAT.md, "Limits").
public enum SessionLimits {
    /// vCPUs: the guest ABI's `DS_MAX_VCPUS` (one control block entry and stack each).
    public static let maxVCPUs = 64
    /// Memslots: the guest ABI's `DS_MAX_REGIONS`.
    public static let maxSlots = 32
    /// Pages in all slots together. Guest data lies between `DS_DATA_GPA` (1 GiB) and
    /// `DS_MAX_GPA` (254 GiB), which is under 2^26 pages of 4 KiB; one bitmap of this
    /// many pages is 8 MiB.
    public static let maxTotalPages = 1 << 26
    /// Host page sizes: powers of two from 4 KiB to 64 KiB.
    public static let pageSizes = 4096...65536
    /// Dirty ring entries per vCPU (the kernel's `KVM_DIRTY_RING_MAX_ENTRIES`).
    public static let maxRingEntries = 65536
    /// Rounds one session harvests: 2^40 (over 3 years at one round a millisecond).
    public static let maxRounds: UInt64 = 1 << 40
    /// Longest guest name, tool version or kernel release in a header, in bytes.
    public static let maxNameBytes = 4096
    /// Most capabilities a header lists.
    public static let maxCapabilities = 256

    /// Fewest dirty ring entries per vCPU: KVM wants a ring of at least a page of 16-byte
    /// `kvm_dirty_gfn` entries (256 with 4 KiB pages).
    public static var minRingEntries: Int { PageSize.system / 16 }

    /// The one ring-size rule (the config, bench and the command line all ask it): a power
    /// of two from `minRingEntries` to `hostMax` (the kernel's maximum unless the host's is
    /// known). The error names the value and the range.
    public static func checkRingEntries(_ entries: Int, hostMax: Int = maxRingEntries) throws(ModelError) {
        let most = min(hostMax, maxRingEntries)
        guard entries >= minRingEntries, entries <= most, entries & (entries - 1) == 0 else {
            throw ModelError("ring size \(entries) entries is not a power of two from \(minRingEntries) to \(most)"
                             + (hostMax < maxRingEntries ? " (this host's maximum)" : " (the kernel's maximum)"))
        }
    }
}

extension SessionInfo {
    /// Checks every count and size against `SessionLimits`; the error names the field,
    /// its value and the limit. Arithmetic here cannot overflow: each page count is
    /// checked before it is added.
    public func checkLimits() throws(ModelError) {
        guard SessionLimits.pageSizes.contains(pageSize), pageSize & (pageSize - 1) == 0 else {
            throw ModelError("page size \(pageSize) is not a power of two in \(SessionLimits.pageSizes.lowerBound)...\(SessionLimits.pageSizes.upperBound)")
        }
        guard slots.count <= SessionLimits.maxSlots else {
            throw ModelError("\(slots.count) slots (at most \(SessionLimits.maxSlots))")
        }
        var total = 0
        for (i, slot) in slots.enumerated() {
            guard slot.pages >= 0, slot.pages <= SessionLimits.maxTotalPages - total else {
                throw ModelError("slot \(i) has \(slot.pages) pages; all slots together may have at most \(SessionLimits.maxTotalPages) (\(total) before it)")
            }
            total += slot.pages
        }
        guard vcpus >= 1, vcpus <= SessionLimits.maxVCPUs else {
            throw ModelError("\(vcpus) vCPUs (allowed 1...\(SessionLimits.maxVCPUs))")
        }
        guard ringEntries >= 0, ringEntries <= SessionLimits.maxRingEntries else {
            throw ModelError("ring size \(ringEntries) entries (allowed 0...\(SessionLimits.maxRingEntries))")
        }
        if case .pages(let n) = clearChunk, n <= 0 || n > SessionLimits.maxTotalPages {
            throw ModelError("clear chunk \(n) pages (allowed 1...\(SessionLimits.maxTotalPages))")
        }
        for (name, value) in [("guest name", guestName), ("tool version", toolVersion), ("host kernel", hostKernel)]
        where value.utf8.count > SessionLimits.maxNameBytes {
            throw ModelError("\(name) is \(value.utf8.count) bytes (at most \(SessionLimits.maxNameBytes))")
        }
        guard capabilities.count <= SessionLimits.maxCapabilities else {
            throw ModelError("\(capabilities.count) capabilities (at most \(SessionLimits.maxCapabilities))")
        }
        guard startTime.isFinite, abs(startTime) < 1e12 else {
            throw ModelError("start time \(startTime) s is not a date (allowed within 10^12 s of 1970)")
        }
    }
}

extension SessionEvent {
    /// Checks the counts an event carries against `SessionLimits` (slots, vCPUs, pages,
    /// blocks); the error names the field, its value and the limit.
    public func checkLimits() throws(ModelError) {
        let maxBlocks = SessionLimits.maxTotalPages / 64
        func check(_ v: Int, _ limit: Int, _ what: String) throws(ModelError) {
            guard v >= 0, v <= limit else { throw ModelError("\(what) \(v) is outside 0...\(limit)") }
        }
        switch self {
        case .modeChanged(_, .pages(let n)):
            try check(n, SessionLimits.maxTotalPages, "clear chunk")
        case .blocksCleared(let c):
            try check(c.slot, SessionLimits.maxSlots - 1, "cleared slot")
            try check(c.blocks.count, maxBlocks, "cleared block count")
            for b in c.blocks { try check(b, maxBlocks - 1, "cleared block") }
            try check(c.calls, maxBlocks, "clear calls")
            if let n = c.pagesCleared { try check(n, SessionLimits.maxTotalPages, "pages cleared") }
            if let n = c.maskPages { try check(n, SessionLimits.maxTotalPages, "pages in the CLEAR mask") }
            try check(c.pagesCopied, SessionLimits.maxTotalPages, "pages copied")
        case .verified(let v):
            try check(v.missedPerSlot.count, SessionLimits.maxSlots, "verified slot count")
            for m in v.missedPerSlot { try check(m, SessionLimits.maxTotalPages, "missed pages") }
            if let lists = v.missedBlocks {
                try check(lists.count, SessionLimits.maxSlots, "missed-block lists")
                for list in lists {
                    try check(list.count, Verification.maxListedBlocks, "missed blocks listed")
                    for b in list { try check(b, maxBlocks - 1, "missed block") }
                }
            }
            try check(v.comparedPages, SessionLimits.maxTotalPages, "compared pages")
        case .clearedBlocksDropped(let slot):
            try check(slot, SessionLimits.maxSlots - 1, "dropped slot")
        case .ringFull(let vcpu):
            try check(vcpu, SessionLimits.maxVCPUs - 1, "ring-full vCPU")
        default:
            break
        }
    }
}

import Pages
import DirtyScopeModel

/// Pages per slot, from the header: bounds every count and bitmap in a round record.
struct SlotLayout {
    let pages: [Int]

    /// Checks the header against `SessionLimits` first, so every size below is bounded.
    init(_ info: SessionInfo) throws(FormatViolation) {
        do {
            try info.checkLimits()
        } catch {
            throw FormatViolation(error.description)
        }
        pages = info.slots.map(\.pages)
    }

    var count: Int { pages.count }
    func words(_ slot: Int) -> Int { DirtyBitmap.blocks(covering: pages[slot]) }
}

/// The metrics part of a round record (FORMAT.md, "Round payload"): a sequence number,
/// a field-presence mask, then only the fields that are not zero.
enum RoundCodec {
    /// Checks that `m` fits the layout; the writer refuses rounds that fail, the reader
    /// treats them as corrupt, so every count later summed is small and non-negative.
    static func check(_ m: RoundMetrics, _ layout: SlotLayout) throws(FormatViolation) {
        var seen = [Bool](repeating: false, count: layout.count)
        for s in m.slots {
            guard s.slot >= 0, s.slot < layout.count else {
                throw FormatViolation("slot \(s.slot) is not in the header's \(layout.count) slots")
            }
            guard !seen[s.slot] else { throw FormatViolation("slot \(s.slot) appears twice") }
            seen[s.slot] = true
            let pages = layout.pages[s.slot]
            for metric in Metric.perSlot {
                try inRange(s[metric], pages, "slot \(s.slot) \(metric.spec.name)")
            }
            if m.verification == nil, s[.missedPages] != 0 {
                throw FormatViolation("slot \(s.slot) missed \(s[.missedPages]) pages in a round that did not verify")
            }
        }
        for latency in [m.getDirtyLog, m.clearDirtyLog, m.guestStall] {
            guard latency.histogram.count <= Format.maxHistogramBuckets else {
                throw FormatViolation("latency histogram has \(latency.histogram.count) buckets (at most \(Format.maxHistogramBuckets))")
            }
            try inRange(latency.count, Format.maxLatencyCalls, "latency call count")
            var calls: UInt64 = 0
            for n in latency.histogram {
                let (sum, overflow) = calls.addingReportingOverflow(n)
                guard !overflow, sum <= latency.count else {
                    throw FormatViolation("latency histogram counts add up to more than its \(latency.count) calls")
                }
                calls = sum
            }
        }
        if case .pages(let n) = m.clearChunk { try inRange(n, SessionLimits.maxTotalPages, "clear chunk") }
        if let v = m.verification {
            for missed in v.missedPerSlot { try inRange(missed, SessionLimits.maxTotalPages, "verification missed count") }
            try inRange(v.comparedPages, SessionLimits.maxTotalPages, "verification compared pages")
        }
        guard m.vcpus.count <= SessionLimits.maxVCPUs else {
            throw FormatViolation("\(m.vcpus.count) vCPU costs (at most \(SessionLimits.maxVCPUs))")
        }
        var vcpuSeen = Set<Int>()
        for v in m.vcpus {
            guard v.vcpu >= 0, v.vcpu < SessionLimits.maxVCPUs, vcpuSeen.insert(v.vcpu).inserted else {
                throw FormatViolation("vCPU \(v.vcpu) in the round's guest costs is out of range or repeated")
            }
        }
    }

    static func encode(_ m: RoundMetrics, sequence: UInt64, into o: inout ByteWriter) {
        o.varint(sequence)
        var mask: UInt64 = 0
        if m.index != 0 { mask |= RoundField.index }
        if m.startNanos != 0 { mask |= RoundField.startNanos }
        for metric in Metric.roundFields where m[metric] != 0 { mask |= RoundField.bit(metric) }
        if m.getDirtyLog != LatencyStats() { mask |= RoundField.bit(.getDirtyLog) }
        if m.clearDirtyLog != LatencyStats() { mask |= RoundField.bit(.clearDirtyLog) }
        if m.guestStall != LatencyStats() { mask |= RoundField.bit(.guestStall) }
        if !m.vcpus.isEmpty { mask |= RoundField.vcpus }
        if m.verification != nil { mask |= RoundField.verification }
        if !m.origins.isEmpty { mask |= RoundField.origins }
        o.varint(mask)
        // Mode in the low 2 bits; above them 0 for a whole slot, 1 for a chunk size that
        // follows, or k >= 2 for a chunk of 64 * (k - 1) pages. Manual mode with a clear
        // policy other than auto takes mode code 3, the policy in the next 2 bits and the
        // chunk code above them: no byte more for the common chunk sizes.
        let chunkCode: UInt64
        switch m.clearChunk {
        case .wholeSlot: chunkCode = 0
        case .pages(let n) where n > 0 && n % DirtyBitmap.pagesPerBlock == 0: chunkCode = UInt64(n / DirtyBitmap.pagesPerBlock + 1)
        case .pages: chunkCode = 1
        }
        // Modes past the 2-bit codes take mode 3 with policy 0 (never written before):
        // the extended form, a varint mode code and a varint policy code following.
        let policy = m.setting.policy
        if let code = modeCode(m.mode) {
            if policy == .auto {
                o.varint(chunkCode << 2 | code)
            } else {
                o.varint((chunkCode << 2 | policyCode(policy)) << 2 | manualWithPolicy)
            }
        } else {
            o.varint((chunkCode << 2) << 2 | manualWithPolicy)
            o.varint(extendedModeCode(m.mode))
            o.varint(policyCode(policy))
        }
        if chunkCode == 1, case .pages(let n) = m.clearChunk { o.zigzag(n) }
        if m.index != 0 { o.varint(m.index) }
        if m.startNanos != 0 { o.varint(m.startNanos) }
        for metric in RoundField.early where m[metric] != 0 { o.varint(m[metric]) }
        if mask & RoundField.bit(.getDirtyLog) != 0 { encode(m.getDirtyLog, into: &o) }
        if let v = m.verification {
            o.varint(UInt64(v.missedPerSlot.count))
            for missed in v.missedPerSlot { o.zigzag(missed) }
            o.zigzag(v.comparedPages)
        }
        if mask & RoundField.bit(.clearDirtyLog) != 0 { encode(m.clearDirtyLog, into: &o) }
        if mask & RoundField.origins != 0 {
            o.varint(UInt64(m.origins.neverCleared))
            let nonzero = m.origins.byWindow.indices.filter { m.origins.byWindow[$0] != 0 }
            o.varint(UInt64(nonzero.count))
            var next = 0
            for i in nonzero {
                o.varint(UInt64(i - next))
                o.varint(UInt64(m.origins.byWindow[i]))
                next = i + 1
            }
        }
        for metric in RoundField.late where m[metric] != 0 { o.varint(m[metric]) }
        for metric in RoundField.lateLatencies where mask & RoundField.bit(metric) != 0 { encode(m.values.latency(metric), into: &o) }
        if mask & RoundField.vcpus != 0 {
            o.varint(UInt64(m.vcpus.count))
            for v in m.vcpus {
                o.varint(UInt64(v.vcpu) << 3 | UInt64(v.mainCause.map { $0.rawValue + 1 } ?? 0))
                for n in [v.writes, v.workNanos, v.stallNanos, v.cpuWaitNanos] { o.varint(n) }
            }
        }
        o.varint(UInt64(m.slots.count))
        for s in m.slots {
            // A verifying round stores each slot's missed count, zero included.
            var flags: UInt8 = 0
            for metric in Metric.perSlot where s[metric] != 0 || (metric == .missedPages && m.verification != nil) {
                flags |= metric.slotBit!
            }
            o.varint(UInt64(s.slot) << SlotField.bits | UInt64(flags))
            for metric in Metric.perSlot where flags & metric.slotBit! != 0 { o.varint(UInt64(s[metric])) }
        }
    }

    /// Reads a round's sequence number and metrics, and checks them against the layout.
    static func decode(_ r: inout ByteReader, _ layout: SlotLayout) throws(FormatViolation) -> (sequence: UInt64, metrics: RoundMetrics) {
        let sequence = try r.varint()
        let mask = try r.varint()
        guard mask & ~RoundField.all == 0 else { throw FormatViolation("unknown round fields 0x\(String(mask, radix: 16))") }
        var modeAndChunk = try r.varint()
        var policy = ClearPolicy.auto
        var extended: HarvestMode?
        if modeAndChunk & 3 == manualWithPolicy {
            let code = modeAndChunk >> 2 & 3
            if code == 0 {
                let m = try Self.mode(extended: r.varint())
                // The extended form is only for the modes without a 2-bit code.
                guard modeCode(m) == nil else { throw FormatViolation("harvest mode \(m.rawValue) stored in the extended form") }
                extended = m
                policy = try self.policy(r.varint())
            } else {
                policy = try self.policy(code)
            }
            modeAndChunk = (modeAndChunk >> 4) << 2 | modeCode(.manual)!
        }
        let mode: HarvestMode
        if let extended { mode = extended } else { mode = try Self.mode(modeAndChunk & 3) }
        let chunk: ClearChunk
        switch modeAndChunk >> 2 {
        case 0: chunk = .wholeSlot
        case 1: chunk = .pages(try r.zigzag())
        case let k:
            guard k <= UInt64(Int.max / DirtyBitmap.pagesPerBlock) else { throw FormatViolation("clear chunk code \(k) is too large") }
            chunk = .pages(DirtyBitmap.pagesPerBlock * Int(k - 1))
        }
        var m = RoundMetrics(mode: mode, clearChunk: chunk, clearPolicy: policy)
        if mask & RoundField.index != 0 { m.index = try r.varint() }
        if mask & RoundField.startNanos != 0 { m.startNanos = try r.varint() }
        for metric in RoundField.early where mask & RoundField.bit(metric) != 0 { m[metric] = try r.varint() }
        if mask & RoundField.bit(.getDirtyLog) != 0 { m.getDirtyLog = try latency(&r) }
        if mask & RoundField.verification != 0 {
            // Each entry takes at least a byte, so the count is bounded by what remains.
            let n = try r.count(upTo: SessionLimits.maxSlots, "verification slot count")
            var missed: [Int] = []
            missed.reserveCapacity(n)
            for _ in 0..<n { missed.append(try r.zigzag()) }
            m.verification = Verification(missedPerSlot: missed, comparedPages: try r.zigzag())
        }
        if mask & RoundField.bit(.clearDirtyLog) != 0 { m.clearDirtyLog = try latency(&r) }
        // A round's pages are at most those of the header's slots (which total at most
        // SessionLimits.maxTotalPages): so are its false positives and lost pages.
        let roundPages = layout.pages.reduce(0, +)
        if mask & RoundField.origins != 0 {
            m.origins.neverCleared = try r.count(upTo: roundPages, "never-cleared false positives")
            let buckets = FalsePositiveOrigins.bucketCount
            let nonzero = try r.count(upTo: buckets, "false-positive window buckets")
            var next = 0
            for _ in 0..<nonzero {
                guard next < buckets else { throw FormatViolation("window buckets run past \(buckets)") }
                let i = next + (try r.count(upTo: buckets - 1 - next, "window bucket"))
                m.origins.byWindow[i] = try r.count(upTo: roundPages, "false positives in window bucket \(i)")
                next = i + 1
            }
        }
        for metric in RoundField.late where mask & RoundField.bit(metric) != 0 {
            // Counts of pages are bounded by the header's pages; times and counts of events are any varint.
            m[metric] = metric.spec.unit == .pages ? UInt64(try r.count(upTo: roundPages, metric.spec.name)) : try r.varint()
        }
        for metric in RoundField.lateLatencies where mask & RoundField.bit(metric) != 0 {
            switch metric {
            case .guestStall: m.guestStall = try latency(&r)
            default: throw FormatViolation("no field for latency \(metric.spec.name)")
            }
        }
        if mask & RoundField.vcpus != 0 {
            let n = try r.count(upTo: SessionLimits.maxVCPUs, "vCPU cost count")
            var costs: [VCPUCost] = []
            costs.reserveCapacity(n)
            for _ in 0..<n {
                let head = try r.varint()
                guard head >> 3 < UInt64(SessionLimits.maxVCPUs) else { throw FormatViolation("vCPU \(head >> 3) is beyond \(SessionLimits.maxVCPUs)") }
                let cause = head & 7
                guard cause <= UInt64(GuestStallCause.allCases.count) else { throw FormatViolation("unknown stall cause \(cause)") }
                costs.append(VCPUCost(vcpu: Int(head >> 3), writes: try r.varint(), workNanos: try r.varint(),
                                      stallNanos: try r.varint(), cpuWaitNanos: try r.varint(),
                                      mainCause: cause == 0 ? nil : GuestStallCause(rawValue: Int(cause) - 1)))
            }
            m.vcpus = costs
        }
        let slotCount = try r.count(upTo: layout.count, "slot count")
        var slots: [SlotMetrics] = []
        slots.reserveCapacity(slotCount)
        for _ in 0..<slotCount {
            let slotAndFlags = try r.varint()
            let flags = UInt8(slotAndFlags & ((1 << SlotField.bits) - 1))
            guard slotAndFlags >> SlotField.bits < UInt64(layout.count) else {
                throw FormatViolation("slot \(slotAndFlags >> SlotField.bits) is not in the header's \(layout.count) slots")
            }
            let slot = Int(slotAndFlags >> SlotField.bits)
            var s = SlotMetrics(slot: slot)
            for metric in Metric.perSlot where flags & metric.slotBit! != 0 {
                let v = try r.count(upTo: SessionLimits.maxTotalPages, "slot \(slot) \(metric.spec.name)")
                // Missed is stored at every verification, zero included; the others only when not zero.
                guard v != 0 || metric == .missedPages else { throw FormatViolation("slot \(slot) stores a zero it should have left out") }
                s[metric] = v
            }
            if flags & SlotField.watched != 0 {
                // Written by versions before the metric table: blocks, reported and false
                // positives in the blocks cleared last. Read and dropped.
                for what in ["blocks", "reported", "false positives"] {
                    _ = try r.count(upTo: SessionLimits.maxTotalPages, "slot \(slot) watched \(what)")
                }
            }
            slots.append(s)
        }
        m.slots = slots
        try check(m, layout)
        return (sequence, m)
    }

    private static func encode(_ l: LatencyStats, into o: inout ByteWriter) {
        o.varint(l.count)
        o.varint(l.totalNanos)
        o.varint(l.maxNanos)
        o.varint(l.lastNanos)
        o.varint(UInt64(l.histogram.count))
        let nonzero = l.histogram.indices.filter { l.histogram[$0] != 0 }
        o.varint(UInt64(nonzero.count))
        var next = 0
        for i in nonzero {
            o.varint(UInt64(i - next))
            o.varint(l.histogram[i])
            next = i + 1
        }
    }

    private static func latency(_ r: inout ByteReader) throws(FormatViolation) -> LatencyStats {
        var l = LatencyStats()
        l.count = try r.varint()
        l.totalNanos = try r.varint()
        l.maxNanos = try r.varint()
        l.lastNanos = try r.varint()
        let buckets = try r.count(upTo: Format.maxHistogramBuckets, "histogram length")
        let nonzero = try r.count(upTo: buckets, "nonzero histogram buckets")
        l.histogram = [UInt64](repeating: 0, count: buckets)
        var next = 0
        for _ in 0..<nonzero {
            guard next < buckets else { throw FormatViolation("histogram buckets run past its length \(buckets)") }
            let i = next + (try r.count(upTo: buckets - 1 - next, "histogram bucket"))
            l.histogram[i] = try r.varint()
            next = i + 1
        }
        return l
    }

    private static func inRange(_ v: Int, _ limit: Int, _ what: String) throws(FormatViolation) {
        guard v >= 0, v <= limit else { throw FormatViolation("\(what) \(v) is outside 0...\(limit)") }
    }

    private static func inRange(_ v: UInt64, _ limit: Int, _ what: String) throws(FormatViolation) {
        guard v <= UInt64(limit) else { throw FormatViolation("\(what) \(v) exceeds \(limit)") }
    }

    /// A mode's 2-bit code, or nil for the modes that need the extended form.
    private static func modeCode(_ mode: HarvestMode) -> UInt64? {
        switch mode {
        case .legacy: return 0
        case .manual: return 1
        case .ring: return 2
        case .untracked: return nil
        }
    }

    /// A mode's code in the extended form.
    private static func extendedModeCode(_ mode: HarvestMode) -> UInt64 {
        switch mode {
        case .legacy: return 0
        case .manual: return 1
        case .ring: return 2
        case .untracked: return 3
        }
    }

    private static func mode(extended code: UInt64) throws(FormatViolation) -> HarvestMode {
        switch code {
        case 0: return .legacy
        case 1: return .manual
        case 2: return .ring
        case 3: return .untracked
        default: throw FormatViolation("unknown harvest mode \(code)")
        }
    }

    /// The mode code of manual mode with a clear policy other than auto.
    private static let manualWithPolicy: UInt64 = 3

    private static func policyCode(_ policy: ClearPolicy) -> UInt64 {
        switch policy {
        case .auto: return 0
        case .hand: return 1
        case .afterCopy: return 2
        case .atGet: return 3
        }
    }

    private static func policy(_ code: UInt64) throws(FormatViolation) -> ClearPolicy {
        switch code {
        case 0: return .auto
        case 1: return .hand
        case 2: return .afterCopy
        case 3: return .atGet
        default: throw FormatViolation("unknown clear policy \(code)")
        }
    }

    private static func mode(_ code: UInt64) throws(FormatViolation) -> HarvestMode {
        switch code {
        case 0: return .legacy
        case 1: return .manual
        case 2: return .ring
        default: throw FormatViolation("unknown harvest mode \(code)")
        }
    }
}

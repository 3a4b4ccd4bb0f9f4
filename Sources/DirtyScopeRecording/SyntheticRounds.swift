import DirtyScopeModel
import Pages

/// Bitmap shapes like the built-in guest's workloads, for tests and the benchmark.
public enum SyntheticShape: String, CaseIterable, Sendable {
    /// A few hundred hot pages in one region, 90% of them dirty each round, plus scattered
    /// cold pages; a tenth of the reported pages are false positives.
    case hotset
    /// A contiguous run of pages that moves on by its length each round.
    case sweep
    /// Every 8th page across a range, 95% of them dirty each round.
    case stripes
    /// Nothing dirty.
    case idle
}

/// A deterministic stream of rounds of one shape over a session's slots, with realistic
/// metrics: latencies with histograms, copy counts, a verification every 16th round.
public struct SyntheticRounds {
    public let shape: SyntheticShape
    public let info: SessionInfo
    private var random: SplitMix64
    private var next: UInt64 = 1

    public init(shape: SyntheticShape, info: SessionInfo, seed: UInt64 = 1) {
        self.shape = shape
        self.info = info
        random = SplitMix64(seed: seed)
    }

    /// A session with `slots` slots of `pagesPerSlot` pages each (host page size).
    public static func sessionInfo(slots: Int, pagesPerSlot: Int, mode: HarvestMode = .manual) -> SessionInfo {
        SessionInfo(toolVersion: "synthetic", hostKernel: "synthetic", pageSize: PageSize.system,
                    slots: (0..<slots).map {
                        SlotInfo(index: $0, kvmSlot: UInt32($0), guestPhysicalAddress: UInt64($0) << 32, pages: pagesPerSlot)
                    },
                    vcpus: 2, guestName: "workload", capabilities: ["KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2": 3],
                    mode: mode, clearChunk: .pages(4096), workload: WorkloadSettings(workload: .hotset),
                    intervalNanos: 10_000_000, bandwidth: 1 << 30, ringEntries: 0,
                    falsePositiveMethod: .stamp, startTime: 1_700_000_000)
    }

    /// The next round.
    public mutating func nextRound() -> Round {
        let index = next
        next += 1
        // Manual rounds step through the clear policies.
        let policy = ClearPolicy.allCases[Int(index / 7) % ClearPolicy.allCases.count]
        // Now and then a round of the untracked baseline (the extended mode encoding).
        let untracked = shape != .idle && index % 23 == 0
        var m = RoundMetrics(mode: untracked ? .untracked : info.mode, clearChunk: info.clearChunk, clearPolicy: policy)
        var slots: [SlotMetrics] = []
        var bitmaps: [SlotBitmaps] = []
        for slot in info.slots {
            var reported = DirtyBitmap(pageCount: slot.pages)
            if !untracked { fill(&reported, round: Int(index)) }
            var falsePositives = DirtyBitmap(pageCount: slot.pages)
            let fpPercent: UInt64 = shape == .hotset ? 10 : 2
            reported.forEachSetPage { page in
                if random.next() % 100 < fpPercent { falsePositives[page] = true }
            }
            let count = reported.count
            if !untracked { m.getDirtyLog.record(20_000 + random.next() % 200_000) }
            if count > 0 { m.clearDirtyLog.record(5_000 + random.next() % 50_000) }
            slots.append(SlotMetrics(slot: slot.index, [.initialPages: index == 1 ? count / 2 : 0, .copiedPages: count]))
            bitmaps.append(SlotBitmaps(reported: reported, falsePositives: falsePositives))
        }
        m.slots = slots
        m.index = index
        m.startNanos = index * 10_000_000 + random.next() % 1000
        if index % 16 == 0 && !untracked {
            m.verification = Verification(missedPerSlot: info.slots.map { _ in 0 }, comparedPages: info.slots.reduce(0) { $0 + $1.pages })
        }
        var round = Round(counting: m, bitmaps: bitmaps)
        let copied = UInt64(round.count(.copiedPages))
        round[.durationNanos] = 1_000_000 + random.next() % 2_000_000
        round[.copiedBytes] = copied * UInt64(info.pageSize)
        round[.copyNanos] = copied * 300
        round[.bookkeepingNanos] = 20_000 + random.next() % 10_000
        round[.guestWrites] = copied * 3
        round[.writeProtectFaults] = copied
        round[.vcpuExits] = 10 + random.next() % 5
        round[.lostPages] = info.mode == .manual && policy == .afterCopy ? index % 3 : 0
        // False positives split between two race windows and, under hand, bits never cleared.
        let fps = round.count(.falsePositivePages)
        if info.mode == .manual && policy == .hand {
            round.origins.neverCleared = fps
        } else if fps > 0 {
            let short = Int(random.next() % UInt64(fps + 1))
            round.origins.byWindow[2] = short
            round.origins.byWindow[12] = fps - short
        }
        // What the guest paid: a writing guest's timeline, two vCPUs, a stall or two.
        if shape != .idle {
            let work = 190_000_000 + random.next() % 10_000_000
            let writes = 40_000 + random.next() % 4_000
            var stalls: UInt64 = 0
            for _ in 0..<(random.next() % 3) {
                let stall = 50_000 + random.next() % 2_000_000
                round.metrics.guestStall.record(stall)
                stalls += stall
            }
            let get = stalls / 3
            round[.guestStallGet] = get
            round[.guestStallCopy] = stalls - get
            round[.guestStallCPUWait] = stalls / 2
            round[.guestWorkNanos] = work
            round[.guestTimedWrites] = writes
            round[.guestCPUWaitNanos] = work / 20
            round.metrics.vcpus = [
                VCPUCost(vcpu: 0, writes: writes / 2, workNanos: work / 2, stallNanos: stalls, cpuWaitNanos: work / 40,
                         mainCause: stalls > 0 ? .copy : nil),
                VCPUCost(vcpu: 1, writes: writes - writes / 2, workNanos: work - work / 2, cpuWaitNanos: work / 40),
            ]
        }
        return round
    }

    private mutating func fill(_ bitmap: inout DirtyBitmap, round: Int) {
        let pages = bitmap.pageCount
        guard pages > 0 else { return }
        switch shape {
        case .hotset:
            let hot = min(512, max(1, pages / 8))
            let base = pages / 4
            for page in base..<min(pages, base + hot) where random.next() % 10 != 0 { bitmap[page] = true }
            for _ in 0..<min(64, pages / 16) { bitmap[Int(random.next() % UInt64(pages))] = true }
        case .sweep:
            let run = min(4096, max(1, pages / 8))
            let start = (round * run) % pages
            bitmap.set(start..<min(pages, start + run))
        case .stripes:
            let range = min(65_536, pages / 2)
            for page in stride(from: 0, to: range, by: 8) where random.next() % 20 != 0 { bitmap[page] = true }
        case .idle:
            break
        }
    }
}

/// Sebastiano Vigna's SplitMix64: tiny, fast, deterministic.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

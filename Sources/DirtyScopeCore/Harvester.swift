import DirtyScopeModel
import KVM
#if canImport(Glibc)
import Glibc
#endif

/// Turns KVM's dirty logs into ground-truth numbers. Each round it harvests every data
/// slot in the current mode, copies the reported pages into the destination at the
/// consumer's bandwidth, and classifies each against the guest's stamps (or content).
///
/// Modes, as the kernel selftests keep them, one entry each:
/// - legacy: KVM_GET_DIRTY_LOG per slot (bitmap and write protection in one step), copy.
/// - manual: KVM_GET_DIRTY_LOG per slot, then per chunk KVM_CLEAR_DIRTY_LOG just
///   before that chunk is copied.
/// - ring: collect every vCPU's dirty ring, KVM_RESET_DIRTY_RINGS, copy.
///
/// Not thread-safe: one harvesting thread owns it.
public final class Harvester {
    public let machine: GuestMachine
    public private(set) var mode: HarvestMode
    public var clearChunk: ClearChunk
    public var method: FalsePositiveMethod
    /// Consumer bandwidth in bytes per second; 0 copies as fast as memcpy goes.
    public var bandwidth: UInt64
    /// Set from another thread to make a paced copy finish at once (a stop request).
    public var copyStop = CopyStop()
    let destination: Destination
    /// The blocks the user last cleared, per slot, as a page mask (for `SlotRound.watched`).
    private var watched: [(mask: DirtyBitmap, blocks: Int)?]
    private var roundIndex: UInt64 = 0
    private let startNanos: UInt64
    private var lastWrites: UInt64 = 0
    /// When `lastWrites` was read: bounds the next count of guest-written writes.
    private var lastWritesAt: UInt64 = 0
    private var lastFaults: UInt64 = 0
    private var lastExits: UInt64 = 0
    private var lastRingFull: UInt64 = 0
    /// Ring entries the kernel reset that differ from the entries harvested (should stay 0).
    public private(set) var ringResetMismatches: UInt64 = 0
    /// The last mismatch: entries the kernel reset, entries harvested.
    public private(set) var lastRingResetMismatch: (reset: Int, harvested: UInt64)?
    private let pageSize = PageSize.system

    /// The vCPU statistics read as write-protect faults, and as exits.
    static let faultStats = ["pf_taken"]
    static let exitStats = ["exits"]

    public init(machine: GuestMachine, mode: HarvestMode, clearChunk: ClearChunk, method: FalsePositiveMethod,
                bandwidth: UInt64, startNanos: UInt64 = monotonicNanos()) throws(SessionError) {
        self.machine = machine
        self.mode = mode
        self.clearChunk = clearChunk
        self.method = method
        self.bandwidth = bandwidth
        self.startNanos = startNanos
        do {
            destination = try Destination(slots: machine.dataSlots)
        } catch {
            throw .kvm(error)
        }
        watched = Array(repeating: nil, count: machine.dataSlots.count)
        if mode == .ring && machine.rings.isEmpty {
            throw .invalidArgument("ring mode needs a VM built with dirty rings (ringEntries > 0)")
        }
        if mode != .ring && !machine.rings.isEmpty {
            throw .invalidArgument("a VM with dirty rings can only be harvested in ring mode")
        }
        if mode == .manual && !machine.vm.manualProtect.contains(.enable) {
            try setManualProtect(true)
        }
        lastWrites = machine.guestWrites
        lastWritesAt = monotonicNanos()
        lastFaults = machine.vcpuStatSum(Self.faultStats)
        lastExits = machine.vcpuStatSum(Self.exitStats)
    }

    // MARK: Mode

    /// Switches between legacy and manual while the guest runs (KVM_ENABLE_CAP of
    /// MANUAL_DIRTY_LOG_PROTECT2). Ring mode is fixed when the VM is made.
    public func setMode(_ newMode: HarvestMode) throws(SessionError) {
        guard newMode != mode else { return }
        guard newMode != .ring, mode != .ring else {
            throw .invalidArgument("switching to or from ring mode needs a new VM: dirty rings are enabled before vCPUs exist")
        }
        try setManualProtect(newMode == .manual)
        mode = newMode
    }

    private func setManualProtect(_ on: Bool) throws(SessionError) {
        var flags: ManualProtectFlags = on ? [.enable] : []
        if on && machine.vm.manualProtect.contains(.initiallySet) { flags.insert(.initiallySet) }
        do { try machine.vm.setManualProtect(flags) } catch { throw .kvm(error) }
    }

    // MARK: Rounds

    /// What one harvest collected, before it is consumed.
    public struct Collected {
        public var reported: [DirtyBitmap]
        public var get = LatencyStats()
        public var clear = LatencyStats()
        public var ringEntries: UInt64 = 0
        let started: UInt64
    }

    /// Harvests every slot, copies and classifies what was reported, and returns the round.
    /// With `verify`, the caller has paused the vCPUs: every page is compared afterwards.
    public func harvestRound(verify: Bool = false) throws(SessionError) -> Round {
        try consume(try collect(), verify: verify)
    }

    /// Step 1 of a round: KVM_GET_DIRTY_LOG on every slot, or the rings collected and reset.
    public func collect() throws(SessionError) -> Collected {
        let slots = machine.dataSlots
        var c = Collected(reported: slots.map { DirtyBitmap(pageCount: $0.pageCount) }, started: monotonicNanos())
        do {
            switch mode {
            case .legacy, .manual:
                for (i, s) in slots.enumerated() {
                    let a = monotonicNanos()
                    try machine.vm.getDirtyLog(slot: s.id, into: &c.reported[i])
                    c.get.record(monotonicNanos() - a)
                }
            case .ring:
                try drainRings()
                c.ringEntries = pendingRingEntries
                c.get = pendingRingHarvest
                c.clear = pendingRingReset
                c.reported = pendingRing
                pendingRing = slots.map { DirtyBitmap(pageCount: $0.pageCount) }
                pendingRingEntries = 0
                pendingRingHarvest = LatencyStats()
                pendingRingReset = LatencyStats()
            }
        } catch {
            throw .kvm(error)
        }
        return c
    }

    /// Step 2 of a round: per chunk, KVM_CLEAR_DIRTY_LOG (manual mode) just before the
    /// chunk's pages are classified and copied; then, with `verify` (vCPUs paused by the
    /// caller), every page of source and destination is compared.
    public func consume(_ collected: Collected, verify: Bool = false) throws(SessionError) -> Round {
        roundIndex += 1
        let t0 = collected.started
        let slots = machine.dataSlots
        var clear = collected.clear
        let get = collected.get
        let reported = collected.reported
        let ringEntries = collected.ringEntries
        let consumeStart = monotonicNanos()
        var verifyNanos: UInt64 = 0

        // 2. Consume: per chunk, CLEAR (manual) just before the chunk's pages are classified
        //    and copied. Timestamps are shared between phases: three clock reads per dirty
        //    chunk. Bookkeeping is everything but the CLEARs and the copy loop (which walks
        //    the chunk's bits and compares each page as it copies it).
        var consumer = Consumer(bandwidth: bandwidth, pageSize: pageSize, stop: copyStop)
        var slotRounds: [SlotRound] = []
        var copyNanos: UInt64 = 0
        var mark = monotonicNanos()
        var bookkeeping = mark - consumeStart
        for (i, s) in slots.enumerated() {
            var falsePositives = DirtyBitmap(pageCount: s.pageCount)
            var initial = 0, copied = 0
            let chunkWords = (mode == .manual ? clearChunk.pages(forSlotOf: s.pageCount) : 4096) / 64
            var failure: KVMError?
            reported[i].withUnsafeWords { words in
                var w = 0
                while w < words.count {
                    guard words[w] != 0 else { w += 1; continue }
                    let chunkStart = w / chunkWords * chunkWords, chunkEnd = min(words.count, chunkStart + chunkWords)
                    var copyStart = monotonicNanos()
                    bookkeeping += copyStart - mark
                    if mode == .manual {
                        // 64-page aligned by construction: the first page a multiple of 64,
                        // the count a multiple of 64 or ending at the slot's end.
                        let first = chunkStart * 64, count = min(s.pageCount, chunkEnd * 64) - first
                        failure = machine.vm.clearDirtyLogUnchecked(slot: s.id, firstPage: first, numPages: count,
                                                                    mask: words.baseAddress! + chunkStart)
                        let cleared = monotonicNanos()
                        clear.record(cleared - copyStart)
                        copyStart = cleared
                        if failure != nil { return }
                    }
                    let r = consumer.copy(words: words, w..<chunkEnd, slot: i, source: s.memory, destination: destination,
                                          method: method, falsePositives: &falsePositives)
                    initial += r.initial
                    copied += r.copied
                    mark = monotonicNanos()
                    copyNanos += mark - copyStart
                    w = chunkEnd
                }
            }
            if let failure { throw .kvm(failure) }
            var slotRound = SlotRound(slot: i, reported: reported[i], falsePositives: falsePositives,
                                      initialCount: initial, copiedPages: copied)
            if let w = watched[i] {
                slotRound.watched = WatchedBlocks(blocks: w.blocks, reported: reported[i].intersection(w.mask).count,
                                                  falsePositives: falsePositives.intersection(w.mask).count)
            }
            slotRounds.append(slotRound)
        }
        let now = monotonicNanos()
        bookkeeping += now - mark
        mark = now

        // 3. Verify (vCPUs paused by the caller): every page of source and destination.
        var verification: Verification?
        let verifyStart = monotonicNanos()
        if verify {
            var missed: [Int] = []
            var compared = 0
            for (i, s) in slots.enumerated() {
                let r = destination.verify(slot: i, source: s.memory)
                missed.append(r.differing)
                compared += r.compared
                slotRounds[i].missed = r.differing
            }
            verification = Verification(missedPerSlot: missed, comparedPages: compared)
            verifyNanos = monotonicNanos() - verifyStart
        }

        let t1 = monotonicNanos()
        bookkeeping += t1 - mark - verifyNanos
        let writes = machine.guestWrites, faults = machine.vcpuStatSum(Self.faultStats)
        let exits = machine.vcpuStatSum(Self.exitStats), ringFull = machine.ringFullExits
        defer { lastWrites = writes; lastWritesAt = t1; lastFaults = faults; lastExits = exits; lastRingFull = ringFull }
        return Round(index: roundIndex, startNanos: t0 - startNanos, durationNanos: t1 - t0, mode: mode, clearChunk: clearChunk,
                     slots: slotRounds, getLatency: get, clearLatency: clear, bytesCopied: consumer.bytes,
                     copyNanos: copyNanos, bookkeepingNanos: bookkeeping,
                     guestWrites: machine.writes(from: lastWrites, to: writes, overNanos: t1 &- lastWritesAt),
                     writeProtectFaults: faults &- lastFaults, exits: exits &- lastExits,
                     ringEntries: ringEntries, ringFullExits: ringFull &- lastRingFull, verification: verification)
    }

    /// Ring entries collected by `drainRings` since the last round, per slot.
    private lazy var pendingRing: [DirtyBitmap] = machine.dataSlots.map { DirtyBitmap(pageCount: $0.pageCount) }
    private var pendingRingEntries: UInt64 = 0
    private var pendingRingHarvest = LatencyStats()
    private var pendingRingReset = LatencyStats()

    /// Ring mode: collects every vCPU's ring into the next round's bitmaps and resets the
    /// rings (KVM_RESET_DIRTY_RINGS), so vCPUs stopped on a full ring can go on. Safe to
    /// call often (for example while waiting for a pass); the next round reports it all.
    public func drainRings() throws(KVMError) {
        guard mode == .ring else { return }
        let a = monotonicNanos()
        var entries: UInt64 = 0
        for ring in machine.rings {
            entries += UInt64(ring.harvest { slotID, offset in
                let i = Int(slotID & 0xffff) - 1
                if i >= 0, i < pendingRing.count, Int(offset) < pendingRing[i].pageCount { pendingRing[i][Int(offset)] = true }
            })
        }
        pendingRingHarvest.record(monotonicNanos() - a)
        let b = monotonicNanos()
        let reset = try machine.vm.resetDirtyRings()
        pendingRingReset.record(monotonicNanos() - b)
        if UInt64(reset) != entries {
            ringResetMismatches += 1
            lastRingResetMismatch = (reset, entries)
        }
        machine.ringsWereReset()
        pendingRingEntries += entries
    }

    // MARK: Block operations

    /// Clears `blocks` (64-page blocks) of data slot `slot` with KVM_CLEAR_DIRTY_LOG,
    /// adjacent blocks merged into one call, and copies them. In manual mode a GET first
    /// tells which pages are dirty; in legacy mode the kernel's bits since the last GET
    /// are unknown, so every page of the blocks is copied. Later rounds report how many
    /// false positives these blocks produce (`SlotRound.watched`).
    public func clearBlocks(slot: Int, blocks: [Int]) throws(SessionError) -> BlockClear {
        guard mode != .ring else {
            throw .invalidArgument("KVM_CLEAR_DIRTY_LOG does not apply in ring mode: the ring's reset re-arms tracking")
        }
        guard slot >= 0, slot < machine.dataSlots.count else {
            throw .invalidArgument("slot \(slot) does not exist (have 0 to \(machine.dataSlots.count - 1))")
        }
        let s = machine.dataSlots[slot]
        let sorted = Array(Set(blocks)).sorted()
        guard let last = sorted.last, sorted.first! >= 0, last < (s.pageCount + 63) / 64 else {
            throw .invalidArgument("blocks must be between 0 and \((s.pageCount + 63) / 64 - 1) for slot \(slot)")
        }
        var mask = DirtyBitmap(pageCount: s.pageCount)
        for b in sorted { mask.set(mask.pages(ofBlock: b)) }
        var dirty: DirtyBitmap
        if mode == .manual {
            dirty = DirtyBitmap(pageCount: s.pageCount)
            do { try machine.vm.getDirtyLog(slot: s.id, into: &dirty) } catch { throw .kvm(error) }
            dirty.formIntersection(mask)
        } else {
            dirty = mask
        }
        var calls = 0
        var nanos: UInt64 = 0
        var runStart = 0
        while runStart < sorted.count {
            var runEnd = runStart
            while runEnd + 1 < sorted.count && sorted[runEnd + 1] == sorted[runEnd] + 1 { runEnd += 1 }
            let first = sorted[runStart] * 64
            let count = min(s.pageCount, (sorted[runEnd] + 1) * 64) - first
            let source = mode == .manual ? dirty : mask
            let a = monotonicNanos()
            do { try machine.vm.clearDirtyLog(slot: s.id, firstPage: first, numPages: count, from: source) } catch { throw .kvm(error) }
            nanos += monotonicNanos() - a
            calls += 1
            runStart = runEnd + 1
        }
        var consumer = Consumer(bandwidth: bandwidth, pageSize: pageSize, stop: copyStop)
        var ignored = DirtyBitmap(pageCount: s.pageCount)
        let r = dirty.withUnsafeWords { words in
            consumer.copy(words: words, 0..<words.count, slot: slot, source: s.memory, destination: destination,
                          method: method, falsePositives: &ignored)
        }
        watched[slot] = (mask, sorted.count)
        return BlockClear(slot: slot, blocks: sorted, calls: calls, pagesCleared: mode == .manual ? dirty.count : mask.count,
                          pagesCopied: r.copied, clearNanos: nanos)
    }

    /// Host memory held by the destination, in pages.
    public var destinationResidentPages: Int { destination.residentPages }
}

/// Copies reported pages at a bandwidth, judging each page just before its copy: the
/// stamp (or content) comparison rides on the cache lines and TLB entries the copy needs
/// anyway. Pacing is checked every 16 pages.
struct Consumer {
    let bandwidth: UInt64
    let pageSize: Int
    let stop: CopyStop
    private(set) var bytes: UInt64 = 0
    private var started: UInt64 = 0
    private var sincePace = 0

    init(bandwidth: UInt64, pageSize: Int, stop: CopyStop) {
        self.bandwidth = bandwidth
        self.pageSize = pageSize
        self.stop = stop
    }

    /// Classifies then copies the pages set in `words[range]` (a bitmap's words, bit 0 of
    /// word 0 being page 0); returns initial and copied counts.
    mutating func copy(words: UnsafeBufferPointer<UInt64>, _ range: Range<Int>, slot: Int, source: GuestMemory,
                       destination: Destination, method: FalsePositiveMethod,
                       falsePositives: inout DirtyBitmap) -> (initial: Int, copied: Int) {
        if started == 0 { started = monotonicNanos() }
        var initial = 0, copied = 0
        for w in range {
            var bits = words[w]
            var fpBits: UInt64 = 0
            while bits != 0 {
                let bit = bits.trailingZeroBitCount
                bits &= bits - 1
                let page = w << 6 | bit
                switch destination.classify(slot: slot, page: page, source: source, method: method) {
                case .falsePositive: fpBits |= 1 << UInt64(bit)
                case .initial: initial += 1
                case .changed: break
                }
                destination.copy(slot: slot, page: page, source: source)
                copied += 1
                sincePace += 1
                if sincePace == 16 {
                    bytes += UInt64(16 * pageSize)
                    sincePace = 0
                    pace()
                }
            }
            if fpBits != 0 { falsePositives.setWord(w, falsePositives.word(w) | fpBits) }
        }
        bytes += UInt64(sincePace * pageSize)
        sincePace = 0
        pace()
        return (initial, copied)
    }

    /// Sleeps while the copy is ahead of the bandwidth, in slices of at most 100 ms with
    /// a look at `stop` between them.
    private func pace() {
        guard bandwidth > 0 else { return }
        let (scaled, overflow) = bytes.multipliedReportingOverflow(by: 1_000_000_000)
        let due = started &+ (overflow ? UInt64.max / bandwidth : scaled / bandwidth)
        while !stop.isRequested {
            let now = monotonicNanos()
            guard due > now + 200_000 else { return }
            let slice = min(due - now, CopyStop.sliceNanos)
            var ts = timespec(tv_sec: Int(slice / 1_000_000_000), tv_nsec: Int(slice % 1_000_000_000))
            nanosleep(&ts, nil)
        }
    }
}

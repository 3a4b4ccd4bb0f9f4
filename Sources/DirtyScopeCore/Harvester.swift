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
/// - manual: KVM_GET_DIRTY_LOG per slot, then KVM_CLEAR_DIRTY_LOG as the clear policy
///   says: per chunk just before its copy (auto), only on the user's blocks (hand), per
///   chunk after its copy (after-copy, which loses writes), or the whole slot right after
///   GET (at-get).
/// - ring: collect every vCPU's dirty ring, KVM_RESET_DIRTY_RINGS, copy.
/// - untracked: dirty logging off on the data slots; nothing is harvested or copied (the
///   baseline for what tracking costs the guest).
///
/// Every round also reads the guest's own timeline (`GuestCostMeter`): what the guest
/// paid, matched with the spans of GET, CLEAR, ring work and copying recorded here.
///
/// Each copy of a 64-page block notes how long the block had been re-protected (by GET,
/// CLEAR or a ring reset) when it was copied, and in which round, so a later false
/// positive in it is attributed to that race window, to a dirty bit nobody cleared
/// (`Round.origins`), or, when a harvest came between without reporting the block, to a
/// write after the window closed that stored what the page held (`falsePositivesRewritten`).
///
/// Not thread-safe: one harvesting thread owns it.
public final class Harvester {
    public let machine: GuestMachine
    public private(set) var mode: HarvestMode
    public var clearChunk: ClearChunk
    /// Who clears in manual mode, and when.
    public var clearPolicy: ClearPolicy
    public var method: FalsePositiveMethod
    /// Consumer bandwidth in bytes per second; 0 copies as fast as memcpy goes.
    public var bandwidth: UInt64
    /// Set from other threads: a stop makes a paced copy finish at once, a poke runs the
    /// session's mid-round commands (`CopyControl`).
    public var copyControl = CopyControl()
    /// The in-memory copy: where copies go unless a migration streams them.
    let destination: Destination
    /// Where this round's copies go (`PageSink`).
    private(set) var target: CopyTarget
    /// The guest's side: its timeline, matched with the host spans recorded below.
    let meter: GuestCostMeter
    /// The last round's guest cost, as the meter added it up (stall lengths included when kept).
    public private(set) var lastGuestCost: GuestCost?
    /// Time spent reading the guest's timelines and matching them with the host's spans,
    /// in all: the measurement's own cost, outside the rounds' timed work.
    public private(set) var guestCostNanos: UInt64 = 0
    /// Rounds harvested by this harvester.
    public var roundsHarvested: UInt64 { roundIndex }
    /// The blocks the user last cleared, per slot, as a page mask: under the hand policy
    /// the only blocks re-protected.
    private var watched: [(mask: DirtyBitmap, blocks: Int)?]
    /// Per slot and 64-page block, how its last copy went (`CopyNote`).
    private var lastCopy: [[UInt64]]
    /// Per slot, the bitmap the last round's false positives went into, reused.
    private var falsePositiveBuffers: [FalsePositiveBuffer]
    /// Per slot, the bitmap the last GET filled, handed to KVM again by the next (as the
    /// kernel's dirty_log_perf_test does): in place once no reader holds the round that
    /// reported it.
    private var logBuffers: [DirtyBitmap] = []
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
    /// Rounds whose guest-written write count was impossible (a counter stepped back, or
    /// ran past one write a nanosecond per vCPU) and was clamped: 0 unless the guest
    /// scribbles its control block.
    public private(set) var clampedWriteCounts: UInt64 = 0
    private let pageSize = PageSize.system
    /// Tests only: runs inside each chunk's race window, between its CLEAR and its copy
    /// (auto, hand), or between a slot's copy and its CLEARs (after-copy), so a guest
    /// write can be put exactly there.
    var windowHook: (() -> Void)?

    /// The vCPU statistics read as write-protect faults, and as exits.
    static let faultStats = ["pf_taken"]
    static let exitStats = ["exits"]

    public init(machine: GuestMachine, mode: HarvestMode, clearChunk: ClearChunk, clearPolicy: ClearPolicy = .auto,
                method: FalsePositiveMethod, bandwidth: UInt64, startNanos: UInt64 = monotonicNanos()) throws(SessionError) {
        self.machine = machine
        self.mode = mode
        self.clearChunk = clearChunk
        self.clearPolicy = clearPolicy
        self.method = method
        self.bandwidth = bandwidth
        self.startNanos = startNanos
        do {
            destination = try Destination(slots: machine.dataSlots)
        } catch {
            throw .kvm(error)
        }
        target = .memory(destination)
        meter = GuestCostMeter(machine: machine)
        watched = Array(repeating: nil, count: machine.dataSlots.count)
        lastCopy = machine.dataSlots.map { [UInt64](repeating: CopyNote.never, count: DirtyBitmap.blocks(covering: $0.pageCount)) }
        falsePositiveBuffers = machine.dataSlots.map { FalsePositiveBuffer(pageCount: $0.pageCount) }
        let entry = mode.entry
        if (entry.source == .rings) != !machine.rings.isEmpty {
            throw .invalidArgument(entry.source == .rings
                ? "\(mode.rawValue) mode needs a VM built with dirty rings (ringEntries > 0)"
                : "a VM with dirty rings cannot be harvested in \(mode.rawValue) mode")
        }
        if entry.manualProtect != machine.vm.manualProtect.contains(.enable) {
            try setManualProtect(entry.manualProtect)
        }
        if entry.tracks != machine.logsDirtyPages {
            // Before the guest starts (as every caller makes a harvester): nothing to resync.
            do { try machine.setDirtyLogging(entry.tracks) } catch { throw .kvm(error) }
        }
        lastWrites = machine.guestWrites
        lastWritesAt = monotonicNanos()
        lastFaults = machine.vcpuStatSum(Self.faultStats)
        lastExits = machine.vcpuStatSum(Self.exitStats)
    }

    // MARK: Mode

    /// Switches between modes that share a VM while the guest runs (KVM_ENABLE_CAP of
    /// MANUAL_DIRTY_LOG_PROTECT2 on or off, dirty logging of the data slots on or off). A
    /// mode fixed at creation needs a new VM.
    ///
    /// Turning tracking back on (from untracked) needs the vCPUs paused by the caller:
    /// writes made while nothing tracked them are found by comparing every page with the
    /// destination and copied (a resync, as a migration's first bulk copy would), so the
    /// ground truth holds again. Returns the pages resynchronised then.
    @discardableResult
    public func setMode(_ newMode: HarvestMode) throws(SessionError) -> Int? {
        guard newMode != mode else { return nil }
        guard !newMode.entry.fixedAtCreation, !mode.entry.fixedAtCreation else {
            throw .invalidArgument("switching from \(mode.rawValue) to \(newMode.rawValue) mode needs a new VM: "
                                   + "dirty rings are enabled before vCPUs exist")
        }
        var resynced: Int?
        if newMode.entry.manualProtect != machine.vm.manualProtect.contains(.enable) {
            try setManualProtect(newMode.entry.manualProtect)
        }
        if newMode.entry.tracks != mode.entry.tracks {
            do { try machine.setDirtyLogging(newMode.entry.tracks) } catch { throw .kvm(error) }
            if newMode.entry.tracks {
                var pages = 0
                for (i, slot) in machine.dataSlots.enumerated() {
                    do { pages += try target.verify(slot: i, source: slot.memory).differing.count } catch { throw .migration(error) }
                }
                resynced = pages
            }
        }
        mode = newMode
        return resynced
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
        var started: UInt64
        /// Per slot, when GET (legacy), the at-get CLEAR or the ring reset re-protected the
        /// reported pages; 0 where each chunk's own CLEAR does (or nothing does).
        var protectedAt: [UInt64]
    }

    /// The clear policy in force: manual mode's, `.auto` in the others (where it does not apply).
    public var effectivePolicy: ClearPolicy { HarvestSetting(mode: mode, policy: clearPolicy).policy }
    /// What the mode and policy in force do with KVM_CLEAR_DIRTY_LOG.
    var policyEntry: ClearPolicyEntry { mode.entry.manualProtect ? clearPolicy.entry : .noClear }

    /// Harvests every slot, copies and classifies what was reported, and returns the round.
    /// With `verify`, the caller has paused the vCPUs: every page is compared afterwards.
    public func harvestRound(verify: Bool = false) throws(SessionError) -> Round {
        try consume(try collect(), verify: verify)
    }

    /// Step 1 of a round: KVM_GET_DIRTY_LOG on every slot, or the rings collected and reset.
    public func collect() throws(SessionError) -> Collected {
        let slots = machine.dataSlots
        let entry = mode.entry, policy = policyEntry
        var c = Collected(reported: [], started: 0, protectedAt: [UInt64](repeating: 0, count: slots.count))
        if entry.source == .dirtyLog {
            // The bitmaps move into `c` (no second reference to them here): GET writes into
            // them in place. GET overwrites every word; a bitmap a reader still holds is
            // copied now, not inside the timed call.
            swap(&c.reported, &logBuffers)
            if c.reported.count != slots.count { c.reported = slots.map { DirtyBitmap(pageCount: $0.pageCount) } }
            for i in c.reported.indices { c.reported[i].withUnsafeMutableWords { _ in } }
        }
        c.started = monotonicNanos()
        do {
            switch entry.source {
            case .dirtyLog:
                for (i, s) in slots.enumerated() {
                    // The ioctl's own time, as dirty_log_perf_test measures it.
                    let nanos = try machine.vm.getDirtyLog(slot: s.id, into: &c.reported[i])
                    c.get.record(nanos)
                    let b = monotonicNanos()
                    meter.record(.get, start: b &- nanos, end: b)
                    if entry.getProtects { c.protectedAt[i] = b }
                    if policy.clearsAtGet && !c.reported[i].isEmpty {
                        try machine.vm.clearDirtyLog(slot: s.id, firstPage: 0, numPages: s.pageCount, from: c.reported[i])
                        c.protectedAt[i] = monotonicNanos()
                        c.clear.record(c.protectedAt[i] - b)
                        meter.record(.clear, start: b, end: c.protectedAt[i])
                    }
                }
                logBuffers = c.reported
            case .rings:
                try drainRings()
                c.ringEntries = pendingRingEntries
                c.get = pendingRingHarvest
                c.clear = pendingRingReset
                c.reported = pendingRing
                c.protectedAt = [UInt64](repeating: c.started, count: slots.count)
                pendingRing = slots.map { DirtyBitmap(pageCount: $0.pageCount) }
                pendingRingEntries = 0
                pendingRingHarvest = LatencyStats()
                pendingRingReset = LatencyStats()
            case .none:
                if emptyBitmaps.count != slots.count { emptyBitmaps = slots.map { DirtyBitmap(pageCount: $0.pageCount) } }
                c.reported = emptyBitmaps
            }
        } catch {
            throw .kvm(error)
        }
        return c
    }

    /// Untracked mode's reports: none, one empty bitmap per slot, made once.
    private var emptyBitmaps: [DirtyBitmap] = []

    /// Step 2 of a round: KVM_CLEAR_DIRTY_LOG as the clear policy says (manual mode),
    /// each chunk's pages classified and copied; then, with `verify` (vCPUs paused by the
    /// caller), every page of source and destination is compared. Untracked mode copies
    /// nothing and cannot verify (nothing was tracked): its rounds carry the guest's cost.
    public func consume(_ collected: Collected, verify wanted: Bool = false) throws(SessionError) -> Round {
        roundIndex += 1
        let verify = wanted && mode.entry.tracks
        let t0 = collected.started
        let slots = machine.dataSlots
        let get = collected.get
        let reported = collected.reported
        let ringEntries = collected.ringEntries
        let consumeStart = monotonicNanos()
        var verifyNanos: UInt64 = 0

        // 2. Consume, chunk by chunk. Timestamps are shared between phases: a few clock
        //    reads per dirty chunk. Bookkeeping is everything but the CLEARs and the copy
        //    loop (which walks the chunk's bits and compares each page as it copies it).
        var consumer = Consumer(bandwidth: bandwidth, pageSize: pageSize, control: copyControl, round: roundIndex)
        // Each slot's counts as plain numbers; the round's metrics are built after the
        // round is timed, as its record is (the harvest's work ends at t1).
        var counts: [(reported: Int, falsePositives: Int, initial: Int, copied: Int)] = []
        var bitmaps: [SlotBitmaps] = []
        counts.reserveCapacity(slots.count)
        bitmaps.reserveCapacity(slots.count)
        var work = RoundWork(clear: collected.clear, mark: monotonicNanos())
        work.bookkeeping = work.mark - consumeStart
        if mode.entry.tracks {
            do {
                switch target {
                case .memory(let sink): try copySlots(collected, into: sink, consumer: &consumer, work: &work, counts: &counts, bitmaps: &bitmaps)
                case .stream(let sink): try copySlots(collected, into: sink, consumer: &consumer, work: &work, counts: &counts, bitmaps: &bitmaps)
                }
            } catch {
                throw error.sessionError
            }
        }
        let now = monotonicNanos()
        work.bookkeeping += now - work.mark
        work.mark = now

        // 3. Verify (vCPUs paused by the caller): every page the source holds against what was sent.
        var verification: Verification?
        let verifyStart = monotonicNanos()
        if verify {
            var missed: [Int] = []
            var missedBlocks: [[Int]] = []
            var compared = 0
            for (i, s) in slots.enumerated() {
                let r: (differing: DirtyBitmap, compared: Int)
                do { r = try target.verify(slot: i, source: s.memory) { copyControl.serviceIfPoked() } } catch { throw .migration(error) }
                missed.append(r.differing.count)
                compared += r.compared

                var blocks: [Int] = []
                r.differing.withUnsafeWords { words in
                    for (b, word) in words.enumerated() where word != 0 && blocks.count < Verification.maxListedBlocks {
                        blocks.append(b)
                    }
                }
                missedBlocks.append(blocks)
            }
            verification = Verification(missedPerSlot: missed, comparedPages: compared, missedBlocks: missedBlocks)
            verifyNanos = monotonicNanos() - verifyStart
            meter.record(.verify, start: verifyStart, end: verifyStart + verifyNanos)
        }
        if !mode.entry.tracks {
            for i in slots.indices {
                counts.append((0, 0, 0, 0))
                bitmaps.append(SlotBitmaps(reported: reported[i], falsePositives: reported[i]))
            }
        }
        var bookkeeping = work.bookkeeping
        let mark = work.mark, clear = work.clear, copyNanos = work.copyNanos, lostPages = work.lostPages

        let t1 = monotonicNanos()
        bookkeeping += t1 - mark - verifyNanos
        let writes = machine.guestWrites, faults = machine.vcpuStatSum(Self.faultStats)
        let exits = machine.vcpuStatSum(Self.exitStats), ringFull = machine.ringFullExits
        defer { lastWrites = writes; lastWritesAt = t1; lastFaults = faults; lastExits = exits; lastRingFull = ringFull }
        let guestWrites = machine.writes(from: lastWrites, to: writes, overNanos: t1 &- lastWritesAt)
        if guestWrites != writes &- lastWrites { clampedWriteCounts += 1 }
        var m = RoundMetrics(mode: mode, clearChunk: clearChunk, clearPolicy: effectivePolicy)
        m.index = roundIndex
        m.startNanos = t0 - startNanos
        m.slots = counts.indices.map { i in
            var s = SlotMetrics(slot: i)
            s[.reportedPages] = counts[i].reported
            s[.falsePositivePages] = counts[i].falsePositives
            s[.initialPages] = counts[i].initial
            s[.copiedPages] = counts[i].copied
            if let v = verification { s[.missedPages] = v.missedPerSlot[i] }
            return s
        }
        m.verification = verification
        m.getDirtyLog = get
        m.clearDirtyLog = clear
        m.origins = consumer.origins
        m[.falsePositivesRewritten] = UInt64(consumer.rewritten)
        m[.durationNanos] = t1 - t0
        m[.copiedBytes] = consumer.bytes
        m[.copyNanos] = copyNanos
        m[.bookkeepingNanos] = bookkeeping
        m[.guestWrites] = guestWrites
        m[.writeProtectFaults] = faults &- lastFaults
        m[.vcpuExits] = exits &- lastExits
        m[.ringEntriesHarvested] = ringEntries
        m[.ringFullExits] = ringFull &- lastRingFull
        m[.lostPages] = UInt64(lostPages)
        // The guest's side, outside the round's timed work: what it paid since the last round.
        let readStart = monotonicNanos()
        let cost = meter.read(now: readStart)
        cost.write(into: &m)
        lastGuestCost = cost
        guestCostNanos &+= monotonicNanos() - readStart
        return Round(metrics: m, bitmaps: bitmaps)
    }

    /// What a round's copy loop adds up as it goes: the clock mark the next span starts
    /// from, bookkeeping and copy time, the CLEARs made, and the writes after-copy lost.
    struct RoundWork {
        var clear: LatencyStats
        var mark: UInt64
        var bookkeeping: UInt64 = 0
        var copyNanos: UInt64 = 0
        var lostPages = 0
    }

    /// Why a round's copy stopped: a CLEAR failed, or the sink did.
    enum CopyFailure: Error {
        case kvm(KVMError)
        case sink(MigrationError)
        case session(SessionError)

        var sessionError: SessionError {
            switch self {
            case .kvm(let e): return .kvm(e)
            case .sink(let e): return .migration(e)
            case .session(let e): return e
            }
        }
    }

    /// Step 2's loop: every slot, chunk by chunk, as the clear policy's entry says: the
    /// reported pages of a chunk CLEARed just before its copy (all of them, only those in
    /// the user's blocks, or none), the slot's chunks CLEARed once it is copied
    /// (after-copy). Timestamps are shared between phases: a few clock reads per dirty
    /// chunk. Bookkeeping is everything but the CLEARs and the copy loop (which walks the
    /// chunk's bits and judges each page as it sends it).
    private func copySlots<Sink: PageSink>(_ collected: Collected, into sink: Sink, consumer: inout Consumer, work: inout RoundWork,
                                           counts: inout [(reported: Int, falsePositives: Int, initial: Int, copied: Int)],
                                           bitmaps: inout [SlotBitmaps]) throws(CopyFailure) {
        let policy = policyEntry
        let reported = collected.reported
        for (i, s) in machine.dataSlots.enumerated() {
            var falsePositives = FalsePositiveBuffer(pageCount: 0)
            swap(&falsePositives, &falsePositiveBuffers[i])
            defer { falsePositiveBuffers[i] = falsePositives }  // back even when a CLEAR fails
            falsePositives.reset()
            // Counted before the copy loop walks megabytes past it and leaves it cold.
            let reportedCount = reported[i].count
            var initial = 0, copied = 0
            let chunkWords = clearChunk.pages(forSlotOf: s.pageCount) / DirtyBitmap.pagesPerBlock
            // The hand policy's CLEAR mask for a chunk: its reported bits inside the user's
            // blocks (auto clears straight from the reported words).
            let userMask = policy.beforeCopy == .userBlocks ? watched[i]?.mask : nil
            var maskWords = [UInt64](repeating: 0, count: policy.beforeCopy == .userBlocks ? chunkWords : 0)
            try reported[i].withUnsafeWords { (words) throws(CopyFailure) in
            try lastCopy[i].withUnsafeMutableBufferPointer { (notes) throws(CopyFailure) in
            try maskWords.withUnsafeMutableBufferPointer { (mask) throws(CopyFailure) in
                var w = 0
                while w < words.count {
                    guard words[w] != 0 else { w += 1; continue }
                    // Without a CLEAR before the copy, the rest of the slot is one copy call.
                    let chunkStart = w / chunkWords * chunkWords
                    let chunkEnd = policy.beforeCopy == .nothing ? words.count : min(words.count, chunkStart + chunkWords)
                    // The chunk's CLEAR before its copy, from the policy's entry.
                    var cleared: UnsafePointer<UInt64>?
                    switch policy.beforeCopy {
                    case .nothing: break
                    case .allReported:
                        // The mask is the reported words themselves: no copy of them needed.
                        cleared = UnsafePointer(words.baseAddress! + chunkStart)
                    case .userBlocks:
                        var anyMasked: UInt64 = 0
                        for k in chunkStart..<chunkEnd {
                            mask[k - chunkStart] = words[k] & (userMask?.word(k) ?? 0)
                            anyMasked |= mask[k - chunkStart]
                        }
                        if anyMasked != 0 { cleared = UnsafePointer(mask.baseAddress!) }
                    }
                    if let cleared {
                        try clearChunk(slot: s, chunkStart: chunkStart, chunkWords: chunkWords, mask: cleared, work: &work)
                        windowHook?()
                    }
                    // Each word's pages were re-protected by this chunk's CLEAR, or by what
                    // collect did (GET, the at-get CLEAR, the ring reset), or not at all.
                    // After a CLEAR of all reported pages the copy starts where the CLEAR ended.
                    let copyStart: UInt64
                    if policy.beforeCopy == .allReported {
                        copyStart = work.mark
                    } else {
                        copyStart = monotonicNanos()
                        work.bookkeeping += copyStart - work.mark
                    }
                    do throws(MigrationError) {
                        switch policy.beforeCopy {
                        case .nothing, .allReported:
                            let r = try consumer.copy(words: words, w..<chunkEnd, slot: i, source: s.memory, sink: sink, method: method,
                                                      falsePositives: &falsePositives, notes: notes,
                                                      protectedAt: cleared == nil ? collected.protectedAt[i] : copyStart)
                            initial += r.initial
                            copied += r.copied
                        case .userBlocks:
                            for k in w..<chunkEnd where words[k] != 0 {
                                let r = try consumer.copy(words: words, k..<(k + 1), slot: i, source: s.memory, sink: sink, method: method,
                                                          falsePositives: &falsePositives, notes: notes,
                                                          protectedAt: cleared != nil && mask[k - chunkStart] != 0 ? copyStart : 0)
                                initial += r.initial
                                copied += r.copied
                            }
                        }
                        try sink.flush()
                    } catch {
                        throw .sink(error)
                    }
                    work.mark = monotonicNanos()
                    work.copyNanos += work.mark - copyStart
                    meter.record(.copy, start: copyStart, end: work.mark)
                    w = chunkEnd
                }
                // After-copy: every chunk that held a reported page, once the whole slot is copied.
                guard policy.clearsAfterCopy, copied > 0 else { return }
                windowHook?()
                for chunkStart in stride(from: 0, to: words.count, by: chunkWords) {
                    let chunkEnd = min(words.count, chunkStart + chunkWords)
                    guard words[chunkStart..<chunkEnd].contains(where: { $0 != 0 }) else { continue }
                    try clearChunk(slot: s, chunkStart: chunkStart, chunkWords: chunkWords, mask: words.baseAddress! + chunkStart, work: &work)
                }
            }
            }
            }
            if policy.clearsAfterCopy && !reported[i].isEmpty {
                let a = monotonicNanos()
                work.bookkeeping += a - work.mark
                do { work.lostPages += try lostWrites(slot: i, copied: reported[i], sink: sink) } catch { throw .session(error) }
                work.mark = monotonicNanos()
                work.bookkeeping += work.mark - a
            }
            counts.append((reportedCount, falsePositives.count, initial, copied))
            bitmaps.append(SlotBitmaps(reported: reported[i], falsePositives: falsePositives.bitmap))
        }
    }

    /// KVM_CLEAR_DIRTY_LOG on the chunk at word `chunkStart` of slot `s`, the pages of
    /// `mask`: 64-page aligned by construction (the first page a multiple of 64, the count
    /// a multiple of 64 or ending at the slot's end).
    @inline(__always)
    private func clearChunk(slot s: MemorySlot, chunkStart: Int, chunkWords: Int, mask: UnsafePointer<UInt64>,
                            work: inout RoundWork) throws(CopyFailure) {
        let first = chunkStart * DirtyBitmap.pagesPerBlock
        let count = min(s.pageCount, (chunkStart + chunkWords) * DirtyBitmap.pagesPerBlock) - first
        let a = monotonicNanos()
        work.bookkeeping += a - work.mark
        let failure = machine.vm.clearDirtyLogUnchecked(slot: s.id, firstPage: first, numPages: count, mask: mask)
        work.mark = monotonicNanos()
        work.clear.record(work.mark - a)
        meter.record(.clear, start: a, end: work.mark)
        if let failure { throw .kvm(failure) }
    }

    /// After-copy only: the pages copied this round that changed since their copy although
    /// their dirty bit is clear. Stamps (or contents) are read first, then GET (with manual
    /// protect it reads the log and changes nothing): a write after the CLEAR had set its
    /// bit before that read saw the page change, so a changed page without its bit was
    /// written between its copy and its CLEAR, and KVM will never report it.
    private func lostWrites<Sink: PageSink>(slot i: Int, copied: DirtyBitmap, sink: Sink) throws(SessionError) -> Int {
        let s = machine.dataSlots[i]
        var changed = DirtyBitmap(pageCount: s.pageCount)
        copied.forEachSetPage { page in
            if sink.classify(slot: i, page: page, source: s.memory, method: method) == .changed { changed[page] = true }
        }
        guard !changed.isEmpty else { return 0 }
        var log = DirtyBitmap(pageCount: s.pageCount)
        do {
            let nanos = try machine.vm.getDirtyLog(slot: s.id, into: &log)
            let end = monotonicNanos()
            meter.record(.get, start: end &- nanos, end: end)
        } catch { throw .kvm(error) }
        return changed.subtracting(log).count
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
        guard mode.entry.source == .rings else { return }
        let a = monotonicNanos()
        var entries: UInt64 = 0
        for ring in machine.rings {
            entries += UInt64(ring.harvest { slotID, offset in
                if let i = SlotID.dataSlot(ringSlot: slotID, count: pendingRing.count), offset < UInt64(pendingRing[i].pageCount) {
                    pendingRing[i][Int(offset)] = true
                }
            })
        }
        pendingRingHarvest.record(monotonicNanos() - a)
        let b = monotonicNanos()
        let reset = try machine.vm.resetDirtyRings()
        let end = monotonicNanos()
        pendingRingReset.record(end - b)
        meter.record(.ring, start: a, end: end)
        if UInt64(reset) != entries {
            ringResetMismatches += 1
            lastRingResetMismatch = (reset, entries)
        }
        machine.ringsWereReset()
        pendingRingEntries += entries
    }

    // MARK: Migration

    /// Sends this harvester's copies to `target` from the next round on. Back to the
    /// in-memory destination after a stream, that copy is stale: it is brought up to date
    /// with the vCPUs paused by the caller (a resync, as tracking back on does). Returns
    /// the pages resynchronised.
    @discardableResult
    func retarget(_ newTarget: CopyTarget) -> Int {
        let wasStream: Bool
        if case .stream = target { wasStream = true } else { wasStream = false }
        target = newTarget
        guard wasStream, case .memory(let d) = newTarget else { return 0 }
        return machine.dataSlots.indices.reduce(0) { $0 + d.verify(slot: $1, source: machine.dataSlots[$1].memory).differing.count }
    }

    /// A migration's bulk copy: every resident page of every data slot that `truth` says
    /// was never sent, through the consumer (its pacing and the session's pokes). The
    /// copies leave the blocks' race notes alone: a bulk copy re-protects nothing.
    func sendUnsent(into sink: StreamSink, truth: GroundTruth) throws(MigrationError) {
        var consumer = Consumer(bandwidth: bandwidth, pageSize: pageSize, control: copyControl, round: roundIndex)
        for (i, s) in machine.dataSlots.enumerated() {
            var unsent = s.memory.residentPages()
            unsent.subtract(truth.sent[i])
            guard !unsent.isEmpty else { continue }
            var ignored = FalsePositiveBuffer(pageCount: s.pageCount)
            var notes = [UInt64](repeating: CopyNote.never, count: DirtyBitmap.blocks(covering: s.pageCount))
            let a = monotonicNanos()
            _ = try unsent.withUnsafeWords { (words) throws(MigrationError) in
                try notes.withUnsafeMutableBufferPointer { (notes) throws(MigrationError) in
                    try consumer.copy(words: words, 0..<words.count, slot: i, source: s.memory, sink: sink, method: method,
                                      falsePositives: &ignored, notes: notes, protectedAt: 0)
                }
            }
            try sink.flush()
            meter.record(.copy, start: a, end: monotonicNanos())
        }
    }

    // MARK: Block operations

    /// Clears `blocks` (64-page blocks) of data slot `slot` with KVM_CLEAR_DIRTY_LOG,
    /// adjacent blocks merged into calls of up to a clear chunk, each copied right after. In manual mode a GET first
    /// tells which pages are dirty; in legacy mode the kernel's bits since the last GET
    /// are unknown, so every page of the blocks is copied. The UI compares the false
    /// positives these blocks produce before and after, from the rounds' bitmaps.
    public func clearBlocks(slot: Int, blocks: [Int]) throws(SessionError) -> BlockClear {
        guard mode.entry.canClear else {
            throw .invalidArgument(mode.entry.tracks
                ? "KVM_CLEAR_DIRTY_LOG does not apply in \(mode.rawValue) mode: the ring's reset re-arms tracking"
                : "KVM_CLEAR_DIRTY_LOG does not apply in \(mode.rawValue) mode: nothing is tracked")
        }
        guard slot >= 0, slot < machine.dataSlots.count else {
            throw .invalidArgument("slot \(slot) does not exist (have 0 to \(machine.dataSlots.count - 1))")
        }
        let s = machine.dataSlots[slot]
        let sorted = Array(Set(blocks)).sorted()
        guard let last = sorted.last, sorted.first! >= 0, last < DirtyBitmap.blocks(covering: s.pageCount) else {
            throw .invalidArgument("blocks must be between 0 and \(DirtyBitmap.blocks(covering: s.pageCount) - 1) for slot \(slot)")
        }
        var mask = DirtyBitmap(pageCount: s.pageCount)
        for b in sorted { mask.set(mask.pages(ofBlock: b)) }
        // With manual protect a GET shows which bits are set (and changes nothing); without
        // it a GET would re-arm the whole slot, so the mask is every page of the blocks.
        let seesBits = mode.entry.manualProtect
        var dirty: DirtyBitmap
        if seesBits {
            dirty = DirtyBitmap(pageCount: s.pageCount)
            do { try machine.vm.getDirtyLog(slot: s.id, into: &dirty) } catch { throw .kvm(error) }
            dirty.formIntersection(mask)
        } else {
            dirty = mask
        }
        // The seed patch's order, as the harvester's own: each run of adjacent blocks is
        // cleared a clear chunk at a time, just before that chunk is copied, so the window
        // between a page's CLEAR and its copy stays one chunk's copy wide.
        let source = seesBits ? dirty : mask
        let chunkBlocks = max(1, clearChunk.pages(forSlotOf: s.pageCount) / DirtyBitmap.pagesPerBlock)
        var calls = 0
        var nanos: UInt64 = 0
        var copied = 0
        var consumer = Consumer(bandwidth: bandwidth, pageSize: pageSize, control: copyControl, round: roundIndex)
        var ignored = FalsePositiveBuffer(pageCount: s.pageCount)
        var runStart = 0
        while runStart < sorted.count {
            var runEnd = runStart
            while runEnd + 1 < sorted.count && sorted[runEnd + 1] == sorted[runEnd] + 1 && runEnd + 1 - runStart < chunkBlocks {
                runEnd += 1
            }
            let first = sorted[runStart] * DirtyBitmap.pagesPerBlock
            let count = min(s.pageCount, (sorted[runEnd] + 1) * DirtyBitmap.pagesPerBlock) - first
            let a = monotonicNanos()
            do { try machine.vm.clearDirtyLog(slot: s.id, firstPage: first, numPages: count, from: source) } catch { throw .kvm(error) }
            let clearedAt = monotonicNanos()
            nanos += clearedAt - a
            calls += 1
            meter.record(.clear, start: a, end: clearedAt)
            defer { meter.record(.copy, start: clearedAt, end: monotonicNanos()) }
            let blocks = sorted[runStart]..<(sorted[runEnd] + 1)
            do {
                switch target {
                case .memory(let sink):
                    copied += try copyBlocks(blocks, of: dirty, slot: slot, into: sink, consumer: &consumer, ignored: &ignored, protectedAt: clearedAt)
                case .stream(let sink):
                    copied += try copyBlocks(blocks, of: dirty, slot: slot, into: sink, consumer: &consumer, ignored: &ignored, protectedAt: clearedAt)
                }
            } catch {
                throw .migration(error)
            }
            runStart = runEnd + 1
        }
        watched[slot] = (mask, sorted.count)
        return BlockClear(slot: slot, blocks: sorted, calls: calls, pagesCleared: seesBits ? dirty.count : nil,
                          maskPages: seesBits ? dirty.count : mask.count, pagesCopied: copied, clearNanos: nanos,
                          mode: mode, policy: effectivePolicy)
    }

    /// The user's CLEAR: the dirty pages of `blocks` copied into `sink`.
    private func copyBlocks<Sink: PageSink>(_ blocks: Range<Int>, of dirty: DirtyBitmap, slot: Int, into sink: Sink, consumer: inout Consumer,
                                            ignored: inout FalsePositiveBuffer, protectedAt: UInt64) throws(MigrationError) -> Int {
        let s = machine.dataSlots[slot]
        let copied = try dirty.withUnsafeWords { (words) throws(MigrationError) in
            try lastCopy[slot].withUnsafeMutableBufferPointer { (notes) throws(MigrationError) in
                try consumer.copy(words: words, blocks, slot: slot, source: s.memory, sink: sink, method: method,
                                  falsePositives: &ignored, notes: notes, protectedAt: protectedAt).copied
            }
        }
        try sink.flush()
        return copied
    }

    /// Forgets the blocks the user cleared in `slot`: they are no longer watched, and the
    /// hand policy stops re-protecting them.
    public func dropClearedBlocks(slot: Int) {
        guard slot >= 0, slot < watched.count else { return }
        watched[slot] = nil
    }

    /// Host memory held by the destination, in pages.
    public var destinationResidentPages: Int { destination.residentPages }
}

/// Where a harvester's copies go: the in-memory destination, or a migration's stream.
enum CopyTarget {
    case memory(Destination)
    case stream(StreamSink)

    /// The sink's verification (`PageSink.verify`), whichever it is.
    func verify(slot: Int, source: GuestMemory, every256Pages: () -> Void = {}) throws(MigrationError) -> (differing: DirtyBitmap, compared: Int) {
        switch self {
        case .memory(let d): return d.verify(slot: slot, source: source, every256Pages: every256Pages)
        case .stream(let s): return try s.verify(slot: slot, source: source, every256Pages: every256Pages)
        }
    }
}

/// Copies reported pages into a `PageSink` at a bandwidth, judging each page just before
/// its copy: the stamp (or content) comparison rides on the cache lines and TLB entries
/// the copy needs anyway. Pacing, and a look at the session's pokes, every 16 pages.
struct Consumer {
    private(set) var bandwidth: UInt64
    let pageSize: Int
    let control: CopyControl
    private(set) var bytes: UInt64 = 0
    /// Where the false positives found so far came from.
    private(set) var origins = FalsePositiveOrigins()
    private(set) var rewritten = 0
    /// The harvester's round these copies belong to (a CLEAR by hand: the last one harvested).
    let round: UInt64
    /// The pace counts from here: the first copy, or the last change of bandwidth.
    private var started: UInt64 = 0
    private var bytesAtStart: UInt64 = 0
    private var sincePace = 0

    init(bandwidth: UInt64, pageSize: Int, control: CopyControl, round: UInt64) {
        self.bandwidth = bandwidth
        self.round = round
        self.pageSize = pageSize
        self.control = control
        _ = control.takeBandwidthChange()   // one made between rounds is in `bandwidth` already
    }
    /// Classifies then copies the pages set in `words[range]` (a bitmap's words, bit 0 of
    /// word 0 being page 0); returns initial and copied counts. `notes` holds the slot's
    /// `CopyNote` per block: a false positive is attributed by the note of its block's
    /// last copy, then the note becomes this copy's, `protectedAt` (0: not re-protected)
    /// to now.
    mutating func copy<Sink: PageSink>(words: UnsafeBufferPointer<UInt64>, _ range: Range<Int>, slot: Int, source: GuestMemory,
                                       sink: Sink, method: FalsePositiveMethod, falsePositives: inout FalsePositiveBuffer,
                                       notes: UnsafeMutableBufferPointer<UInt64>, protectedAt: UInt64) throws(MigrationError) -> (initial: Int, copied: Int) {
        if started == 0 { started = monotonicNanos() }
        var initial = 0, copied = 0
        for w in range {
            var bits = words[w]
            guard bits != 0 else { continue }
            let previous = notes[w]
            notes[w] = CopyNote.make(protectedAt: protectedAt, copiedAt: protectedAt == 0 ? 0 : monotonicNanos(), round: round)
            var fpBits: UInt64 = 0
            while bits != 0 {
                let bit = bits.trailingZeroBitCount
                bits &= bits - 1
                let page = w << DirtyBitmap.blockShift | bit
                switch sink.classify(slot: slot, page: page, source: source, method: method) {
                case .falsePositive: fpBits |= 1 << UInt64(bit)
                case .initial: initial += 1
                case .changed: break
                }
                do {
                    try sink.send(slot: slot, page: page, source: source)
                } catch {
                    // What was sent of this word still counts; the round ends here.
                    if fpBits != 0 {
                        falsePositives.add(fpBits, word: w)
                        CopyNote.attribute(previous, count: fpBits.nonzeroBitCount, round: round, to: &origins, rewritten: &rewritten)
                    }
                    throw error
                }
                copied += 1
                sincePace += 1
                if sincePace == 16 {
                    bytes += UInt64(16 * pageSize)
                    sincePace = 0
                    pace()
                }
            }
            if fpBits != 0 {
                falsePositives.add(fpBits, word: w)
                CopyNote.attribute(previous, count: fpBits.nonzeroBitCount, round: round, to: &origins, rewritten: &rewritten)
            }
        }
        bytes += UInt64(sincePace * pageSize)
        sincePace = 0
        pace()
        return (initial, copied)
    }

    /// When `bytes` copied from `started` on are due at `bandwidth` bytes per second, in
    /// 128-bit arithmetic: a round may copy far more than the 18 GB at which
    /// `bytes * 1e9` leaves 64 bits. Saturates at `UInt64.max`.
    static func due(started: UInt64, bytes: UInt64, bandwidth: UInt64) -> UInt64 {
        guard bandwidth > 0 else { return started }
        let product = bytes.multipliedFullWidth(by: 1_000_000_000)
        guard product.high < bandwidth else { return .max }
        let (nanos, overflow) = started.addingReportingOverflow(bandwidth.dividingFullWidth(product).quotient)
        return overflow ? .max : nanos
    }

    /// Runs the session's mid-round commands when poked, then sleeps while the copy is
    /// ahead of the bandwidth, in slices of at most 100 ms, waking at once for a poke or a stop.
    private mutating func pace() {
        if control.isPoked { service() }
        while bandwidth > 0 && !control.isRequested {
            let due = Self.due(started: started, bytes: bytes &- bytesAtStart, bandwidth: bandwidth)
            let now = monotonicNanos()
            guard due > now + 200_000 else { return }
            control.sleep(untilNanos: min(due, now + CopyControl.sliceNanos))
            if control.isPoked { service() }
        }
    }

    /// The session's commands, on this thread; a new bandwidth paces what is left from now.
    private mutating func service() {
        control.serviceIfPoked()
        if let b = control.takeBandwidthChange(), b != bandwidth {
            bandwidth = b
            started = monotonicNanos()
            bytesAtStart = bytes
        }
    }
}

/// How a 64-page block's last copy went, in one word per block: the round it was copied
/// in (above the low byte), and never copied; copied while its dirty bits were still set
/// (not re-protected); or re-protected and then copied after a window in
/// `FalsePositiveOrigins` bucket k (stored as 2 + k).
enum CopyNote {
    static let never: UInt64 = 0
    static let notReprotected: UInt64 = 1

    @inline(__always)
    static func make(protectedAt: UInt64, copiedAt: UInt64, round: UInt64) -> UInt64 {
        let how = protectedAt == 0 ? notReprotected : 2 + UInt64(FalsePositiveOrigins.bucket(nanos: copiedAt &- protectedAt))
        return round << 8 | how
    }

    /// Counts `count` false positives, found in round `round`, of a block whose last copy
    /// had note `note`. A write inside the window of that copy is reported by the next
    /// harvest; when a harvest came between (the block copied two rounds ago or more) the
    /// write came after the window closed, and left the page as it was: a rewrite.
    static func attribute(_ note: UInt64, count: Int, round: UInt64, to origins: inout FalsePositiveOrigins,
                          rewritten: inout Int) {
        let how = note & 0xff, copiedIn = note >> 8
        switch how {
        case never: break
        case notReprotected: origins.neverCleared += count
        default:
            if copiedIn &+ 1 < round { rewritten += count } else { origins.byWindow[Int(how - 2)] += count }
        }
    }
}

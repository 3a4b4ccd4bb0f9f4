import DirtyScopeModel
import Pages

/// Rounds after which a block's heat is exactly zero again: a replay rebuilds the heat
/// at round k from rounds k-16...k alone. Also the most rounds a CLEAR's "before" covers.
let heatRounds = 16
/// Rounds the sparklines and the time view keep; a replay seek refolds this many (plus one).
let historyRounds = 64
/// Address buckets per slot in each row of the time view.
let timeBuckets = 256

/// One round of a slot in the time view: dirty and false-positive density per address
/// bucket, 0 (none) to 255 (every page).
struct TimeRow: Equatable {
    var dirty: [UInt8]
    var falsePositives: [UInt8]
    /// 1 where the bucket holds a block cleared by `c` in that round, else 0 (empty when none was).
    var cleared: [UInt8] = []
}

/// Reported and false-positive pages over some rounds, inside the cleared blocks and in the rest of the slot.
struct ClearCounts: Equatable {
    var rounds = 0
    /// The rounds' periods added up (each from the start of the round before it).
    var seconds: Double = 0
    var reported = 0
    var falsePositives = 0
    var restReported = 0
    var restFalsePositives = 0

    mutating func add(reported r: Int, falsePositives f: Int, slotReported: Int, slotFalsePositives: Int, seconds s: Double) {
        rounds += 1
        seconds += s
        reported += r
        falsePositives += f
        restReported += slotReported - r
        restFalsePositives += slotFalsePositives - f
    }
}

/// What the last manual CLEAR did: the same blocks before and after it, beside the rest
/// of the slot, computed from the rounds' bitmaps so live and replay agree. The two
/// windows hold the same number of rounds (up to `heatRounds` before it, as many after),
/// so what it shows does not change with how long ago the CLEAR was.
struct ClearComparison: Equatable {
    let clear: BlockClear
    /// The cleared blocks inside the slot, sorted and unique.
    let blocks: [Int]
    /// The round the CLEAR followed.
    let afterRound: UInt64
    /// Up to `heatRounds` rounds before the CLEAR (what was kept).
    var before = ClearCounts()
    /// The first `window` rounds after the CLEAR.
    var since = ClearCounts()

    /// Rounds in each window: the rounds kept before the CLEAR, or `heatRounds` when it
    /// came before any round.
    var window: Int { before.rounds > 0 ? before.rounds : heatRounds }
    var sinceComplete: Bool { since.rounds >= window }
}

/// A memslot as the UI sees it: heat per 64-page block, the last round's bitmaps,
/// the last manual CLEAR and what it did since.
struct SlotView: Equatable {
    let info: SlotInfo
    /// Per block: `heatRounds` when reported this round, one less each round after.
    var heat: [UInt8]
    var reported: DirtyBitmap
    var falsePositives: DirtyBitmap
    /// Pages reported and false positives in this slot in the last round.
    var lastReported = 0
    var lastFalsePositives = 0
    /// Blocks of the last manual CLEAR (bit per block), marked until the next `c` or `x`.
    var cleared: DirtyBitmap
    var comparison: ClearComparison?
    /// Blocks holding pages the last verification found missed (bit per block).
    var missed: DirtyBitmap
    /// Per round of the last `heatRounds` (row `index % heatRounds`) and per block: reported
    /// and false-positive pages, so a CLEAR can be compared with the rounds before it.
    private(set) var recentReported: [UInt8]
    private(set) var recentFalsePositives: [UInt8]
    /// The round each row holds (0: none), its period in seconds, and the slot's counts in it.
    private(set) var recentRound: [UInt64]
    private(set) var recentSeconds: [Double]
    private(set) var recentSlotCounts: [ClearCounts]
    var timeRows: [TimeRow] = []

    init(_ info: SlotInfo) {
        self.info = info
        heat = [UInt8](repeating: 0, count: info.blocks)
        reported = DirtyBitmap(pageCount: info.pages)
        falsePositives = DirtyBitmap(pageCount: info.pages)
        cleared = DirtyBitmap(pageCount: info.blocks)
        missed = DirtyBitmap(pageCount: info.blocks)
        recentReported = [UInt8](repeating: 0, count: info.blocks * heatRounds)
        recentFalsePositives = [UInt8](repeating: 0, count: info.blocks * heatRounds)
        recentRound = [UInt64](repeating: 0, count: heatRounds)
        recentSeconds = [Double](repeating: 0, count: heatRounds)
        recentSlotCounts = [ClearCounts](repeating: ClearCounts(), count: heatRounds)
    }

    /// Folds this slot's share of round number `round`, which came `seconds` after the one before it.
    mutating func fold(_ bitmaps: SlotBitmaps, round: UInt64, seconds: Double) {
        reported = bitmaps.reported.pageCount == info.pages ? bitmaps.reported : DirtyBitmap(pageCount: info.pages)
        falsePositives = bitmaps.falsePositives.pageCount == info.pages
            ? bitmaps.falsePositives : DirtyBitmap(pageCount: info.pages)
        let hot = UInt8(heatRounds)
        let row = Int(round % UInt64(heatRounds))
        let blocks = info.blocks
        var slotReported = 0, slotFalsePositives = 0
        reported.withUnsafeWords { words in
        falsePositives.withUnsafeWords { fps in
        heat.withUnsafeMutableBufferPointer { heat in
        recentReported.withUnsafeMutableBufferPointer { recentReported in
        recentFalsePositives.withUnsafeMutableBufferPointer { recentFalsePositives in
            let base = row * blocks
            for i in 0..<blocks {
                let w = words[i], f = fps[i]
                heat[i] = w != 0 ? hot : (heat[i] > 0 ? heat[i] - 1 : 0)
                let r = w.nonzeroBitCount, p = f.nonzeroBitCount
                recentReported[base + i] = UInt8(truncatingIfNeeded: r)
                recentFalsePositives[base + i] = UInt8(truncatingIfNeeded: p)
                slotReported += r
                slotFalsePositives += p
            }
        }
        }
        }
        }
        }
        lastReported = slotReported
        lastFalsePositives = slotFalsePositives
        recentRound[row] = round
        recentSeconds[row] = seconds
        var counts = ClearCounts()
        counts.add(reported: slotReported, falsePositives: slotFalsePositives, slotReported: slotReported,
                   slotFalsePositives: slotFalsePositives, seconds: seconds)
        recentSlotCounts[row] = counts
        if var c = comparison, round > c.afterRound, !c.sinceComplete {
            let (r, f) = blockCounts(row: row, blocks: c.blocks)
            c.since.add(reported: r, falsePositives: f, slotReported: slotReported, slotFalsePositives: slotFalsePositives,
                        seconds: seconds)
            comparison = c
        }
        timeRows.append(TimeRow(dirty: densities(reported), falsePositives: densities(falsePositives),
                                cleared: comparison == nil ? [] : clearedBuckets()))
        if timeRows.count > historyRounds { timeRows.removeFirst(timeRows.count - historyRounds) }
    }

    /// Records a manual CLEAR made after round `round`: its blocks' counts over the kept
    /// rounds up to `round` become the "before".
    mutating func noteClear(_ clear: BlockClear, afterRound round: UInt64) {
        let blocks = Array(Set(clear.blocks.filter { $0 >= 0 && $0 < info.blocks })).sorted()
        var c = ClearComparison(clear: clear, blocks: blocks, afterRound: round)
        for row in 0..<heatRounds {
            let r = recentRound[row]
            guard r != 0, r <= round, r + UInt64(heatRounds) > round else { continue }
            let (rep, fp) = blockCounts(row: row, blocks: blocks)
            c.before.add(reported: rep, falsePositives: fp, slotReported: recentSlotCounts[row].reported,
                         slotFalsePositives: recentSlotCounts[row].falsePositives, seconds: recentSeconds[row])
        }
        comparison = c
        cleared.clearAll()
        for block in blocks { cleared[block] = true }
    }

    /// Forgets the last CLEAR (`x`).
    mutating func dropClear() {
        comparison = nil
        cleared.clearAll()
    }

    /// Marks the blocks a verification found missed pages in, replacing the last ones.
    mutating func noteMissed(_ blocks: [Int]) {
        missed.clearAll()
        for b in blocks where b >= 0 && b < info.blocks { missed[b] = true }
    }

    private func blockCounts(row: Int, blocks: [Int]) -> (Int, Int) {
        let base = row * info.blocks
        var r = 0, f = 0
        for b in blocks {
            r += Int(recentReported[base + b])
            f += Int(recentFalsePositives[base + b])
        }
        return (r, f)
    }

    /// Per time-view bucket, 1 where it holds a cleared block.
    private func clearedBuckets() -> [UInt8] {
        let pages = info.pages
        let n = min(timeBuckets, pages)
        return (0..<n).map { b in
            let lo = b * pages / n, hi = (b + 1) * pages / n
            return cleared.count(in: (lo >> 6)..<((hi + 63) >> 6)) > 0 ? 1 : 0
        }
    }

    private func densities(_ bitmap: DirtyBitmap) -> [UInt8] {
        let pages = info.pages
        let n = min(timeBuckets, pages)
        guard n > 0, !bitmap.isEmpty else { return [UInt8](repeating: 0, count: n) }
        return (0..<n).map { b in
            let lo = b * pages / n, hi = (b + 1) * pages / n
            let set = bitmap.count(in: lo..<hi)
            return set == 0 ? 0 : UInt8(max(1, set * 255 / (hi - lo)))
        }
    }
}

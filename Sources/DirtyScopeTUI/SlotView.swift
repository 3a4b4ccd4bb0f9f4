import DirtyScopeModel
import Pages

/// Rounds after which a block's heat is exactly zero again: a replay rebuilds the heat
/// at round k from rounds k-16...k alone.
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
}

/// Reported and false-positive pages inside the last cleared blocks next to the whole slot's, one round.
struct WatchSample: Equatable {
    var watched: WatchedBlocks
    var slotReported: Int
    var slotFalsePositives: Int
}

/// A memslot as the UI sees it: heat per 64-page block, the last round's bitmaps,
/// the last manual CLEAR and what it did since.
struct SlotView: Equatable {
    let info: SlotInfo
    /// Per block: `heatRounds` when reported this round, one less each round after.
    var heat: [UInt8]
    var reported: DirtyBitmap
    var falsePositives: DirtyBitmap
    /// Blocks of the last manual CLEAR (bit per block), marked for `heatRounds` rounds.
    var cleared: DirtyBitmap
    var clearedAtRound: UInt64 = 0
    var lastClear: BlockClear?
    /// Rounds since the last CLEAR that reported on the watched blocks (at most `heatRounds`).
    var watch: [WatchSample] = []
    var timeRows: [TimeRow] = []

    init(_ info: SlotInfo) {
        self.info = info
        heat = [UInt8](repeating: 0, count: info.blocks)
        reported = DirtyBitmap(pageCount: info.pages)
        falsePositives = DirtyBitmap(pageCount: info.pages)
        cleared = DirtyBitmap(pageCount: info.blocks)
    }

    /// Folds this slot's share of round number `round`.
    mutating func fold(_ slotRound: SlotRound, round: UInt64) {
        reported = slotRound.reported.pageCount == info.pages ? slotRound.reported : DirtyBitmap(pageCount: info.pages)
        falsePositives = slotRound.falsePositives.pageCount == info.pages
            ? slotRound.falsePositives : DirtyBitmap(pageCount: info.pages)
        let hot = UInt8(heatRounds)
        reported.withUnsafeWords { words in
            heat.withUnsafeMutableBufferPointer { heat in
                for i in heat.indices {
                    heat[i] = words[i] != 0 ? hot : (heat[i] > 0 ? heat[i] - 1 : 0)
                }
            }
        }
        if let watched = slotRound.watched {
            watch.append(WatchSample(watched: watched, slotReported: slotRound.reportedCount,
                                     slotFalsePositives: slotRound.falsePositiveCount))
            if watch.count > heatRounds { watch.removeFirst(watch.count - heatRounds) }
        }
        timeRows.append(TimeRow(dirty: densities(reported), falsePositives: densities(falsePositives)))
        if timeRows.count > historyRounds { timeRows.removeFirst(timeRows.count - historyRounds) }
    }

    /// Records a manual CLEAR made after round `round`.
    mutating func noteClear(_ clear: BlockClear, afterRound round: UInt64) {
        lastClear = clear
        clearedAtRound = round
        watch = []
        cleared.clearAll()
        for block in clear.blocks where block >= 0 && block < info.blocks { cleared[block] = true }
    }

    /// Forgets the last CLEAR (`x`).
    mutating func dropClear() {
        lastClear = nil
        watch = []
        cleared.clearAll()
    }

    /// True while the last CLEAR's blocks are still marked, at round `round`.
    func clearedMarked(at round: UInt64) -> Bool {
        lastClear != nil && round < clearedAtRound + UInt64(heatRounds) && !cleared.isEmpty
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

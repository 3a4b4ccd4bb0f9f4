#if canImport(Glibc)
import Glibc
#endif
import DirtyScopeModel
import Pages

/// Measures the UI's own cost on synthetic data: folding rounds and rendering frames
/// (render plus the diff the backend draws from), no terminal involved.
public enum RenderBenchmark {
    public struct Result: Sendable, CustomStringConvertible {
        public var millisecondsPerFrame: Double
        public var framesPerSecond: Double
        /// Folding one harvest round into the state.
        public var millisecondsPerRound: Double

        public var description: String {
            "render \(Format.fixed(millisecondsPerFrame, 3)) ms/frame (\(Format.fixed(framesPerSecond, 0)) frames/s), "
                + "fold \(Format.fixed(millisecondsPerRound, 3)) ms/round"
        }
    }

    /// Renders `frames` frames at `width` x `height` of `gibibytes` GiB of memory in `slots`
    /// memslots (host page size), about 1% of blocks dirty per round, after folding `rounds` rounds.
    public static func run(gibibytes: Int = 64, slots: Int = 4, width: Int = 200, height: Int = 60,
                           rounds: Int = 32, frames: Int = 200) -> Result {
        let pagesPerSlot = gibibytes << 30 / PageSize.system / max(1, slots)
        let slotInfos = (0..<max(1, slots)).map {
            SlotInfo(index: $0, kvmSlot: UInt32($0), guestPhysicalAddress: UInt64($0 * pagesPerSlot * PageSize.system),
                     pages: pagesPerSlot)
        }
        let info = SessionInfo(
            toolVersion: "bench", hostKernel: "", pageSize: PageSize.system, slots: slotInfos, vcpus: 4,
            guestName: "workload", capabilities: [:], mode: .manual, clearChunk: .pages(64),
            workload: WorkloadSettings(workload: .random), intervalNanos: 100_000_000, bandwidth: 1 << 30,
            ringEntries: 0, falsePositiveMethod: .stamp, startTime: 0)
        var state = AppState(info: info)
        _ = state.handle(.resize(width: width, height: height))
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func random() -> UInt64 {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17
            return seed
        }
        let rounds = (0..<rounds).map { r in
            let bitmaps = slotInfos.map { slot -> SlotBitmaps in
                var reported = DirtyBitmap(pageCount: slot.pages)
                var falsePositives = DirtyBitmap(pageCount: slot.pages)
                for _ in 0..<(slot.blocks / 100) {
                    let block = Int(random() % UInt64(slot.blocks))
                    let bits = random()
                    reported.setWord(block, bits)
                    falsePositives.setWord(block, bits & random() & random())
                }
                return SlotBitmaps(reported: reported, falsePositives: falsePositives)
            }
            var m = RoundMetrics(mode: .manual, clearChunk: .pages(64))
            m.index = UInt64(r + 1)
            m.startNanos = UInt64(r) * 100_000_000
            m[.durationNanos] = 1_000_000
            m.slots = slotInfos.map { SlotMetrics(slot: $0.index) }
            return Round(counting: m, bitmaps: bitmaps)
        }
        let foldStart = now()
        for round in rounds { state.fold(.round(round)) }
        let foldNanos = now() - foldStart
        let theme = Theme(glyphs: .unicode, colors: .colors256)
        var previous = Render.screen(state, theme: theme)
        var changedRuns = 0
        let renderStart = now()
        for frame in 0..<frames {
            state.cursors[0] = frame
            let screen = Render.screen(state, theme: theme)
            changedRuns += screen.changes(from: previous).count
            previous = screen
        }
        let frameMillis = Double(now() - renderStart) / 1e6 / Double(max(1, frames))
        precondition(changedRuns > 0, "the benchmark's frames did not change")
        return Result(millisecondsPerFrame: frameMillis, framesPerSecond: 1000 / frameMillis,
                      millisecondsPerRound: Double(foldNanos) / 1e6 / Double(max(1, rounds.count)))
    }

    private static func now() -> UInt64 { TerminalUI.clock(CLOCK_MONOTONIC) }
}

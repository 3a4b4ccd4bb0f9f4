import DirtyScopeModel
import DirtyScopeRecording
import Foundation

/// Times `plot` on a large synthetic recording (`dirtyscope bench --suite plot`): seconds
/// and bytes per kind. Figures, not verdicts.
public enum PlotBenchmark {
    /// 10,000 rounds of a 4 GiB guest (2 slots of 524,288 pages), hot-set rounds with a
    /// mode switch every 1,000 rounds.
    public static func run(rounds: Int = 10_000, slots: Int = 2, pagesPerSlot: Int = 524_288,
                           directory: String = FileManager.default.temporaryDirectory.path) throws -> String {
        let info = SyntheticRounds.sessionInfo(slots: slots, pagesPerSlot: pagesPerSlot)
        let path = directory + "/dirtyscope-plot-bench-\(getpid()).dsrec"
        defer { unlink(path) }
        var generator = SyntheticRounds(shape: .hotset, info: info)
        let t0 = Date()
        let writer = try RecordingWriter(path: path, info: info)
        for i in 0..<rounds {
            var round = generator.nextRound()
            if (i / 1000) % 2 == 1 { round.metrics.mode = .legacy; round.clearPolicy = .auto }
            try writer.append(.round(round))
        }
        try writer.finish()
        let written = Date().timeIntervalSince(t0)
        let reader = try RecordingReader(path: path)
        let gib = Double(slots * pagesPerSlot * info.pageSize) / Double(1 << 30)
        var out = String(format: "plot: %d rounds of a %.1f GiB guest (%d slots), recording of %.1f MiB written in %.1f s\n",
                         rounds, gib, slots, Double(reader.fileSize) / 1_048_576, written)
        for kind in Plot.Kind.allCases {
            var options = Plot.Options()
            options.kind = kind
            let start = Date()
            let svg = try Plot.render(reader, options)
            out += kind.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)
                + String(format: "%6.2f s  %8.1f KiB\n", Date().timeIntervalSince(start), Double(svg.utf8.count) / 1024)
        }
        return out
    }
}

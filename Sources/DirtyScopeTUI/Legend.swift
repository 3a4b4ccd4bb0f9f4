/// What each heatmap glyph means, in one table: the legend line draws it at the width
/// it has, the help overlay explains it in full.
enum Legend {
    struct Item {
        /// The sample cells: glyphs and the role each is drawn in.
        var sample: [(Unicode.Scalar, Role)]
        /// For the legend line, longest first; the line uses the longest set that fits.
        var labels: [String]
        /// For the help overlay.
        var explanation: String
    }

    /// `monochrome`: a selection has no background to show, so its sample is its glyph.
    static func items(_ g: Glyphs, showFalsePositives: Bool, monochrome: Bool = false) -> [Item] {
        [
            Item(sample: g.dirty.map { ($0, .dirty) },
                 labels: ["reported this round: 25/50/75/100% of the cell's pages", "% of cell reported now", "% reported", "% now"],
                 explanation: "reported now, % of cell pages"),
            Item(sample: zip(g.recent, Role.heat).map { ($0, $1) },
                 labels: ["heat: dirty within the last 16 rounds", "heat over 16 rounds", "heat 16r", "heat"],
                 explanation: "heat: dirty in last 16 rounds"),
            Item(sample: [(g.falsePositive, .falsePositive)],
                 labels: showFalsePositives ? ["false positive (f hides)", "false positive", "FP", "FP"]
                                            : ["false positive (f: off)", "FP (f: off)", "FP off", "off"],
                 explanation: "FP: reported but unchanged"),
            Item(sample: [(g.cleared, .clearedMark), (g.clearedReported[3], .cleared)],
                 labels: ["cleared by c (quiet, reported)", "cleared", "cleared", "clr"],
                 explanation: "cleared by c: quiet, reported"),
            Item(sample: [(g.missed, .alert)], labels: ["missed: a lost write (verifier)", "missed", "missed", "lost"],
                 explanation: "missed: a write the log lost"),
            Item(sample: [(monochrome ? g.selected : " ", .selected)], labels: ["selected", "selected", "sel", "sel"],
                 explanation: "selected for c (space v a)"),
            Item(sample: [(g.cursor, .cursor)], labels: ["cursor", "cursor", "cursor", "cur"],
                 explanation: "cursor: one 64-page block"),
        ]
    }

    /// Draws the legend on row `y` from column 1, with the longest labels that fit `width`.
    static func draw(_ screen: inout Screen, y: Int, width: Int, theme: Theme, showFalsePositives: Bool) {
        let items = items(theme.glyphs, showFalsePositives: showFalsePositives, monochrome: theme.colors == .monochrome)
        let tiers = items.first!.labels.count
        var tier = tiers - 1
        for t in 0..<tiers {
            let length = items.reduce(0) { $0 + $1.sample.count + 1 + $1.labels[t].count } + 2 * (items.count - 1)
            if length <= width - 2 { tier = t; break }
        }
        var x = 1
        for (i, item) in items.enumerated() {
            if i > 0 { x += 2 }
            for (glyph, role) in item.sample {
                screen[x, y] = Cell(glyph, theme.role(role))
                x += 1
            }
            x = screen.put(" " + item.labels[tier], x: x, y: y, role: theme.role(.dim), maxWidth: max(0, width - x))
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import DirtyScopeModel

/// The metrics panel: counts per round and in total, what false positives cost at the
/// consumer's bandwidth, the FP rate of each mode and policy used, what the last CLEAR did
/// to its blocks, and the FP% history on a fixed log scale. Rows have priorities: a short
/// panel drops the least important rows, never cuts a label.
enum Metrics {
    enum Row {
        case section(String)
        case text(String, Role)
        /// Row `index` (0 = top) of the FP% chart.
        case chart(index: Int)
        /// Marks under the chart: mode or policy switches and CLEARs.
        case marks
        case dirty
    }

    /// The FP% chart's scale: 0.01% at the bottom, 100% at the top, log10.
    static let logDecades = (low: -2.0, high: 2.0)

    static func draw(_ screen: inout Screen, state: AppState, in rect: Rect, theme: Theme) {
        let x = rect.x + 1, w = rect.width - 2
        guard w > 0, rect.height > 0 else { return }
        // The chart takes the rows nothing else needs: a tall terminal gets a finer scale.
        let minimumChart = w >= 40 ? 6 : 3
        let others = rows(state, width: w, height: rect.height, chartRows: minimumChart, micro: theme.glyphs.micro).count - minimumChart
        let all = rows(state, width: w, height: rect.height, chartRows: max(minimumChart, rect.height - others),
                       micro: theme.glyphs.micro)
        // Keep the most important rows that fit, in their order; a section's title comes
        // with its first kept row and costs a row then, never alone.
        var keep = [Bool](repeating: false, count: all.count)
        var sectionOf = [Int?](repeating: nil, count: all.count)
        var section: Int?
        for i in all.indices {
            if case .section = all[i].row { section = i } else { sectionOf[i] = section }
        }
        var used = 0
        for i in all.indices.sorted(by: { (all[$0].priority, $0) < (all[$1].priority, $1) }) {
            if case .section = all[i].row { continue }
            let title = sectionOf[i].flatMap { keep[$0] ? nil : $0 }
            let cost = title == nil ? 1 : 2
            guard used + cost <= rect.height else { continue }
            keep[i] = true
            if let title { keep[title] = true }
            used += cost
        }
        let kept = all.indices.filter { keep[$0] }.map { all[$0].row }
        let chartRows = kept.filter { if case .chart = $0 { return true } else { return false } }.count
        // Each round's level on the chart's log scale, once for all its rows.
        let plotWidth = max(0, w - chartLabelWidth - chartValueWidth)
        let levels = state.session.history.suffix(plotWidth).map { logLevel($0.falsePositiveFraction, levels: 8 * chartRows) }
        var y = rect.y
        var chartRow = 0
        for row in kept {
            switch row {
            case .section(let name):
                screen.fill(x: x, y: y, width: w, height: 1, with: Cell(theme.glyphs.horizontal, theme.role(.border)))
                screen.put(" " + name + " ", x: x + 1, y: y, role: theme.role(.title), maxWidth: w - 1)
            case .text(let text, let role):
                screen.put(text, x: x, y: y, role: theme.role(role), maxWidth: w)
            case .chart:
                chart(&screen, state: state, levels: levels, x: x, y: y, width: w, row: chartRow, of: chartRows, theme: theme)
                chartRow += 1
            case .marks:
                marks(&screen, state: state, x: x, y: y, width: w, theme: theme)
            case .dirty:
                dirty(&screen, state: state, x: x, y: y, width: w, theme: theme)
            }
            y += 1
        }
    }

    /// Widths of the two value columns and the label before them.
    private static func valueWidth(_ w: Int) -> Int { w >= 40 ? 10 : 8 }

    /// What each row of the panel is, for the help's second page: one line per row, in
    /// the panel's order, the labels exactly as the panel prints them.
    static func explanations(bandwidthLabel: String) -> [(label: String, text: String)] {
        [
            ("reported", "pages the dirty log (or ring) reported: this round, the session's total"),
            ("false pos", "reported pages unchanged since their last copy: copied for nothing"),
            ("FP rate", "false pos over the reported pages that were not first copies"),
            ("missed", "changed pages never reported, found by a verification; must be 0"),
            ("verifications (verified)", "verification points so far: vCPUs paused, every page compared"),
            ("FP MiB", "MiB the false positives made the consumer copy"),
            (bandwidthLabel, "seconds of copy those MiB cost at the consumer's bandwidth"),
            ("GET, CLEAR", "per call: this round's last, and the longest of the session (ring mode: harvest, reset)"),
            ("guest writes/s (writes/s)", "page writes the guest made per second (its own counters)"),
            ("WP faults/s", "write-protect faults per second (KVM's pf_taken; 0 where KVM does not count them)"),
            ("copied MiB/s", "MiB copied per second of the round, from its GET to the end of its copy: at most the bandwidth"),
            ("by mode", "each mode and clear policy used: FP rate, FP MiB, FP seconds at the bandwidth"),
            ("CLEAR", "the same blocks over equal windows: the rounds before the CLEAR, as many after it"),
            ("FP/round, FP/second", "false positives per cleared block per round, per second of those rounds"),
            ("rest FP/rnd", "false positives per block per round in the rest of the slot"),
            ("reported/rnd", "reported pages per cleared block per round; rest rep/rnd: the rest of the slot"),
            ("FP% log", "each round's FP rate, log scale 0.01% to 100%; m: mode or policy switch, c: CLEAR"),
            ("rep/s", "reported pages per second each round, false positives included"),
            ("race", "where this round's false positives came from: written after GET or CLEAR, before the copy (the window, 1µs-16s); never cleared (hand); rewritten unchanged"),
        ]
    }

    /// "FP s@64M": the label of the row that prices false positives at the bandwidth.
    static func bandwidthCostLabel(_ bytesPerSecond: UInt64) -> String { "FP s@" + compactBandwidth(bytesPerSecond) }

    private static func rows(_ state: AppState, width w: Int, height: Int, chartRows: Int, micro: String) -> [(row: Row, priority: Int)] {
        var rows: [(row: Row, priority: Int)] = []
        func add(_ row: Row, _ priority: Int) { rows.append((row, priority)) }
        let vw = valueWidth(w), labelWidth = max(1, w - 2 * vw)
        func columns(_ label: String, _ a: String, _ b: String) -> String {
            pad(label, labelWidth) + leftPad(a, vw) + leftPad(b, vw)
        }
        /// The long label where it fits, else the short one (the help gives both).
        func label(_ long: String, _ short: String) -> String { long.count <= labelWidth ? long : short }
        let round = state.session.lastRound
        let totals = state.session.totals
        let seconds = state.session.lastRoundSeconds
        let pageSize = Double(state.info.pageSize)
        let bandwidth = Double(max(1, state.session.bandwidth))
        func mib(_ pages: UInt64) -> String { Format.mebibytes(Double(pages) * pageSize) }
        func secs(_ pages: UInt64) -> String { Format.seconds(Double(pages) * pageSize / bandwidth) }
        /// The last round's value of `metric` shown by `format`, "-" before the first round.
        func now(_ metric: Metric, _ format: (UInt64) -> String) -> String { round.map { format($0[metric]) } ?? "-" }
        func perSecond(_ metric: Metric) -> String { now(metric) { Format.count(Double($0) / seconds) } }

        add(.section("round \(state.roundIndex)"), 0)
        add(.text(columns("", "round", "total"), .dim), 1)
        add(.text(columns(Metric.reportedPages.label, now(.reportedPages, Format.count), Format.count(totals[.reportedPages])), .plain), 2)
        add(.text(columns(Metric.falsePositivePages.label, now(.falsePositivePages, Format.count), Format.count(totals[.falsePositivePages])),
                  .falsePositive), 0)
        add(.text(columns(Metric.falsePositiveFraction.label, round.map { Format.percentFine($0.falsePositiveFraction) } ?? "-",
                          Format.percentFine(totals.falsePositiveFraction)), .plain), 0)
        let missedNow = round?.missed.map { Format.count($0) } ?? "-"
        add(.text(columns(Metric.missedPages.label, missedNow, Format.count(totals[.missedPages])),
                  (round?.missed ?? 0) > 0 || totals[.missedPages] > 0 ? .alert : .plain), 0)
        add(.text(columns(label(Metric.verifications.label, "verified"), "", "\(totals[.verifications])"), .dim), 6)
        add(.text(columns("FP MiB", now(.falsePositivePages, mib), mib(totals[.falsePositivePages])), .plain), 3)
        let costLabel = bandwidthCostLabel(state.session.bandwidth)
        add(.text(columns(costLabel.count <= labelWidth ? costLabel : "FP seconds",
                          now(.falsePositivePages, secs), secs(totals[.falsePositivePages])), .plain), 2)
        add(.text(columns("per call", "last", "max"), .dim), 4)
        add(.text(columns(Metric.getDirtyLog.label, round.map { Format.duration($0.getDirtyLog.lastNanos, micro: micro) } ?? "-",
                          Format.duration(totals.getDirtyLog.maxNanos, micro: micro)), .plain), 4)
        add(.text(columns(Metric.clearDirtyLog.label, round.map { Format.duration($0.clearDirtyLog.lastNanos, micro: micro) } ?? "-",
                          Format.duration(totals.clearDirtyLog.maxNanos, micro: micro)), .plain), 4)
        add(.text(columns(label(Metric.guestWrites.label + "/s", "writes/s"), perSecond(.guestWrites), ""), .plain), 5)
        add(.text(columns(Metric.writeProtectFaults.label + "/s", perSecond(.writeProtectFaults), ""), .plain), 6)
        // Over the round's own time, its GET to the end of its copy: a paced copy reads at
        // most the bandwidth (the copy alone, CLEARs left out, can run faster between them).
        let copyRate = round.map { r in
            Format.fixed(Double(r[.copiedBytes]) / 1_048_576 / max(Double(r[.durationNanos]) / 1e9, 1e-9), 1)
        }
        add(.text(columns("copied MiB/s", copyRate ?? "-", ""), .plain), 6)
        GuestRows.add(state, width: w, micro: micro, columns: columns, add: add)

        // The FP rate of each mode and policy this session used: every one of them is the
        // comparison the panel exists for, so all are kept with the running one.
        if !state.session.bySetting.isEmpty {
            let wide = w >= 40
            // With a guest timeline, each mode's throughput against untracked and its time stalled too.
            let guest = totals[.guestWorkNanos] > 0
            let guestTitle = GuestStrip.baseline(state) == nil ? ", wr/s, stall" : ", vs untr, stall"
            add(.section((wide ? "FP rate, MiB and s@bw" : "FP rate") + (guest && w >= 30 ? guestTitle : "") + " by mode"), 1)
            let settings = state.session.bySetting.keys.sorted()
            let nameWidth = max(8, settings.map(\.description.count).max() ?? 0)
            for setting in settings {
                let t = state.session.bySetting[setting]!
                var text = pad(setting.description, nameWidth) + leftPad(Format.percentFine(t.falsePositiveFraction), wide ? 8 : 7)
                if wide {
                    text += leftPad(mib(t[.falsePositivePages]), 9) + leftPad(secs(t[.falsePositivePages]), 8)
                }
                let guestColumns = GuestRows.modeColumns(state, setting)
                if text.count + guestColumns.count <= w { text += guestColumns }
                add(.text(text, setting == state.session.lastSetting ? .bold : .plain), 1)
            }
        }

        clearRows(state, width: w, columns: columns, add: add)

        add(.section(w >= 48 ? "FP% log 0.01-100%  m: mode/policy  c: CLEAR"
                     : (w >= 36 ? "FP% log 0.01-100%  m:mode c:CLEAR" : "FP% log  m:mode c:CLEAR")), 1)
        for i in 0..<chartRows { add(.chart(index: i), i == 0 ? 1 : (i < 3 ? 3 : 5 + i)) }
        add(.marks, 1)
        add(.dirty, 5)
        return rows
    }

    /// The last manual CLEAR of the selected slot: the same blocks before it and since, beside the rest of the slot.
    private static func clearRows(_ state: AppState, width w: Int, columns: (String, String, String) -> String,
                                  add: (Row, Int) -> Void) {
        let slot = state.session.slots[state.selectedSlot]
        add(.section("CLEAR slot \(slot.info.index)"), 0)
        let policy = state.session.clearPolicy
        let policyText = state.session.mode == .manual
            ? "policy \(policy.rawValue): \(policy.explanation)"
            : "policy \(policy.rawValue) (applies in manual mode)"
        guard let c = slot.comparison else {
            add(.text(state.isReplay ? "no CLEAR in view" : "select blocks, press c", .dim), 2)
            add(.text(state.session.mode == .manual ? "policy \(policy.rawValue) (o: next)" : "policy \(policy.rawValue) (manual only)",
                      .dim), 3)
            return
        }
        let clear = c.clear
        let calls = ", \(clear.calls) call\(clear.calls == 1 ? "" : "s")"
        let summary = "\(c.blocks.count) blk, "
            + (clear.pagesCleared.map { "\($0) pages cleared" } ?? "mask \(clear.maskPages ?? c.blocks.count * 64) pages")
        add(.text(summary.count + calls.count <= w ? summary + calls : summary, .cleared), 3)
        // What "pages cleared" means: first the part that must show, then the rest where there is room.
        let meaning: (String, String)
        let mask = clear.maskPages ?? c.blocks.count * 64
        if let bits = clear.pagesCleared {
            meaning = ("\(bits) dirty bits KVM cleared (GET's view of your blocks)", "")
        } else if w >= 40 {
            meaning = ("mask of \(mask) pages: KVM clears whichever were written since the last GET; userspace can't "
                       + "see them without a GET that re-arms the whole slot", "")
        } else {
            meaning = ("mask \(mask) pages: KVM clears those written since GET",
                       "(unseen: seeing them takes a GET that re-arms the whole slot)")
        }
        for line in wrap(meaning.0, w) { add(.text(line, .cleared), 2) }
        for line in wrap(meaning.1, w) { add(.text(line, .dim), 4) }
        for (i, line) in wrap(policyText, w).enumerated() { add(.text(line, .dim), 4 + i) }
        // Equal windows: the rounds kept before the CLEAR and as many after it, per block
        // per round and per second of those rounds, for the cleared blocks and the rest.
        let blocks = Double(max(1, c.blocks.count)), rest = Double(max(1, slot.info.blocks - c.blocks.count))
        func perRound(_ pages: Int, _ blocks: Double, _ counts: ClearCounts) -> String {
            counts.rounds > 0 ? Format.fixed(Double(pages) / (blocks * Double(counts.rounds)), 2) : "-"
        }
        func perSecond(_ pages: Int, _ blocks: Double, _ counts: ClearCounts) -> String {
            counts.seconds > 0 ? Format.fixed(Double(pages) / (blocks * counts.seconds), 2) : "-"
        }
        let b = c.before, n = c.since
        add(.text(columns("per block", "before", "since"), .dim), 1)
        add(.text(columns("rounds", "\(b.rounds)", c.sinceComplete ? "\(n.rounds)" : "\(n.rounds)/\(c.window)"), .plain), 0)
        add(.text(columns("seconds", Format.seconds(b.seconds), n.rounds > 0 ? Format.seconds(n.seconds) : "-"), .plain), 2)
        add(.text(columns("FP/round", perRound(b.falsePositives, blocks, b), perRound(n.falsePositives, blocks, n)), .bold), 0)
        add(.text(columns("FP/second", perSecond(b.falsePositives, blocks, b), perSecond(n.falsePositives, blocks, n)), .bold), 1)
        add(.text(columns("rest FP/rnd", perRound(b.restFalsePositives, rest, b), perRound(n.restFalsePositives, rest, n)), .plain), 3)
        add(.text(columns("reported/rnd", perRound(b.reported, blocks, b), perRound(n.reported, blocks, n)), .plain), 2)
        add(.text(columns("rest rep/rnd", perRound(b.restReported, rest, b), perRound(n.restReported, rest, n)), .plain), 3)
        // Nothing to take away: every reported page of these blocks changed between its copies.
        if b.rounds > 0, b.falsePositives == 0, b.reported > 0 {
            for line in wrap("no FP in these blocks before: each page changed between its copies (\(Format.seconds(b.seconds / Double(b.rounds))) a round)", w) {
                add(.text(line, .dim), 3)
            }
        }
    }

    /// The level (0: none, 1...levels) of an FP rate on the fixed log scale.
    static func logLevel(_ fraction: Double, levels: Int) -> Int {
        guard fraction > 0, levels > 0 else { return 0 }
        let position = (log10(fraction * 100) - logDecades.low) / (logDecades.high - logDecades.low)
        return 1 + Int((min(1, max(0, position)) * Double(levels - 1)).rounded())
    }

    private static let chartLabelWidth = 6, chartValueWidth = 7

    private static func chart(_ screen: inout Screen, state: AppState, levels: [Int], x: Int, y: Int, width: Int,
                              row: Int, of rows: Int, theme: Theme) {
        let g = theme.glyphs
        let label = rows == 1 ? "FP%" : (row == 0 ? "100%" : (row == rows - 1 ? "0.01%" : ""))
        screen.put(label, x: x, y: y, role: theme.role(.dim))
        let role = theme.role(.sparkFalsePositive)
        let floor = (rows - 1 - row) * 8
        for (i, level) in levels.enumerated() where level > floor {
            screen[x + chartLabelWidth + i, y] = Cell(g.spark[min(7, level - floor - 1)], role)
        }
        if row == 0 {
            let latest = state.session.history.last.map { Format.percentFine($0.falsePositiveFraction) } ?? "-"
            screen.put(latest, x: x + width - latest.count, y: y, role: theme.role(.bold))
        }
    }

    private static func marks(_ screen: inout Screen, state: AppState, x: Int, y: Int, width: Int, theme: Theme) {
        let plotWidth = max(0, width - chartLabelWidth - chartValueWidth)
        var col = x + chartLabelWidth
        for point in state.session.history.suffix(plotWidth) {
            switch point.mark {
            case .setting: screen[col, y] = Cell("m", theme.role(.warn))
            case .clear: screen[col, y] = Cell("c", theme.role(.cleared))
            case nil: screen[col, y] = Cell(theme.glyphs.horizontal, theme.role(.border))
            }
            col += 1
        }
    }

    private static func dirty(_ screen: inout Screen, state: AppState, x: Int, y: Int, width: Int, theme: Theme) {
        let latest = state.session.history.last.map { Format.count($0.reportedPerSecond) + "/s" } ?? "-"
        let plotWidth = max(0, width - chartLabelWidth - max(chartValueWidth, latest.count + 1))
        let shown = state.session.history.suffix(plotWidth).map(\.reportedPerSecond)
        let top = shown.max() ?? 0
        screen.put("rep/s", x: x, y: y, role: theme.role(.dim))
        var col = x + chartLabelWidth
        for v in shown {
            let level = top > 0 ? min(7, Int(v / top * 7.999)) : 0
            screen[col, y] = Cell(theme.glyphs.spark[level], theme.role(.sparkDirty))
            col += 1
        }
        screen.put(latest, x: x + width - latest.count, y: y, role: theme.role(.bold))
    }

    /// "256M", "1.5G": a bandwidth short enough for a label.
    private static func compactBandwidth(_ bytesPerSecond: UInt64) -> String {
        let m = Double(bytesPerSecond) / 1_048_576
        return m >= 1024 ? Format.fixed(m / 1024, m < 10240 ? 1 : 0) + "G" : Format.fixed(m, m < 10 ? 1 : 0) + "M"
    }

    /// `text` broken into lines of at most `width` columns at spaces.
    static func wrap(_ text: String, _ width: Int) -> [String] {
        var lines: [String] = [], line = ""
        for word in text.split(separator: " ") {
            if line.isEmpty { line = String(word) }
            else if line.count + 1 + word.count <= width { line += " " + word }
            else { lines.append(line); line = String(word) }
        }
        if !line.isEmpty { lines.append(line) }
        return lines
    }

    static func pad(_ s: String, _ n: Int) -> String {
        s.count >= n ? String(s.prefix(n)) : s + String(repeating: " ", count: n - s.count)
    }

    static func leftPad(_ s: String, _ n: Int) -> String {
        s.count >= n ? s : String(repeating: " ", count: n - s.count) + s
    }
}

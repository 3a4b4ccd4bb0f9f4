import DirtyScopeModel

/// The metrics panel: counts per round and in total, latencies, rates, the last CLEAR
/// against the whole slot, and sparklines.
enum Metrics {
    static func draw(_ screen: inout Screen, state: AppState, in rect: Rect, theme: Theme) {
        var y = rect.y
        let x = rect.x + 1, w = rect.width - 2
        let g = theme.glyphs
        func line(_ text: String, _ role: Role = .plain) {
            guard y < rect.y + rect.height else { return }
            screen.put(text, x: x, y: y, role: theme.role(role), maxWidth: w)
            y += 1
        }
        func section(_ name: String) {
            guard y < rect.y + rect.height else { return }
            screen.fill(x: x, y: y, width: w, height: 1, with: Cell(g.horizontal, theme.role(.border)))
            screen.put(" " + name + " ", x: x + 1, y: y, role: theme.role(.title), maxWidth: w - 1)
            y += 1
        }
        func columns(_ label: String, _ a: String, _ b: String) -> String {
            let labelWidth = max(1, w - 20)
            return pad(label, labelWidth) + leftPad(a, 10) + leftPad(b, 10)
        }
        let round = state.session.lastRound
        let totals = state.session.totals
        let micro = g.micro

        section("round \(state.roundIndex)")
        line(columns("", "round", "total"), .dim)
        line(columns("reported", round.map { Format.count($0.reported) } ?? "-", Format.count(totals.reported)))
        line(columns("false pos", round.map { Format.count($0.falsePositives) } ?? "-", Format.count(totals.falsePositives)),
             .falsePositive)
        let missedNow = round?.missed.map { Format.count($0) } ?? "-"
        line(columns("missed (\(totals.verifications) chk)", missedNow, Format.count(totals.missed)),
             (round?.missed ?? 0) > 0 || totals.missed > 0 ? .alert : .plain)
        line(columns("FP rate", round.map { Format.percent($0.falsePositiveRate) } ?? "-",
                     Format.percent(totals.falsePositiveRate)))
        line(columns("GET", "last", "max"), .dim)
        line(columns("", round.map { Format.duration($0.getLastNanos, micro: micro) } ?? "-",
                     Format.duration(totals.get.maxNanos, micro: micro)))
        line(columns("CLEAR", round.map { Format.duration($0.clearLastNanos, micro: micro) } ?? "-",
                     Format.duration(totals.clear.maxNanos, micro: micro)))
        line(columns("WP faults/s", round.map { Format.count($0.writeProtectFaultsPerSecond) } ?? "-", ""))
        line(columns("writes/s", round.map { Format.count($0.guestWritesPerSecond) } ?? "-", ""))
        line(columns("copy MiB/s", round.map { Format.fixed($0.copyMiBPerSecond, 1) } ?? "-", ""))

        clearSection(state: state, section: section, line: line, columns: columns)

        section("recent rounds")
        sparkline(&screen, label: "FP%  ", values: state.session.falsePositiveHistory, x: x, y: &y, width: w, rect: rect,
                  role: theme.role(.sparkFalsePositive), theme: theme)
        sparkline(&screen, label: "dirty", values: state.session.dirtyHistory, x: x, y: &y, width: w, rect: rect,
                  role: theme.role(.sparkDirty), theme: theme)
    }

    /// The last manual CLEAR of the selected slot, and what its blocks reported since,
    /// next to the whole slot: the comparison the tool exists for.
    private static func clearSection(state: AppState, section: (String) -> Void, line: (String, Role) -> Void,
                                     columns: (String, String, String) -> String) {
        let slot = state.session.slots[state.selectedSlot]
        section("CLEAR, slot \(slot.info.index)")
        if let clear = slot.lastClear {
            line("\(clear.blocks.count) blk, \(clear.pagesCleared) pages cleared, \(clear.calls) calls", .cleared)
        } else if slot.watch.isEmpty {
            line(state.isReplay ? "no CLEAR in view" : "select blocks, press c", .dim)
            return
        }
        guard let newest = slot.watch.last else { return }
        let rounds = slot.watch.count
        let watchedFP = slot.watch.reduce(0) { $0 + $1.watched.falsePositives }
        let slotFP = slot.watch.reduce(0) { $0 + $1.slotFalsePositives }
        let watchedBlocks = max(1, newest.watched.blocks)
        let slotBlocks = max(1, slot.info.blocks)
        line(columns("\(rounds) rnd since", "cleared", "slot"), .dim)
        line(columns("reported now", Format.count(newest.watched.reported), Format.count(newest.slotReported)), .plain)
        line(columns("FP now", Format.count(newest.watched.falsePositives), Format.count(newest.slotFalsePositives)),
             .falsePositive)
        line(columns("FP since", Format.count(watchedFP), Format.count(slotFP)), .falsePositive)
        line(columns("FP/blk/rnd", Format.fixed(Double(watchedFP) / Double(watchedBlocks * rounds), 2),
                     Format.fixed(Double(slotFP) / Double(slotBlocks * rounds), 2)), .bold)
    }

    private static func sparkline(_ screen: inout Screen, label: String, values: [Double], x: Int, y: inout Int,
                                  width: Int, rect: Rect, role: Role, theme: Theme) {
        guard y < rect.y + rect.height else { return }
        let latest = values.last.map { label.hasPrefix("FP") ? Format.percent($0) : Format.count($0) + "/s" } ?? "-"
        let sparkWidth = max(0, width - label.count - latest.count - 2)
        let shown = values.suffix(sparkWidth)
        let top = shown.max() ?? 0
        var col = screen.put(label + " ", x: x, y: y, role: theme.role(.dim))
        for v in shown {
            let level = top > 0 ? min(7, Int(v / top * 7.999)) : 0
            screen[col, y] = Cell(theme.glyphs.spark[level], role)
            col += 1
        }
        screen.put(latest, x: x + width - latest.count, y: y, role: theme.role(.bold))
        y += 1
    }

    private static func pad(_ s: String, _ n: Int) -> String {
        s.count >= n ? String(s.prefix(n)) : s + String(repeating: " ", count: n - s.count)
    }

    private static func leftPad(_ s: String, _ n: Int) -> String {
        s.count >= n ? s : String(repeating: " ", count: n - s.count) + s
    }
}

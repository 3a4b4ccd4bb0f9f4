import DirtyScopeModel

/// One line under the heatmaps: where this round's false positives came from. Raced ones
/// by the window between the page's re-protection (GET, or its CLEAR) and its copy, on
/// the fixed log axis of `FalsePositiveOrigins` (about 1µs to 16s); under the hand
/// policy, the ones whose dirty bit was never cleared after their copy; and the pages a
/// write after the window left as they were (silent rewrites).
enum RaceStrip {
    static func draw(_ screen: inout Screen, state: AppState, in rect: Rect, theme: Theme) {
        guard rect.width > 8, rect.height > 0, let setting = state.session.lastSetting else { return }
        let g = theme.glyphs
        let origins = state.session.lastOrigins
        let y = rect.y
        var x = screen.put("race ", x: rect.x, y: y, role: theme.role(.title))
        let raced = origins.raced
        let rewritten = Int(state.session.lastRound?[.falsePositivesRewritten] ?? 0)
        var parts: [(String, Role)] = []
        if origins.isEmpty && rewritten == 0 {
            parts.append(("no false positives this round", .dim))
        } else if raced == 0 {
            if origins.neverCleared > 0 { parts.append(("\(origins.neverCleared) FP never cleared since their copy", .warn)) }
            if rewritten > 0 {
                parts.append(((parts.isEmpty ? "" : "; ") + "\(rewritten) FP rewritten unchanged after their window", .plain))
            }
        } else {
            parts.append(("\(raced) FP: written after \(protector(setting)), before copy", .falsePositive))
            if origins.neverCleared > 0 { parts.append(("; \(origins.neverCleared) never cleared", .warn)) }
            if rewritten > 0 { parts.append(("; \(rewritten) rewritten", .plain)) }
        }
        let axisLeft = "1" + g.micro, axisRight = "16s"
        let text = parts.map(\.0).joined()
        let histogramMin = 12 + axisLeft.count + axisRight.count + 3
        let textRoom = rect.x + rect.width - x - (origins.raced > 0 ? histogramMin : 0)
        // Words first; the histogram takes what is left (one column per window bucket at most).
        if text.count > textRoom, raced > 0 {
            parts[0].0 = "\(raced) FP after \(protector(setting))"
        }
        for (t, role) in parts { x = screen.put(t, x: x, y: y, role: theme.role(role), maxWidth: rect.x + rect.width - x) }
        guard raced > 0 else { return }
        let room = rect.x + rect.width - x - 2 - axisLeft.count - axisRight.count - 2
        let buckets = FalsePositiveOrigins.bucketCount
        guard room >= 6 else { return }
        let columns = min(room, buckets * max(1, room / buckets))
        x = rect.x + rect.width - columns - axisLeft.count - axisRight.count - 2
        x = screen.put(axisLeft + " ", x: x, y: y, role: theme.role(.dim))
        var sums = [Int](repeating: 0, count: columns)
        for c in 0..<columns {
            let lo = c * buckets / columns, hi = max(lo + 1, (c + 1) * buckets / columns)
            for b in lo..<min(hi, origins.byWindow.count) { sums[c] += origins.byWindow[b] }
        }
        let top = max(1, sums.max() ?? 1)
        for (c, n) in sums.enumerated() {
            screen[x + c, y] = n == 0 ? Cell(g.horizontal, theme.role(.border))
                : Cell(g.spark[min(7, (n * 8 - 1) / top)], theme.role(.falsePositive))
        }
        screen.put(" " + axisRight, x: x + columns, y: y, role: theme.role(.dim))
    }

    /// What re-protected the page before the write that made it a false positive.
    static func protector(_ setting: HarvestSetting) -> String {
        switch (setting.mode, setting.policy) {
        case (.manual, .atGet), (.legacy, _), (.ring, _): return "GET"
        case (.manual, _): return "CLEAR"
        case (.untracked, _): return "nothing"
        }
    }
}

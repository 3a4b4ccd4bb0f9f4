import DirtyScopeModel
import DirtyScopeRecording
import Foundation

/// The false-positive fraction per round on a log scale (0.01% to 100%), a colour per
/// mode and clear policy, with the same markers as the heatmap. Rounds without false
/// positives sit on the bottom line; rounds with nothing to judge are left out.
enum FalsePositivePlot {
    static let plotWidth = 800.0, plotHeight = 400.0
    static let left = 80.0, top = 56.0, right = 200.0, bottom = 70.0
    static let floor = 1e-4

    static func render(_ reader: RecordingReader, _ selection: Selection) -> String {
        let n = selection.metrics.count
        // At most one point per horizontal pixel: a point sums the rounds it covers.
        let points = max(1, min(n, Int(plotWidth)))
        struct Point { var fp = 0, base = 0, setting: HarvestSetting, k: Int }
        var series: [Point] = []
        for p in 0..<points {
            let lo = p * n / points, hi = max(lo + 1, (p + 1) * n / points)
            var point = Point(setting: selection.metrics[lo].setting, k: lo)
            for k in lo..<hi {
                let m = selection.metrics[k]
                if m.setting != point.setting { break }  // a point never mixes two settings
                point.fp += m.count(.falsePositivePages)
                point.base += max(0, m.count(.reportedPages) - m.count(.initialPages))
            }
            series.append(point)
        }

        var svg = SVG(width: Int(left + plotWidth + right), height: Int(top + plotHeight + bottom))
        svg.comment("dirtyscope plot --kind fp: \(reader.path)")
        svg.text("False positives per round, rounds \(selection.firstRound)–\(selection.lastRound)", x: left, y: 24, size: 16, bold: true)
        svg.text("share of re-reported pages that had not changed since their copy (ground truth from the guest's stamps)",
                 x: left, y: 42, size: 11, fill: "#555555")
        svg.rect(x: left, y: top, width: plotWidth, height: plotHeight, fill: "none", stroke: "#444444")
        func y(_ f: Double) -> Double {
            let v = max(floor, min(1, f))
            return top + plotHeight * (1 - (log10(v) - log10(floor)) / -log10(floor))
        }
        func x(_ k: Int) -> Double { left + plotWidth * (n > 1 ? Double(k) / Double(n - 1) : 0.5) }
        for d in Ticks.decades(floor, 1) {
            svg.line(x1: left, y1: y(d), x2: left + plotWidth, y2: y(d), stroke: "#dddddd")
            svg.text(Ticks.percent(d), x: left - 8, y: y(d) + 4, anchor: .end, size: 11)
        }
        svg.text("≤ 0.01%", x: left - 8, y: y(floor) + 16, anchor: .end, size: 9, fill: "#777777")
        let first = Double(selection.firstRound), last = Double(selection.lastRound)
        for t in Ticks.linear(first, last) {
            let k = selection.metrics.firstIndex { Double($0.index) >= t } ?? n - 1
            svg.line(x1: x(k), y1: top + plotHeight, x2: x(k), y2: top + plotHeight + 5, stroke: "#444444")
            svg.text("\(Int(t))", x: x(k), y: top + plotHeight + 18, anchor: .middle, size: 11)
        }
        svg.text("round", x: left + plotWidth / 2, y: top + plotHeight + 38, anchor: .middle)
        svg.text("false positives", x: 20, y: top + plotHeight / 2, anchor: .middle, rotate: -90)

        for marker in selection.markers {
            svg.line(x1: x(marker.at), y1: top, x2: x(marker.at), y2: top + plotHeight, stroke: marker.isClear ? "#2ca02c" : "#000000",
                     dash: "4 3")
        }
        // One polyline per run of points in the same setting.
        var settings: [HarvestSetting] = []
        var run: [(Double, Double)] = []
        var current: HarvestSetting?
        func flush() {
            guard let s = current else { return }
            if run.count == 1 { svg.rect(x: run[0].0 - 1.5, y: run[0].1 - 1.5, width: 3, height: 3, fill: Palette.setting(s.description)) }
            svg.polyline(run, stroke: Palette.setting(s.description))
            run = []
        }
        for point in series where point.base > 0 {
            if point.setting != current { flush(); current = point.setting }
            if !settings.contains(point.setting) { settings.append(point.setting) }
            run.append((x(point.k), y(Double(point.fp) / Double(point.base))))
        }
        flush()
        // Legend: every setting drawn, with its false-positive rate over the plotted rounds.
        var ly = top + 10
        for s in settings {
            let ms = selection.metrics.filter { $0.setting == s }
            let fp = ms.reduce(0) { $0 + $1.count(.falsePositivePages) }
            let base = ms.reduce(0) { $0 + max(0, $1.count(.reportedPages) - $1.count(.initialPages)) }
            svg.rect(x: left + plotWidth + 16, y: ly - 9, width: 14, height: 10, fill: Palette.setting(s.description))
            svg.text("\(s): \(base > 0 ? Ticks.percent(Double(fp) / Double(base)) : "-")", x: left + plotWidth + 36, y: ly, size: 11)
            ly += 18
        }
        svg.line(x1: left + plotWidth + 16, y1: ly, x2: left + plotWidth + 30, y2: ly, stroke: "#000000", dash: "4 3")
        svg.text("mode, policy, workload", x: left + plotWidth + 36, y: ly + 4, size: 11)
        svg.line(x1: left + plotWidth + 16, y1: ly + 18, x2: left + plotWidth + 30, y2: ly + 18, stroke: "#2ca02c", dash: "4 3")
        svg.text("CLEAR by hand", x: left + plotWidth + 36, y: ly + 22, size: 11)
        if points < n {
            svg.text("downsampled: a point sums \(Ticks.trim(Double(n) / Double(points))) rounds", x: left, y: top + plotHeight + 58,
                     size: 11, fill: "#555555")
        }
        return svg.text
    }
}

import DirtyScopeModel
import DirtyScopeRecording
import Foundation

/// GET and CLEAR latency: the mean call per round on a log scale (top), and the log2
/// histograms of every call in the plotted rounds (bottom).
enum LatencyPlot {
    static let plotWidth = 800.0, plotHeight = 260.0, histogramHeight = 180.0
    static let left = 80.0, top = 56.0, right = 160.0, gap = 70.0, bottom = 60.0
    static let getColor = "#1f77b4", clearColor = "#ff7f0e"

    static func render(_ reader: RecordingReader, _ selection: Selection) -> String {
        let ms = selection.metrics
        let n = ms.count
        var svg = SVG(width: Int(left + plotWidth + right), height: Int(top + plotHeight + gap + histogramHeight + bottom))
        svg.comment("dirtyscope plot --kind latency: \(reader.path)")
        svg.text("KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG latency, rounds \(selection.firstRound)–\(selection.lastRound)",
                 x: left, y: 24, size: 16, bold: true)
        svg.text("mean call per round (ring mode: ring collection and KVM_RESET_DIRTY_RINGS)", x: left, y: 42, size: 11, fill: "#555555")

        let means = ms.flatMap { [$0.getDirtyLog.meanNanos, $0.clearDirtyLog.meanNanos] }.filter { $0 > 0 }
        let lo = pow(10, floor(log10(Double(means.min() ?? 100)))), hi = pow(10, ceil(log10(Double(max(1, means.max() ?? 1_000_000)))))
        let decadesSpan = max(1, log10(hi) - log10(lo))
        func y(_ v: Double) -> Double { top + plotHeight * (1 - (log10(max(lo, v)) - log10(lo)) / decadesSpan) }
        func x(_ k: Int) -> Double { left + plotWidth * (n > 1 ? Double(k) / Double(n - 1) : 0.5) }
        svg.rect(x: left, y: top, width: plotWidth, height: plotHeight, fill: "none", stroke: "#444444")
        for d in Ticks.decades(lo, hi) {
            svg.line(x1: left, y1: y(d), x2: left + plotWidth, y2: y(d), stroke: "#dddddd")
            svg.text(Ticks.nanos(d), x: left - 8, y: y(d) + 4, anchor: .end, size: 11)
        }
        let first = Double(selection.firstRound), last = Double(selection.lastRound)
        for t in Ticks.linear(first, last) {
            let k = ms.firstIndex { Double($0.index) >= t } ?? n - 1
            svg.text("\(Int(t))", x: x(k), y: top + plotHeight + 18, anchor: .middle, size: 11)
        }
        svg.text("round", x: left + plotWidth / 2, y: top + plotHeight + 36, anchor: .middle)
        for marker in selection.markers {
            svg.line(x1: x(marker.at), y1: top, x2: x(marker.at), y2: top + plotHeight, stroke: marker.isClear ? "#2ca02c" : "#000000",
                     dash: "4 3")
        }
        let points = max(1, min(n, Int(plotWidth)))
        for (name, color, stats) in [("GET", getColor, \RoundMetrics.getDirtyLog), ("CLEAR", clearColor, \RoundMetrics.clearDirtyLog)] {
            var line: [(Double, Double)] = []
            for p in 0..<points {
                let lo = p * n / points, hi = max(lo + 1, (p + 1) * n / points)
                var merged = LatencyStats()
                for k in lo..<hi { merged.merge(ms[k][keyPath: stats]) }
                if merged.count > 0 { line.append((x(lo), y(Double(merged.meanNanos)))) }
            }
            svg.polyline(line, stroke: color)
            _ = name
        }
        svg.rect(x: left + plotWidth + 16, y: top + 4, width: 14, height: 10, fill: getColor)
        svg.text("GET", x: left + plotWidth + 36, y: top + 13, size: 11)
        svg.rect(x: left + plotWidth + 16, y: top + 22, width: 14, height: 10, fill: clearColor)
        svg.text("CLEAR", x: left + plotWidth + 36, y: top + 31, size: 11)

        // Histograms of every call: bucket i holds calls of [2^i, 2^(i+1)) ns.
        var get = LatencyStats(), clear = LatencyStats()
        for m in ms { get.merge(m.getDirtyLog); clear.merge(m.clearDirtyLog) }
        let hTop = top + plotHeight + gap
        svg.text("calls by duration (all plotted rounds): GET \(get.count), CLEAR \(clear.count)", x: left, y: hTop - 12, size: 12, bold: true)
        svg.rect(x: left, y: hTop, width: plotWidth, height: histogramHeight, fill: "none", stroke: "#444444")
        let buckets = LatencyStats.bucketCount
        let used = (0..<buckets).filter { (get.histogram.indices.contains($0) && get.histogram[$0] > 0)
            || (clear.histogram.indices.contains($0) && clear.histogram[$0] > 0) }
        if let b0 = used.first, let b1 = used.last {
            let span = b1 - b0 + 1
            let peak = Double(max(1, (get.histogram + clear.histogram).max() ?? 1))
            let slot = plotWidth / Double(span)
            for b in b0...b1 {
                for (j, (h, color)) in [(get.histogram, getColor), (clear.histogram, clearColor)].enumerated() {
                    let count = b < h.count ? Double(h[b]) : 0
                    guard count > 0 else { continue }
                    // Square-root heights keep rare buckets visible next to the common ones.
                    let height = histogramHeight * (count / peak).squareRoot()
                    svg.rect(x: left + slot * Double(b - b0) + slot * (0.1 + 0.4 * Double(j)), y: hTop + histogramHeight - height,
                             width: slot * 0.4, height: height, fill: color)
                }
                if (b - b0) % max(1, span / 10) == 0 {
                    svg.text(Ticks.nanos(Double(UInt64(1) << UInt64(b))), x: left + slot * Double(b - b0), y: hTop + histogramHeight + 16,
                             size: 10)
                }
            }
            svg.text("call duration (log2 buckets; bar height: square root of the count)", x: left + plotWidth / 2,
                     y: hTop + histogramHeight + 34, anchor: .middle, size: 11)
        } else {
            svg.text("no GET or CLEAR calls in these rounds", x: left + 20, y: hTop + 30, size: 12)
        }
        return svg.text
    }
}

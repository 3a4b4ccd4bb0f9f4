import DirtyScopeModel
import DirtyScopeRecording
import Foundation

/// What tracking cost the guest: one panel per harvest setting, each vCPU's page writes
/// per second of its work time round by round (from the guest's own timeline), with the
/// untracked baseline dashed across every panel when the recording has one; under it, the
/// host's time in GET and CLEAR and the guest's stall time per round.
enum StallPlot {
    static let plotWidth = 800.0, throughputHeight = 170.0, bandHeight = 50.0, bandGap = 10.0
    static let left = 96.0, top = 84.0, right = 180.0, panelGap = 72.0, bottom = 40.0
    static let getColor = "#1f77b4", clearColor = "#ff7f0e", baselineColor = "#555555"
    /// One colour per vCPU, cycling.
    static let vcpuColors = ["#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2", "#7f7f7f", "#1f77b4"]
    /// One colour per stall cause, in `GuestStallCause` order.
    static let causeColors = ["#1f77b4", "#ff7f0e", "#e377c2", "#7f7f7f", "#bcbd22", "#d62728"]

    static func render(_ reader: RecordingReader, _ selection: Selection) -> String {
        let ms = selection.metrics
        // Panels in the order their settings first appear.
        var settings: [HarvestSetting] = []
        for m in ms where !settings.contains(m.setting) { settings.append(m.setting) }
        let vcpuCount = max(1, ms.map { $0.vcpus.map { $0.vcpu + 1 }.max() ?? 0 }.max() ?? 0)
        let panelHeight = throughputHeight + 2 * (bandGap + bandHeight) + 30
        var svg = SVG(width: Int(left + plotWidth + right),
                      height: Int(top + Double(settings.count) * (panelHeight + panelGap) + bottom))
        svg.comment("dirtyscope plot --kind stall: \(reader.path)")
        svg.text("What dirty tracking cost the guest, rounds \(selection.firstRound)–\(selection.lastRound)",
                 x: left, y: 24, size: 16, bold: true)
        svg.text("each vCPU's page writes per second of its work time (from its own timeline); under it, per round: the host's time",
                 x: left, y: 42, size: 11, fill: "#555555")
        svg.text("in KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG, and the guest's stall time by what the host was doing then",
                 x: left, y: 56, size: 11, fill: "#555555")

        let peak = max(1, ms.flatMap { $0.vcpus.map(\.throughput) }.max() ?? 1)
        let yMax = Ticks.linear(0, peak * 1.05, count: 4).last.map { max($0, peak * 1.05) } ?? peak
        let baseline = baselineThroughput(ms)
        let ioctlPeak = max(1, ms.map { $0.getDirtyLog.totalNanos &+ $0.clearDirtyLog.totalNanos }.max() ?? 1)
        let stallPeak = max(1, ms.map { $0.guestStall.totalNanos }.max() ?? 1)

        for (p, setting) in settings.enumerated() {
            let rounds = ms.filter { $0.setting == setting }
            let y0 = top + Double(p) * (panelHeight + panelGap)
            let n = rounds.count
            func x(_ k: Int) -> Double { left + plotWidth * (n > 1 ? Double(k) / Double(n - 1) : 0.5) }
            func y(_ v: Double) -> Double { y0 + throughputHeight * (1 - min(1, v / yMax)) }
            var total = MetricValues()
            for m in rounds { total.add(m.values) }
            var title = "\(setting): \(n) round\(n == 1 ? "" : "s")"
            if total.guestThroughput > 0 { title += ", \(rate(total.guestThroughput)) a vCPU" }
            if let baseline, setting.mode != .untracked, total.guestThroughput > 0 {
                title += String(format: " (%.3f of untracked)", total.guestThroughput / baseline)
            }
            if n > 0 { title += ", guest stall \(Ticks.nanos(Double(total.guestStall.totalNanos) / Double(n))) a round" }
            svg.text(title, x: left, y: y0 - 10, size: 12, bold: true)
            svg.rect(x: left, y: y0, width: plotWidth, height: throughputHeight, fill: "none", stroke: "#444444")
            for t in Ticks.linear(0, yMax, count: 4) {
                svg.line(x1: left, y1: y(t), x2: left + plotWidth, y2: y(t), stroke: "#dddddd")
                svg.text(rate(t), x: left - 8, y: y(t) + 4, anchor: .end, size: 10)
            }
            svg.text("writes/s a vCPU", x: left - 62, y: y0 + throughputHeight / 2, anchor: .middle, size: 11, rotate: -90)
            guard rounds.contains(where: { !$0.vcpus.isEmpty }) else {
                svg.text("no guest timeline in these rounds (a guest before ABI 3, or one that logs none)",
                         x: left + 20, y: y0 + 30, size: 12)
                continue
            }
            if let baseline {
                svg.line(x1: left, y1: y(baseline), x2: left + plotWidth, y2: y(baseline), stroke: baselineColor, width: 1, dash: "6 4")
            }
            // At most one point a pixel: rounds merged into their point.
            let points = max(1, min(n, Int(plotWidth)))
            func span(_ q: Int) -> Range<Int> { (q * n / points)..<max(q * n / points + 1, (q + 1) * n / points) }
            for v in 0..<vcpuCount {
                var line: [(Double, Double)] = []
                for q in 0..<points {
                    var writes: UInt64 = 0, work: UInt64 = 0
                    for k in span(q) { if let c = rounds[k].vcpus.first(where: { $0.vcpu == v }) { writes &+= c.writes; work &+= c.workNanos } }
                    if work > 0 { line.append((x(span(q).lowerBound), y(Double(writes) * 1e9 / Double(work)))) }
                }
                svg.polyline(line, stroke: vcpuColors[v % vcpuColors.count])
            }
            // Two bands, each on its own scale: the host's ioctls, the guest's stalls by cause.
            let slot = plotWidth / Double(points)
            let ioctlTop = y0 + throughputHeight + bandGap
            let stallTop = ioctlTop + bandHeight + bandGap
            for (bandTop, label, scale) in [(ioctlTop, "host ioctls", ioctlPeak), (stallTop, "guest stall", stallPeak)] {
                svg.rect(x: left, y: bandTop, width: plotWidth, height: bandHeight, fill: "none", stroke: "#444444")
                svg.text(Ticks.nanos(Double(scale)), x: left - 8, y: bandTop + 9, anchor: .end, size: 9)
                svg.text("0", x: left - 8, y: bandTop + bandHeight, anchor: .end, size: 9)
                svg.text(label, x: left + 4, y: bandTop + 11, size: 9, fill: "#777777")
            }
            for q in 0..<points {
                let range = span(q)
                let count = Double(range.count)
                var get: UInt64 = 0, clear: UInt64 = 0
                var causes = [UInt64](repeating: 0, count: GuestStallCause.allCases.count)
                for k in range {
                    get &+= rounds[k].getDirtyLog.totalNanos
                    clear &+= rounds[k].clearDirtyLog.totalNanos
                    for (i, cause) in GuestStallCause.allCases.enumerated() { causes[i] &+= rounds[k][cause.metric] }
                }
                let bx = left + slot * Double(q)
                var stack = 0.0
                for (v, color) in [(get, getColor), (clear, clearColor)] {
                    let h = bandHeight * min(1, Double(v) / count / Double(ioctlPeak))
                    svg.rect(x: bx, y: ioctlTop + bandHeight - stack - h, width: max(1, slot * 0.8), height: h, fill: color)
                    stack += h
                }
                stack = 0
                for (i, v) in causes.enumerated() where v > 0 {
                    let h = max(0, min(bandHeight - stack, bandHeight * Double(v) / count / Double(stallPeak)))
                    svg.rect(x: bx, y: stallTop + bandHeight - stack - h, width: max(1, slot * 0.8), height: h, fill: causeColors[i])
                    stack += h
                }
            }
            let first = Double(rounds.first!.index), last = Double(rounds.last!.index)
            for t in Ticks.linear(first, last, count: 5) {
                let k = rounds.firstIndex { Double($0.index) >= t } ?? n - 1
                svg.text("\(Int(t))", x: x(k), y: stallTop + bandHeight + 14, anchor: .middle, size: 10)
            }
            svg.text("round", x: left + plotWidth, y: stallTop + bandHeight + 28, anchor: .end, size: 10)
        }

        // The legend, once, beside the first panel.
        var ly = top + 4
        let lx = left + plotWidth + 16
        for v in 0..<vcpuCount {
            svg.rect(x: lx, y: ly, width: 14, height: 10, fill: vcpuColors[v % vcpuColors.count])
            svg.text("vCPU \(v)", x: lx + 20, y: ly + 9, size: 11)
            ly += 16
        }
        if baseline != nil {
            svg.line(x1: lx, y1: ly + 5, x2: lx + 14, y2: ly + 5, stroke: baselineColor, dash: "6 4")
            svg.text("untracked", x: lx + 20, y: ly + 9, size: 11)
            ly += 16
        }
        ly += 6
        for (label, color) in [("host in GET", getColor), ("host in CLEAR", clearColor)] {
            svg.rect(x: lx, y: ly, width: 14, height: 10, fill: color)
            svg.text(label, x: lx + 20, y: ly + 9, size: 11)
            ly += 16
        }
        ly += 6
        svg.text("guest stalled beside:", x: lx, y: ly + 9, size: 11)
        ly += 16
        for (i, cause) in GuestStallCause.allCases.enumerated() {
            svg.rect(x: lx, y: ly, width: 14, height: 10, fill: causeColors[i])
            svg.text(cause.label, x: lx + 20, y: ly + 9, size: 11)
            ly += 16
        }
        return svg.text
    }

    /// The untracked rounds' throughput, when the recording has any with a timeline.
    static func baselineThroughput(_ ms: [RoundMetrics]) -> Double? {
        var total = MetricValues()
        for m in ms where m.mode == .untracked { total.add(m.values) }
        return total.guestThroughput > 0 ? total.guestThroughput : nil
    }

    /// "404k/s".
    static func rate(_ v: Double) -> String {
        if v >= 1e6 { return "\(Ticks.trim((v / 1e5).rounded() / 10))M/s" }
        if v >= 1e3 { return "\(Int((v / 1e3).rounded()))k/s" }
        return "\(Int(v.rounded()))/s"
    }
}

import DirtyScopeModel

/// What tracking costs the guest, on screen: under the heatmap a row per vCPU (vCPUs
/// grouped when there are more than rows) of its page writes per second of work time,
/// round by round, newest on the right, on one scale (the untracked baseline when the
/// session measured one, else the highest shown). A round the vCPU stalled in for a
/// tenth of its work time or more is drawn in the colour of what the host was doing
/// then, or of CPU wait when the vCPU's thread spent most of the stall waiting for a host
/// CPU; in monochrome, as that letter.
enum GuestStrip {
    /// A round counts as stalled on the strip from this share of its work time on.
    static let stalledShare = 0.1
    static let labelWidth = 6, valueWidth = 8

    /// Rows the strip takes: one per vCPU, at most two (four on terminals 40 rows high or more).
    static func rows(vcpus: Int, height: Int) -> Int { max(1, min(vcpus, height >= 40 ? 4 : 2)) }

    /// The letter a stall cause has where colours are not drawn.
    static func letter(_ cause: GuestStallCause) -> Unicode.Scalar {
        switch cause {
        case .get: return "G"
        case .clear: return "C"
        case .ring: return "R"
        case .copy: return "P"
        case .verify: return "V"
        case .other: return "?"
        }
    }

    static func role(_ cause: GuestStallCause?) -> Role {
        switch cause {
        case nil: return .stallNone
        case .get: return .stallGet
        case .clear: return .stallClear
        case .ring: return .stallRing
        case .copy: return .stallCopy
        case .verify: return .stallVerify
        case .other: return .stallOther
        }
    }

    /// The untracked baseline: writes per second a vCPU in this session's untracked rounds.
    static func baseline(_ state: AppState) -> Double? {
        guard let t = state.session.bySetting[HarvestSetting(mode: .untracked, policy: .auto)], t.guestThroughput > 0 else { return nil }
        return t.guestThroughput
    }

    static func draw(_ screen: inout Screen, state: AppState, in rect: Rect, theme: Theme) {
        guard rect.height > 0, rect.width > labelWidth + valueWidth + 4 else { return }
        let history = state.session.history
        let vcpus = max(1, state.info.vcpus)
        if !history.isEmpty, history.allSatisfy({ $0.vcpus.isEmpty }) {
            screen.put(" guest: no timeline (a guest that logs none, or a recording before it)", x: 0, y: rect.y,
                       role: theme.role(.dim), maxWidth: rect.width)
            return
        }
        let plotWidth = rect.width - labelWidth - valueWidth
        // Wide terminals draw each round wider, so the strip spans its row.
        let cellWidth = max(1, plotWidth / max(1, historyRounds))
        let shown = history.suffix(plotWidth / cellWidth)
        // Each row's vCPUs, and each shown round's cost for them.
        let groups: [Range<Int>] = (0..<rect.height).map { r in (vcpus * r / rect.height)..<(vcpus * (r + 1) / rect.height) }
        func cost(_ point: HistoryPoint, _ group: Range<Int>) -> VCPUCost? {
            let mine = point.vcpus.filter { group.contains($0.vcpu) }
            guard !mine.isEmpty else { return nil }
            var c = VCPUCost(vcpu: group.lowerBound)
            var causes: [GuestStallCause: UInt64] = [:]
            for v in mine {
                c.writes &+= v.writes
                c.workNanos &+= v.workNanos
                c.stallNanos &+= v.stallNanos
                c.cpuWaitNanos &+= v.cpuWaitNanos
                if let cause = v.mainCause { causes[cause, default: 0] &+= v.stallNanos }
            }
            c.mainCause = causes.max { $0.value < $1.value }?.key
            return c
        }
        let costs = groups.map { g in shown.map { cost($0, g) } }
        let top = max(baseline(state) ?? 0, costs.flatMap { $0.compactMap { $0?.throughput } }.max() ?? 0)
        let g = theme.glyphs
        let letters = theme.colors == .monochrome
        for (r, group) in groups.enumerated() {
            let y = rect.y + r
            let label = group.count == 1 ? "v\(group.lowerBound)" : "v\(group.lowerBound)-\(group.upperBound - 1)"
            screen.put(" " + label, x: 0, y: y, role: theme.role(.dim), maxWidth: labelWidth)
            var x = labelWidth + (plotWidth - shown.count * cellWidth)
            for c in costs[r] {
                let cell: Cell
                defer {
                    for k in 0..<cellWidth { screen[x + k, y] = cell }
                    x += cellWidth
                }
                guard let c, c.workNanos > 0, top > 0 else {
                    cell = Cell(g.horizontal, theme.role(.border))
                    continue
                }
                let stalled = Double(c.stallNanos) >= stalledShare * Double(c.workNanos)
                let cause = stalled ? (c.mainCause ?? .other) : nil
                // Most of the stall spent waiting for a CPU: the host (or anyone) took it.
                let waited = stalled && c.cpuWaitNanos * 2 >= c.stallNanos
                let level = min(7, Int(c.throughput / top * 7.999))
                if letters, let cause {
                    cell = Cell(waited ? "W" : letter(cause), theme.role(.bold))
                } else {
                    cell = Cell(g.spark[level], theme.role(waited ? .stallCPU : role(cause)))
                }
            }
            let latest = costs[r].last.flatMap { $0 }.map { Format.rate($0.throughput) + "/s" } ?? "-"
            screen.put(latest, x: labelWidth + plotWidth + valueWidth - 1 - latest.count, y: y, role: theme.role(.bold))
        }
    }

    /// Lines for the help overlay: what the strip draws.
    static func helpLines(_ g: Glyphs, monochrome: Bool) -> [String] {
        let bars = String(String.UnicodeScalarView(g.spark))
        var lines = ["v0 \(bars)  each vCPU's page writes per second of its work time, a round a cell, newest right;"
                     + " full height = the untracked baseline (u) or the highest shown"]
        lines.append(monochrome
            ? "a round the vCPU stalled in (a tenth of its time or more) is the letter of what the host was doing: "
              + GuestStallCause.allCases.map { "\(letter($0)) \($0.label)" }.joined(separator: ", ")
              + "; W: most of it waiting for a host CPU"
            : "a round the vCPU stalled in (a tenth of its time or more) takes the colour of what the host was doing: "
              + "GET blue, CLEAR orange, ring magenta, copy grey, verify gold, other red; purple: most of it waiting for a "
              + "host CPU; green: ran free")
        return lines
    }
}

/// The guest's rows of the metrics panel: how much of its time the guest spent stalled,
/// its longest stall, and its throughput against the untracked baseline, this round and
/// in total; then per mode and policy.
enum GuestRows {
    /// The share of work time stalled, as "12%" (or "0.4%").
    static func stalled(_ v: MetricValues) -> String {
        let work = v[.guestWorkNanos]
        guard work > 0 else { return "-" }
        let f = min(1, Double(v.guestStall.totalNanos) / Double(work))
        return f < 0.1 && f > 0 ? Format.fixed(f * 100, 1) + "%" : Format.fixed(f * 100, 0) + "%"
    }

    static func add(_ state: AppState, width w: Int, micro: String, columns: (String, String, String) -> String,
                    add: (Metrics.Row, Int) -> Void) {
        // Below the CLEAR lab's own rows (priority 0 to 2): the strip under the heatmap
        // shows each vCPU's throughput at every size, these add the figures where there is room.
        let totals = state.session.totals
        guard totals[.guestWorkNanos] > 0 || state.session.lastRound.map({ $0[.guestWorkNanos] > 0 }) == true else { return }
        let round = state.session.lastRound.map(\.values)
        let baseline = GuestStrip.baseline(state)
        func ms(_ nanos: UInt64) -> String { Format.duration(nanos, micro: micro) }
        add(.text(columns("guest stall", round.map(stalled) ?? "-", stalled(totals)), .plain), 3)
        add(.text(columns("max stall", round.map { ms($0.guestStall.maxNanos) } ?? "-", ms(totals.guestStall.maxNanos)), .plain), 4)
        if let baseline {
            let now = round.map { Format.fixed($0.guestThroughput / baseline, 2) + "x" } ?? "-"
            let setting = state.session.lastSetting.flatMap { state.session.bySetting[$0] }.map { Format.fixed($0.guestThroughput / baseline, 2) + "x" } ?? "-"
            add(.text(columns("vs untracked", now, setting), .plain), 3)
        } else {
            add(.text(columns("guest wr/s", round.map { Format.rate($0.guestThroughput) } ?? "-", Format.rate(totals.guestThroughput)), .plain), 4)
        }
    }

    /// The guest's columns of a mode's row in the per-mode comparison: its throughput
    /// against untracked (or per second) and its share of time stalled; empty without a timeline.
    static func modeColumns(_ state: AppState, _ setting: HarvestSetting) -> String {
        guard let t = state.session.bySetting[setting], t[.guestWorkNanos] > 0 else { return "" }
        let speed = GuestStrip.baseline(state).map { Format.fixed(t.guestThroughput / $0, 2) + "x" } ?? Format.rate(t.guestThroughput)
        return " " + Metrics.leftPad(speed, 5) + " " + Metrics.leftPad(stalled(t), 4)
    }
}

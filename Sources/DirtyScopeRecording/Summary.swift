import DirtyScopeModel
import Foundation

/// What `dirtyscope inspect FILE [--json]` prints: the header, the rounds and their span,
/// events by kind, totals per harvest mode and overall, and the reader's warnings.
/// Built from round metrics only: no bitmap is decoded.
public struct RecordingSummary {
    /// The totals of the rounds harvested with one mode and clear policy.
    public struct SettingValues: Encodable, Equatable, Sendable {
        public var setting: HarvestSetting
        public var values: MetricValues

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: NameKey.self)
            try c.encode(setting.mode.rawValue, forKey: NameKey("mode"))
            // A clear policy is manual mode's alone: the other modes have none.
            if setting.mode.entry.manualProtect {
                try c.encode(setting.policy.rawValue, forKey: NameKey("clear_policy"))
            } else {
                try c.encodeNil(forKey: NameKey("clear_policy"))
            }
            try values.encode(into: &c)
        }
    }

    /// The summary as data (what `json()` encodes, its keys in snake_case).
    public struct Document: Encodable, Equatable, Sendable {
        public var file: String
        public var fileBytes: Int
        public var formatVersion: Int
        public var finished: Bool
        public var session: SessionInfo
        /// Round records in the file.
        public var rounds: Int
        public var firstRound: UInt64?
        public var lastRound: UInt64?
        /// From the first round's start to the last round's end.
        public var spanSeconds: Double
        public var events: [String: Int]
        /// Why the guest stopped, for each guest fault recorded (the first `maxFaults`).
        public var faults: [String]
        /// The totals of each mode and clear policy, and of every round.
        public var modes: [SettingValues]
        public var total: MetricValues
        public var warnings: [String]

        enum CodingKeys: String, CodingKey {
            case file, fileBytes = "file_bytes", formatVersion = "format_version", finished, session, rounds
            case firstRound = "first_round", lastRound = "last_round", spanSeconds = "span_s"
            case events, faults, modes, total, warnings
        }
    }

    public let document: Document

    /// Summarises `reader` (reads every round's metrics once).
    public init(_ reader: RecordingReader) {
        var perSetting: [HarvestSetting: MetricValues] = [:]
        var total = MetricValues()
        var first: RoundMetrics?
        var last: RoundMetrics?
        var warnings = reader.warnings
        for i in 0..<reader.roundCount {
            do {
                let m = try reader.metrics(at: i)
                let values = m.values
                perSetting[m.setting, default: MetricValues()].add(values)
                total.add(values)
                if first == nil { first = m }
                last = m
            } catch {
                warnings.append("\(error)")
            }
        }
        var events: [String: Int] = [:]
        var faults: [String] = []
        for e in reader.events {
            events[Self.kind(of: e.event), default: 0] += 1
            if case .guestFault(let reason) = e.event, faults.count < Self.maxFaults { faults.append(reason) }
        }
        let span = first.flatMap { f in last.map { l in Double(l.startNanos &+ l[.durationNanos] &- f.startNanos) / 1e9 } } ?? 0
        document = Document(
            file: reader.path, fileBytes: reader.fileSize, formatVersion: reader.formatVersion,
            finished: reader.isFinished, session: reader.info, rounds: reader.roundCount,
            firstRound: first?.index, lastRound: last?.index, spanSeconds: span, events: events, faults: faults,
            modes: perSetting.keys.sorted().map { SettingValues(setting: $0, values: perSetting[$0]!) },
            total: total, warnings: warnings)
    }

    /// Pretty-printed JSON with sorted keys.
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .custom { path in NameKey(snakeCase(path.last!.stringValue)) }
        // Encoding plain numbers, strings and the Codable SessionInfo cannot fail.
        return String(decoding: (try? encoder.encode(document)) ?? Data(), as: UTF8.self)
    }

    /// Lines for a terminal.
    public func text() -> String {
        let d = document
        let s = d.session
        var lines: [String] = []
        func field(_ name: String, _ value: String) { lines.append(name.padding(toLength: 11, withPad: " ", startingAt: 0) + value) }
        field("recording", "\(d.file) (\(formatBytes(UInt64(d.fileBytes))), format \(d.formatVersion)\(d.finished ? "" : ", not finished"))")
        field("recorded", "\(Self.date(s.startTime)) by dirtyscope \(s.toolVersion) on Linux \(s.hostKernel), \(s.pageSize)-byte pages")
        field("guest", "\(s.guestName), \(s.vcpus) vCPUs, \(s.workload.summary)")
        for slot in s.slots {
            field(slot.index == 0 ? "slots" : "", "\(slot.index): KVM slot \(slot.kvmSlot) at 0x\(String(slot.guestPhysicalAddress, radix: 16)), \(slot.pages) pages (\(formatBytes(UInt64(slot.pages) * UInt64(s.pageSize))))")
        }
        let interval = s.intervalNanos == 0 ? "back to back" : "every \(Self.duration(s.intervalNanos))"
        let ring = s.mode.entry.source == .rings ? ", ring \(s.ringEntries) entries" : ""
        let policy = s.mode.entry.manualProtect ? " (clear policy \(s.clearPolicy.rawValue))" : ""
        let chunk = s.mode.entry.manualProtect ? ", clear chunk \(s.clearChunk)" : ""
        field("settings", "\(s.mode.rawValue)\(policy)\(chunk), \(interval), bandwidth \(formatBytes(s.bandwidth))/s\(ring), false positives by \(s.falsePositiveMethod.rawValue)")
        field("caps", s.capabilities.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        let range = d.firstRound.map { f in " (#\(f)...#\(d.lastRound ?? f))" } ?? ""
        field("rounds", "\(d.rounds)\(range) over \(String(format: "%.3f", d.spanSeconds)) s, busy \(Self.duration(d.total[.durationNanos]))")
        let events = d.events.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        field("events", d.events.isEmpty ? "none" : events)
        for (i, fault) in d.faults.enumerated() { field(i == 0 ? "faults" : "", fault) }
        lines.append("")
        let header = ["mode"] + ([.rounds, .reportedPages, .falsePositivePages, .falsePositiveFraction, .initialPages, .copiedPages,
                                  .copiedBytes, .missedPages, .verifications, .lostPages] as [Metric]).map(\.label)
            + ["\(Metric.getDirtyLog.label) mean/max", "\(Metric.clearDirtyLog.label) mean/max"]
        let rows = [header] + (d.modes.map { ($0.setting.description, $0.values) } + [("total", d.total)]).map { name, m in
            [name, "\(m[.rounds])", "\(m[.reportedPages])", "\(m[.falsePositivePages])",
             String(format: "%.2f%%", m.falsePositiveFraction * 100), "\(m[.initialPages])", "\(m[.copiedPages])",
             formatBytes(m[.copiedBytes]), m[.verifications] == 0 ? "-" : "\(m[.missedPages])", "\(m[.verifications])",
             "\(m[.lostPages])",
             "\(Self.duration(m.getDirtyLog.meanNanos))/\(Self.duration(m.getDirtyLog.maxNanos))",
             "\(Self.duration(m.clearDirtyLog.meanNanos))/\(Self.duration(m.clearDirtyLog.maxNanos))"]
        }
        lines += Self.table(rows)
        // Where the false positives came from (README, "How the numbers are made").
        lines.append("")
        lines.append("false positives by origin")
        let originHeader = ["mode", Metric.falsePositivePages.label, Metric.falsePositivesRaced.label, "race window p50",
                            Metric.falsePositivesNeverCleared.label, Metric.falsePositivesRewritten.label]
        lines += Self.table([originHeader] + (d.modes.map { ($0.setting.description, $0.values) } + [("total", d.total)]).map { name, m in
            [name, "\(m[.falsePositivePages])", "\(m.origins.raced)", Self.medianWindow(m.origins),
             "\(m.origins.neverCleared)", "\(m[.falsePositivesRewritten])"]
        })
        lines.append(contentsOf: guestCostLines())
        if !d.warnings.isEmpty {
            lines.append("")
            lines.append("warnings")
            lines.append(contentsOf: d.warnings.map { "  " + $0 })
        }
        // Names, paths and reasons come from the file: no byte of them may drive the terminal.
        return lines.map(Self.printable).joined(separator: "\n") + "\n"
    }

    /// What tracking cost the guest, per mode and policy, from its timeline: nothing when
    /// no round has one (a guest before ABI 3, or a recording made before it).
    func guestCostLines() -> [String] {
        let d = document
        let modes = d.modes.filter { $0.values[.guestWorkNanos] > 0 }
        guard !modes.isEmpty else { return [] }
        let baseline = d.modes.first { $0.setting.mode == .untracked }.map(\.values.guestThroughput)
        var rows = [["guest cost", "writes/s a vCPU", "vs untracked", "stall/round", "longest", "stalls", "GET", "CLEAR", "ring",
                     "copy", "verify", "other", "CPU wait"]]
        for setting in modes {
            let m = setting.values
            let rounds = max(1, m[.rounds])
            var row = [setting.setting.description, String(format: "%.0f", m.guestThroughput)]
            row.append(baseline.map { $0 > 0 && setting.setting.mode != .untracked ? String(format: "%.3f", m.guestThroughput / $0) : "-" } ?? "-")
            row += [Self.duration(m.guestStall.totalNanos / rounds), Self.duration(m.guestStall.maxNanos), "\(m.guestStall.count)"]
            for cause in GuestStallCause.allCases { row.append(Self.duration(m[cause.metric])) }
            row.append(Self.duration(m[.guestStallCPUWait]))
            rows.append(row)
        }
        var lines = [""] + Self.table(rows)
        lines.append("(stall time by what the host was doing then, over the whole recording; CPU wait: the part the vCPUs' threads waited for a host CPU)")
        if d.total[.guestTimelineLost] > 0 {
            lines.append("guest timeline: \(d.total[.guestTimelineLost]) records lost before the host read them")
        }
        return lines
    }

    /// Rows as aligned columns: the first left-aligned, the others right-aligned.
    static func table(_ rows: [[String]]) -> [String] {
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max() ?? 0 }
        return rows.map { row in
            row.indices.map { c in
                c == 0 ? row[c].padding(toLength: widths[c], withPad: " ", startingAt: 0)
                       : String(repeating: " ", count: widths[c] - row[c].count) + row[c]
            }.joined(separator: "  ")
        }
    }

    /// The window bucket holding the median raced false positive, as a range ("1-2ms"), or "-".
    static func medianWindow(_ origins: FalsePositiveOrigins) -> String {
        let total = origins.raced
        guard total > 0 else { return "-" }
        var seen = 0
        for (i, n) in origins.byWindow.enumerated() {
            seen += n
            guard seen * 2 >= total else { continue }
            let low = FalsePositiveOrigins.lowerBoundNanos(bucket: i), high = FalsePositiveOrigins.lowerBoundNanos(bucket: i + 1)
            return i == 0 ? "<\(duration(high))" : (i == origins.byWindow.count - 1 ? ">\(duration(low))" : "\(duration(low))-\(duration(high))")
        }
        return "-"
    }

    /// Guest faults listed by `inspect`.
    static let maxFaults = 8

    /// `text` with control characters shown as "?" (a recording's strings may hold any).
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || (0x7f...0x9f).contains($0.value) ? "?" : $0 }))
    }

    /// The name of an event's case, as in the source.
    static func kind(of event: SessionEvent) -> String {
        switch event {
        case .modeChanged: return "mode_changed"
        case .clearPolicyChanged: return "clear_policy_changed"
        case .workloadChanged: return "workload_changed"
        case .intervalChanged: return "interval_changed"
        case .bandwidthChanged: return "bandwidth_changed"
        case .paused: return "paused"
        case .resumed: return "resumed"
        case .blocksCleared: return "blocks_cleared"
        case .clearedBlocksDropped: return "cleared_blocks_dropped"
        case .verified: return "verified"
        case .guestFault: return "guest_fault"
        case .restarted: return "restarted"
        case .ringFull: return "ring_full"
        case .recordingStarted: return "recording_started"
        case .recordingStopped: return "recording_stopped"
        case .note: return "note"
        case .migration: return "migration"
        }
    }

    static func duration(_ nanos: UInt64) -> String {
        switch nanos {
        case ..<1_000: return "\(nanos)ns"
        case ..<1_000_000: return String(format: "%.1fus", Double(nanos) / 1e3)
        case ..<1_000_000_000: return String(format: "%.1fms", Double(nanos) / 1e6)
        default: return String(format: "%.2fs", Double(nanos) / 1e9)
        }
    }

    /// UTC, ISO 8601 to the second ("2023-11-14T22:13:20Z"); `seconds` is within the
    /// header's limit (10^12 s of 1970), which gmtime_r handles.
    private static func date(_ seconds: Double) -> String {
        var t = time_t(seconds.rounded(.down))
        var parts = tm()
        guard gmtime_r(&t, &parts) != nil else { return "\(seconds) s since 1970" }
        var text = [CChar](repeating: 0, count: 64)
        let n = strftime(&text, text.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: text.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}


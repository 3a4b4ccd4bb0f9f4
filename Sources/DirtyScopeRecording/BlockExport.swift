import DirtyScopeModel
import Foundation
import Pages

/// Rows out of a recording (`dirtyscope export`, per round; `--blocks`, `--per-slot`,
/// `--events`), as CSV or as NDJSON (one JSON object a line, the same names).
/// `time_s` counts from the start of the recording: its first event or round.
public enum RowExport {
    public enum Kind: Sendable {
        /// Per round: the round's metrics (`CSVExport.columns`).
        case rounds
        /// Per round and 64-page block with any activity: reported and false-positive
        /// pages, and whether the block is one the user cleared (the last `c`, until the
        /// next `c` or `x`). Summed per round they give the round's totals.
        case blocks
        /// Per round and slot: the slot's counts.
        case slots
        /// Every event, by name, with the round it came before.
        case events
    }

    public enum Encoding: Sendable { case csv, ndjson }

    /// A cell: what CSV prints bare and JSON prints as a number, string, boolean or null.
    enum Value {
        case int(Int), uint(UInt64), seconds(UInt64), text(String), bool(Bool), empty
        /// A metric's value: an integer, or a fraction with 6 decimals.
        case cell(MetricCell)

        var csv: String {
            switch self {
            case .int(let v): return "\(v)"
            case .uint(let v): return "\(v)"
            case .seconds(let nanos): return RowExport.seconds(nanos)
            case .text(let s): return s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
                ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
            case .bool(let b): return b ? "yes" : "no"
            case .empty: return ""
            case .cell(let c): return c.description
            }
        }

        var json: String {
            switch self {
            case .int(let v): return "\(v)"
            case .uint(let v): return "\(v)"
            case .seconds(let nanos): return RowExport.seconds(nanos)
            case .text(let s): return RowExport.jsonString(s)
            case .bool(let b): return b ? "true" : "false"
            case .empty: return "null"
            case .cell(let c): return c.description
            }
        }
    }

    public static func columns(_ kind: Kind) -> [String] {
        switch kind {
        case .rounds: return CSVExport.columns
        case .blocks: return ["round", "time_s", "slot", "block", Metric.reportedPages.spec.name, Metric.falsePositivePages.spec.name, "cleared_by_user"]
        case .slots: return ["round", "time_s", "slot"] + Metric.perSlot.map(\.spec.name)
        case .events: return ["before_round", "time_s", "event", "detail"]
        }
    }

    /// Writes every row of `kind` through `emit`, a line at a time (without newlines).
    public static func write(_ reader: RecordingReader, kind: Kind, encoding: Encoding, emit: (String) throws -> Void) throws {
        let names = columns(kind)
        func line(_ values: [Value]) throws {
            switch encoding {
            case .csv: try emit(values.map(\.csv).joined(separator: ","))
            case .ndjson: try emit("{" + zip(names, values).map { jsonString($0) + ":" + $1.json }.joined(separator: ",") + "}")
            }
        }
        if encoding == .csv { try emit(names.joined(separator: ",")) }
        let origin = recordingStart(reader)
        func time(_ nanos: UInt64) -> Value { .seconds(nanos >= origin ? nanos - origin : 0) }
        switch kind {
        case .rounds:
            for i in 0..<reader.roundCount {
                try line(CSVExport.values(try reader.metrics(at: i), events: reader.index.rounds[i].events.count, origin: origin))
            }
        case .events:
            for i in 0...reader.roundCount {
                let events = i < reader.roundCount ? reader.events(at: i) : reader.trailingEvents
                let before: Value = i < reader.roundCount ? .uint((try? reader.metrics(at: i).index) ?? 0) : .empty
                for e in events { try line([before, time(e.nanos), .text(RecordingSummary.kind(of: e.event)), .text(detail(e.event))]) }
            }
        case .slots:
            for i in 0..<reader.roundCount {
                let m = try reader.metrics(at: i)
                for s in m.slots {
                    // Missed pages are known only where the round verified.
                    let counts = Metric.perSlot.map { $0 == .missedPages && m.verification == nil ? Value.empty : .int(s[$0]) }
                    try line([.uint(m.index), time(m.startNanos), .int(s.slot)] + counts)
                }
            }
        case .blocks:
            var cleared = reader.info.slots.map { DirtyBitmap(pageCount: $0.blocks) }
            for i in 0..<reader.roundCount {
                for e in reader.events(at: i) {
                    switch e.event {
                    case .blocksCleared(let c) where c.slot >= 0 && c.slot < cleared.count:
                        cleared[c.slot].clearAll()
                        for b in c.blocks where b >= 0 && b < cleared[c.slot].pageCount { cleared[c.slot][b] = true }
                    case .clearedBlocksDropped(let slot) where slot >= 0 && slot < cleared.count:
                        cleared[slot].clearAll()
                    default: break
                    }
                }
                let round = try reader.entry(at: i).round
                for (s, bitmaps) in zip(round.slots, round.bitmaps) {
                    try bitmaps.reported.withUnsafeWords { (reported) throws in
                        try bitmaps.falsePositives.withUnsafeWords { (fps) throws in
                            for b in reported.indices where reported[b] != 0 || (b < fps.count && fps[b] != 0) {
                                let fp = b < fps.count ? fps[b].nonzeroBitCount : 0
                                try line([.uint(round.index), time(round.startNanos), .int(s.slot), .int(b),
                                          .int(reported[b].nonzeroBitCount), .int(fp),
                                          .bool(b < cleared[s.slot].pageCount && cleared[s.slot][b])])
                            }
                        }
                    }
                }
            }
        }
    }

    /// The earliest time in the file: its first event or its first round's start.
    static func recordingStart(_ reader: RecordingReader) -> UInt64 {
        let firstEvent = reader.events.first?.nanos ?? .max
        let firstRound = reader.roundCount > 0 ? ((try? reader.metrics(at: 0).startNanos) ?? .max) : .max
        let start = min(firstEvent, firstRound)
        return start == .max ? 0 : start
    }

    /// An event's details in a few words.
    static func detail(_ event: SessionEvent) -> String {
        switch event {
        case .modeChanged(let mode, let chunk): return "\(mode.rawValue) chunk \(chunk)"
        case .clearPolicyChanged(let policy): return policy.rawValue
        case .workloadChanged(let w): return w.summary
        case .intervalChanged(let nanos): return "\(nanos) ns"
        case .bandwidthChanged(let b): return "\(b) B/s"
        case .blocksCleared(let c):
            return "slot \(c.slot) blocks \(c.blocks.first ?? 0)-\(c.blocks.last ?? 0) (\(c.blocks.count)), \(c.calls) calls"
        case .clearedBlocksDropped(let slot): return "slot \(slot)"
        case .verified(let v): return "\(v.missed) missed of \(v.comparedPages)"
        case .guestFault(let reason), .restarted(let reason), .note(let reason): return reason
        case .ringFull(let vcpu): return "vCPU \(vcpu)"
        case .recordingStarted(let path), .recordingStopped(let path): return path
        case .paused, .resumed: return ""
        case .migration(let m): return m.summary
        }
    }

    /// Nanoseconds as seconds with 9 decimals, exactly.
    static func seconds(_ nanos: UInt64) -> String {
        let fraction = String(nanos % 1_000_000_000)
        return "\(nanos / 1_000_000_000)." + String(repeating: "0", count: 9 - fraction.count) + fraction
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if c.value < 0x20 { out += String(format: "\\u%04x", c.value) } else { out.unicodeScalars.append(c) }
            }
        }
        return out + "\""
    }
}

import DirtyScopeModel
@testable import DirtyScopeRecording
import Foundation
import Testing

@Suite struct SummaryTests {
    func recording() throws -> (RecordingReader, [Round]) {
        let info = SyntheticRounds.sessionInfo(slots: 2, pagesPerSlot: 4000)
        var rounds = mixedRounds(info, count: 20)
        for i in 10..<20 { rounds[i].metrics.mode = .legacy; rounds[i].metrics.clearPolicy = .auto }
        let path = try writeRecording(info, sessionRecords(rounds))
        defer { unlink(path) }
        return (try RecordingReader(path: path), rounds)
    }

    func eventCounts(_ rounds: [Round]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for case .event(let e) in sessionRecords(rounds) { counts[RecordingSummary.kind(of: e.event), default: 0] += 1 }
        return counts
    }

    @Test func summaryHasTotalsPerModeAndOverall() throws {
        let (reader, rounds) = try recording()
        let summary = RecordingSummary(reader)
        var total = MetricValues()
        rounds.forEach { total.add($0.values) }
        let d = summary.document
        #expect(d.rounds == 20)
        // Totals per mode and clear policy: legacy's rounds, then manual's by policy
        // (the synthetic rounds step through the policies every 7 rounds).
        var perSetting: [HarvestSetting: UInt64] = [:]
        rounds.forEach { perSetting[$0.setting, default: 0] += 1 }
        #expect(d.modes.map(\.setting) == perSetting.keys.sorted())
        #expect(d.modes.map { $0.values[.rounds] } == perSetting.keys.sorted().map { perSetting[$0]! })
        #expect(d.modes.first?.setting.mode == .legacy)
        #expect(d.modes.contains { $0.setting.mode == .manual })
        #expect(d.total == total)
        #expect(d.total.origins.raced > 0)
        #expect(d.events == eventCounts(rounds))

        let text = summary.text()
        #expect(text.contains("rounds     20 (#1...#20)"))
        #expect(text.contains("\nlegacy "))
        #expect(text.contains("\ntotal "))
        #expect(!text.contains("warnings"))
        // One name per figure: the tables' headings are the metric table's labels.
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let heading = try #require(lines.first { $0.hasPrefix("mode ") })
        for metric in [Metric.reportedPages, .falsePositivePages, .falsePositiveFraction, .missedPages, .verifications, .lostPages] {
            #expect(heading.contains(metric.label), "\(metric.label)")
        }
        #expect(!text.contains("false+") && !text.contains("v "), "no private abbreviations")
        // The false positives' origins, per mode and in total, as the JSON has them.
        let origins = try #require(lines.firstIndex(of: "false positives by origin"))
        #expect(lines[origins + 1].split(separator: " ").joined(separator: " ")
                == "mode false pos raced race window p50 never cleared rewritten")
        let totalRow = try #require(lines[origins...].first { $0.hasPrefix("total ") }).split(separator: " ").map(String.init)
        #expect(totalRow[1] == "\(total[.falsePositivePages])" && totalRow[2] == "\(total.origins.raced)")
        #expect(totalRow[totalRow.count - 2] == "\(total.origins.neverCleared)")
        #expect(totalRow.last == "\(total[.falsePositivesRewritten])")

        // The JSON holds the same totals, under the table's names.
        let json = try #require(try JSONSerialization.jsonObject(with: Data(summary.json().utf8)) as? [String: Any])
        let totalJSON = try #require(json["total"] as? [String: Any])
        for (name, cell) in total.cells {
            switch cell {
            case .integer(let n): #expect((totalJSON[name] as? NSNumber)?.uint64Value == n, "\(name)")
            // Fractions and rates (writes per second): the same to twelve significant digits.
            case .fraction(let f): #expect(abs(((totalJSON[name] as? NSNumber)?.doubleValue ?? -1) - f) < 1e-12 * max(1, abs(f)), "\(name)")
            }
        }
        #expect(json["rounds"] as? Int == 20)
        // Legacy rounds have no clear policy: null, not "auto".
        let modes = try #require(json["modes"] as? [[String: Any]])
        for mode in modes {
            if mode["mode"] as? String == "legacy" { #expect(mode["clear_policy"] is NSNull) }
            else { #expect(mode["clear_policy"] is String) }
        }
    }

    /// `export --json` without a kind: one object per round, the CSV's names and values.
    @Test func perRoundNDJSONMatchesTheCSV() throws {
        let (reader, rounds) = try recording()
        var lines: [String] = []
        try RowExport.write(reader, kind: .rounds, encoding: .ndjson) { lines.append($0) }
        #expect(lines.count == rounds.count)
        var csv: [String] = []
        try RowExport.write(reader, kind: .rounds, encoding: .csv) { csv.append($0) }
        #expect(csv.first == CSVExport.columns.joined(separator: ","))
        for (i, line) in lines.enumerated() {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(Set(object.keys) == Set(CSVExport.columns))
            #expect((object["round"] as? NSNumber)?.uint64Value == rounds[i].index)
            #expect((object["false_positive_pages"] as? NSNumber)?.intValue == rounds[i].count(.falsePositivePages))
            #expect(rounds[i].mode == .manual ? object["clear_policy"] is String : object["clear_policy"] is NSNull)
            let fields = csv[i + 1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            for (k, name) in CSVExport.columns.enumerated() where !(object[name] is NSNull) {
                #expect("\(object[name]!)" == fields[k] || (object[name] as? NSNumber)?.doubleValue == Double(fields[k]), "\(name)")
            }
        }
    }

    /// The guest's cost per setting: throughput against the untracked rounds, stall per
    /// round by cause, in the text; a recording without a timeline shows no such table.
    @Test func guestCostTableComparesWithUntracked() throws {
        let info = SyntheticRounds.sessionInfo(slots: 1, pagesPerSlot: 1000)
        var rounds: [Round] = []
        for i in 1...6 {
            var m = RoundMetrics(mode: i <= 3 ? .untracked : .legacy, clearChunk: .pages(64))
            m.index = UInt64(i)
            m.slots = [SlotMetrics(slot: 0)]
            m[.guestTimedWrites] = i <= 3 ? 4_000 : 3_000
            m[.guestWorkNanos] = 1_000_000_000
            if i > 3 {
                m.guestStall.record(2_000_000)
                m[.guestStallGet] = 1_500_000
                m[.guestStallOther] = 500_000
                m[.guestStallCPUWait] = 250_000
            }
            rounds.append(Round(counting: m, bitmaps: [SlotBitmaps(pages: 1000)]))
        }
        let path = try writeRecording(info, rounds.map { .round($0) })
        defer { unlink(path) }
        let text = RecordingSummary(try RecordingReader(path: path)).text()
        let lines = text.split(separator: "\n").map(String.init)
        let legacy = try #require(lines.first { $0.hasPrefix("legacy ") && $0.contains("0.750") }, "\(text)")
        // 3,000 writes a second against 4,000 untracked; 2 ms of stall a round, 6 ms in all.
        #expect(legacy.contains("3000") && legacy.contains("2.0ms") && legacy.contains("4.5ms") && legacy.contains("750.0us"), "\(legacy)")
        #expect(lines.contains { $0.hasPrefix("guest cost ") })
        #expect(lines.contains { $0.hasPrefix("untracked ") && $0.contains("4000") })

        let plain = rounds.map { r in
            var m = RoundMetrics(mode: .legacy, clearChunk: .pages(64))
            m.index = r.index
            m.slots = [SlotMetrics(slot: 0)]
            return Round(counting: m, bitmaps: [SlotBitmaps(pages: 1000)])
        }
        let plainPath = try writeRecording(info, plain.map { .round($0) })
        defer { unlink(plainPath) }
        #expect(!RecordingSummary(try RecordingReader(path: plainPath)).text().contains("guest cost"))
    }

    @Test func csvHasAHeaderAndALinePerRound() throws {
        let (reader, rounds) = try recording()
        let path = temporaryPath("csv")
        defer { unlink(path) }
        try CSVExport.write(reader, toPath: path)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.count == rounds.count + 1)
        #expect(lines[0].hasPrefix("round,time_s,mode,clear_policy,clear_chunk_pages,rounds,duration_ns,reported_pages,false_positive_pages,false_positive_fraction,"))
        let header = lines[0].split(separator: ",").map(String.init)
        let column = Dictionary(uniqueKeysWithValues: header.enumerated().map { ($1, $0) })
        for (i, line) in lines.dropFirst().enumerated() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            #expect(fields.count == header.count)
            #expect(fields[0] == "\(rounds[i].index)")
            // The clear policy and chunk are manual mode's: the other modes' rows leave them empty.
            #expect(fields[column["clear_policy"]!] == (rounds[i].mode == .manual ? rounds[i].clearPolicy.rawValue : ""))
            #expect(fields[column["clear_chunk_pages"]!] == (rounds[i].mode == .manual ? "\(rounds[i].clearChunk)" : ""))
            #expect(fields[column["reported_pages"]!] == "\(rounds[i].count(.reportedPages))")
            #expect(fields[column["missed_pages"]!] == "\(rounds[i].missed ?? 0)")
            #expect(fields[column["verifications"]!] == (rounds[i].verification == nil ? "0" : "1"))
        }
        // time_s counts from the start of the recording: here its first event, 1 ns before round 1.
        #expect(lines[1].split(separator: ",")[1] == "0.000000001")
    }

    @Test func damageShowsInTheSummary() throws {
        let info = SyntheticRounds.sessionInfo(slots: 1, pagesPerSlot: 1000)
        let path = try writeRecording(info, sessionRecords(mixedRounds(info, count: 10)), finish: false)
        defer { unlink(path) }
        let text = RecordingSummary(try RecordingReader(path: path)).text()
        #expect(text.contains("not finished"))
        #expect(text.contains("warnings\n  no end record"))
    }
}

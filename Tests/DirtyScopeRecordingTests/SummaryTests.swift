import DirtyScopeModel
@testable import DirtyScopeRecording
import Foundation
import Testing

@Suite struct SummaryTests {
    func recording() throws -> (RecordingReader, [Round]) {
        let info = SyntheticRounds.sessionInfo(slots: 2, pagesPerSlot: 4000)
        var rounds = mixedRounds(info, count: 20)
        for i in 10..<20 { rounds[i].mode = .legacy; rounds[i].clearPolicy = .auto }
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
        var total = RoundTotals()
        rounds.forEach { total.add($0) }
        let d = summary.document
        #expect(d.rounds == 20)
        // Totals per mode and clear policy: legacy's rounds, then manual's by policy
        // (the synthetic rounds step through the policies every 7 rounds).
        var perSetting: [HarvestSetting: UInt64] = [:]
        rounds.forEach { perSetting[$0.setting, default: 0] += 1 }
        #expect(d.modes.map(\.mode) == perSetting.keys.sorted().map(\.description))
        #expect(d.modes.map(\.rounds) == perSetting.keys.sorted().map { perSetting[$0]! })
        #expect(d.modes.first?.mode == "legacy")
        #expect(d.modes.contains { $0.mode.hasPrefix("manual/") })
        #expect(d.total.racedFalsePositives == UInt64(total.origins.raced))
        #expect(d.total.neverClearedFalsePositives == UInt64(total.origins.neverCleared))
        #expect(d.total.reported == total.reported)
        #expect(d.total.falsePositives == total.falsePositives)
        #expect(d.total.verifications == total.verifications)
        #expect(d.events == eventCounts(rounds))

        let text = summary.text()
        #expect(text.contains("rounds     20 (#1...#20)"))
        #expect(text.contains("\nlegacy "))
        #expect(text.contains("\ntotal "))
        #expect(!text.contains("warnings"))

        let decoded = try JSONDecoder().decode(RecordingSummary.Document.self, from: Data(summary.json().utf8))
        #expect(decoded == d)
    }

    @Test func csvHasAHeaderAndALinePerRound() throws {
        let (reader, rounds) = try recording()
        let path = temporaryPath("csv")
        defer { unlink(path) }
        try CSVExport.write(reader, toPath: path)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.count == rounds.count + 1)
        #expect(lines[0].hasPrefix("round,time_s,duration_ns,mode,chunk,clear_policy,reported,false_positives,fp_rate,initial,copied_pages,bytes_copied,missed,get_calls"))
        let columns = lines[0].split(separator: ",").count
        for (i, line) in lines.dropFirst().enumerated() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            #expect(fields.count == columns)
            #expect(fields[0] == "\(rounds[i].index)")
            #expect(fields[5] == rounds[i].clearPolicy.rawValue)
            #expect(fields[6] == "\(rounds[i].reported)")
            #expect(fields[12] == (rounds[i].missed.map { "\($0)" } ?? ""))
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

import DirtyScopeModel
@testable import DirtyScopeRecording
import Foundation
import Pages
import Testing

@Suite struct RowExportTests {
    func recording() throws -> (RecordingReader, [Round]) {
        let info = SyntheticRounds.sessionInfo(slots: 2, pagesPerSlot: 4000)
        let rounds = mixedRounds(info, count: 80)  // an event every 4 rounds: every kind at least once
        let path = try writeRecording(info, sessionRecords(rounds))
        defer { unlink(path) }
        return (try RecordingReader(path: path), rounds)
    }

    func lines(_ reader: RecordingReader, _ kind: RowExport.Kind, _ encoding: RowExport.Encoding) throws -> [String] {
        var out: [String] = []
        try RowExport.write(reader, kind: kind, encoding: encoding) { out.append($0) }
        return out
    }

    /// Summing the block rows per round gives exactly the per-round CSV's totals.
    @Test func blockRowsSumToTheRoundTotals() throws {
        let (reader, rounds) = try recording()
        let blockLines = try lines(reader, .blocks, .csv)
        #expect(blockLines[0] == "round,time_s,slot,block,reported_pages,false_positive_pages,cleared_by_user")
        var reported: [UInt64: Int] = [:], fps: [UInt64: Int] = [:]
        for line in blockLines.dropFirst() {
            let f = line.split(separator: ",").map(String.init)
            #expect(f.count == 7)
            #expect(f[6] == "yes" || f[6] == "no")
            reported[UInt64(f[0])!, default: 0] += Int(f[4])!
            fps[UInt64(f[0])!, default: 0] += Int(f[5])!
        }
        var csv: [String] = []
        let path = temporaryPath("csv")
        defer { unlink(path) }
        try CSVExport.write(reader, toPath: path)
        csv = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        let header = csv[0].split(separator: ",").map(String.init)
        let r = header.firstIndex(of: "reported_pages")!, fp = header.firstIndex(of: "false_positive_pages")!
        for line in csv.dropFirst() {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            let round = UInt64(f[0])!
            #expect(reported[round, default: 0] == Int(f[r])!, "round \(round) reported")
            #expect(fps[round, default: 0] == Int(f[fp])!, "round \(round) false positives")
        }
        #expect(reported.values.reduce(0, +) == rounds.reduce(0) { $0 + $1.count(.reportedPages) })
    }

    /// Blocks the user cleared are marked from that CLEAR on, until the next one.
    @Test func clearedBlocksAreMarked() throws {
        let (reader, _) = try recording()
        let clears = reader.events.compactMap { e -> BlockClear? in if case .blocksCleared(let c) = e.event { return c } else { return nil } }
        let marked = try lines(reader, .blocks, .csv).dropFirst().filter { $0.hasSuffix(",yes") }
        #expect(!clears.isEmpty)
        for line in marked {
            let f = line.split(separator: ",")
            #expect(clears.contains { $0.slot == Int(f[2])! && $0.blocks.contains(Int(f[3])!) }, "\(line) was never cleared")
        }
    }

    @Test func ndjsonHasTheSameNamesAndParses() throws {
        let (reader, _) = try recording()
        for kind in [RowExport.Kind.blocks, .slots, .events] {
            let objects = try lines(reader, kind, .ndjson)
            #expect(!objects.isEmpty)
            for line in objects.prefix(50) {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
                #expect(Set(object.keys) == Set(RowExport.columns(kind)))
            }
        }
        // Event names and details, quotes and newlines included, survive as JSON.
        let notes = try lines(reader, .events, .ndjson).compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { $0["event"] as? String == "note" }
        #expect(notes.first?["detail"] as? String == "hello\nworld \"quoted\"")
    }

    @Test func timeCountsFromTheStartOfTheRecording() throws {
        let (reader, _) = try recording()
        let first = try lines(reader, .slots, .csv)[1].split(separator: ",")
        #expect(first[1] == "0.000000001", "round 1 starts 1 ns after the first event")
    }
}

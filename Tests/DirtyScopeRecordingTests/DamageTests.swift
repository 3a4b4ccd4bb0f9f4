import DirtyScopeModel
@testable import DirtyScopeRecording
import Foundation
import Testing

/// Bad input: every case replays what it can, with a warning, or fails with a clear error.
@Suite struct DamageTests {
    let info = SyntheticRounds.sessionInfo(slots: 2, pagesPerSlot: 5000)

    func cleanRecording(rounds count: Int = 40) throws -> (bytes: [UInt8], rounds: [Round], reader: RecordingReader) {
        let rounds = mixedRounds(info, count: count)
        let path = try writeRecording(info, sessionRecords(rounds), keyframeInterval: 8)
        defer { unlink(path) }
        let bytes = try fileBytes(path)
        return (bytes, rounds, try RecordingReader(contents: bytes, name: "clean"))
    }

    @Test func wrongMagicIsNotARecording() throws {
        let path = temporaryPath()
        defer { unlink(path) }
        try Data("#!/bin/sh\necho this is not a recording\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: RecordingError.notARecording(path: path)) { try RecordingReader(path: path) }
    }

    @Test func newerVersionIsRefusedByName() throws {
        var bytes = try cleanRecording().bytes
        bytes[8] = 2
        let error = #expect(throws: RecordingError.self) { try RecordingReader(contents: bytes, name: "f.dsrec") }
        #expect(error == .newerVersion(path: "f.dsrec", version: 2))
        #expect(error?.description.contains("version 2") == true)
    }

    @Test func shortOrDamagedHeaderIsAnError() throws {
        let bytes = try cleanRecording().bytes
        #expect(throws: RecordingError.self) { try RecordingReader(contents: [], name: "empty") }
        #expect(throws: RecordingError.self) { try RecordingReader(contents: Array(bytes[0..<30]), name: "cut") }
        var flipped = bytes
        flipped[Format.fileHeaderSize + 5] ^= 0x20
        let error = #expect(throws: RecordingError.self) { try RecordingReader(contents: flipped, name: "flipped") }
        #expect(error?.description.contains("checksum") == true)
    }

    @Test func missingFileAndUnwritablePathNameTheirErrno() throws {
        let missing = "/nonexistent-dirtyscope-dir/session.dsrec"
        #expect(throws: RecordingError.cannotOpen(path: missing, errno: ENOENT)) { try RecordingReader(path: missing) }
        let error = #expect(throws: RecordingError.self) { try RecordingWriter(path: missing, info: info) }
        #expect(error == .cannotOpen(path: missing, errno: ENOENT))
        #expect(error?.description == "\(missing): cannot open: No such file or directory (errno \(ENOENT))")
        let directory = FileManager.default.temporaryDirectory.path
        #expect(throws: RecordingError.cannotOpen(path: directory, errno: EISDIR)) {
            try RecordingWriter(path: directory, info: info)
        }
    }

    @Test func truncatedFileReplaysItsWholeRecords() throws {
        let (bytes, rounds, clean) = try cleanRecording()
        for k in [5, 17, 39] {
            let record = clean.index.rounds[k]
            for cut in [record.offset + 2, record.offset + 12, record.payload.lowerBound + 3, record.payload.upperBound - 1] {
                let reader = try RecordingReader(contents: Array(bytes[0..<cut]), name: "cut")
                #expect(reader.roundCount == k, "cut at \(cut)")
                #expect(reader.warnings.contains { $0.hasPrefix("truncated: the last record, at offset \(record.offset)") },
                        "\(reader.warnings)")
                for i in 0..<k { #expect(try reader.entry(at: i).round == rounds[i]) }
            }
        }
        // Cut between records: nothing is incomplete, but the end record is missing.
        let reader = try RecordingReader(contents: Array(bytes[0..<clean.index.rounds[20].offset]), name: "cut")
        #expect(reader.roundCount == 20)
        #expect(reader.warnings.contains { $0.hasPrefix("no end record") })
    }

    @Test func corruptRecordIsNamedAndSkippedToTheNextKeyframe() throws {
        let (bytes, rounds, clean) = try cleanRecording()
        let entries = clean.index.rounds
        // The first delta round after the 2nd keyframe, followed by more deltas.
        let k = try #require(entries.indices.first { $0 > 8 && !entries[$0].keyframe && !entries[$0 + 1].keyframe })
        let nextKeyframe = try #require(entries.indices.first { $0 > k && entries[$0].keyframe })
        var damaged = bytes
        damaged[entries[k].payload.lowerBound + 4] ^= 0x40
        let reader = try RecordingReader(contents: damaged, name: "damaged")
        #expect(reader.warnings.contains { $0.hasPrefix("corrupt record at offset \(entries[k].offset) (checksum mismatch)") },
                "\(reader.warnings)")
        #expect(reader.warnings.contains { $0.contains("replay resumes at the keyframe at offset \(entries[nextKeyframe].offset)") },
                "\(reader.warnings)")
        let kept = Array(0..<k) + Array(nextKeyframe..<rounds.count)
        #expect(reader.roundCount == kept.count)
        for (position, original) in kept.enumerated() {
            #expect(try reader.entry(at: position).round == rounds[original])
        }
        // Totals skip the lost rounds too.
        var totals = MetricValues()
        kept.forEach { totals.add(rounds[$0].values) }
        #expect(reader.totals(through: kept.count - 1) == totals)
    }

    @Test func damagedEventLosesNoRounds() throws {
        let (bytes, rounds, clean) = try cleanRecording()
        // The event record just before round 8 sits between rounds 7 and 8.
        let eventOffset = try #require(Self.recordOffsets(bytes).last { $0 < clean.index.rounds[8].offset && $0 > clean.index.rounds[7].offset })
        var damaged = bytes
        damaged[eventOffset + Format.maxRecordHeaderSize + 2] ^= 1  // inside the event's JSON
        let reader = try RecordingReader(contents: damaged, name: "damaged")
        #expect(reader.roundCount == rounds.count)
        // The damaged record, and the end record's event count that no longer matches.
        #expect(reader.warnings.count == 2, "\(reader.warnings)")
        #expect(reader.warnings.last == "the end record counts 40 rounds and \(clean.events.count) events; 40 rounds and \(clean.events.count - 1) events replay")
        #expect(reader.events.count == clean.events.count - 1)
    }

    @Test func roundThatDoesNotFitTheHeaderIsRefused() throws {
        let path = temporaryPath()
        defer { unlink(path) }
        let writer = try RecordingWriter(path: path, info: info)
        var round = mixedRounds(info, count: 1)[0]
        round.bitmaps[0].reported = .init(pageCount: 10)
        #expect(throws: RecordingError.self) { try writer.append(.round(round)) }
        round = mixedRounds(info, count: 1)[0]
        round.slots[0].slot = 7
        #expect(throws: RecordingError.self) { try writer.append(.round(round)) }
        try writer.finish()
        #expect(try RecordingReader(path: path).roundCount == 0)
    }

    /// Offsets of every sync marker that starts an intact record.
    static func recordOffsets(_ bytes: [UInt8]) -> [Int] {
        var offsets: [Int] = []
        var p = 0
        while p + 4 <= bytes.count {
            if Array(bytes[p..<p + 4]) == Format.sync { offsets.append(p) }
            p += 1
        }
        return offsets
    }
}

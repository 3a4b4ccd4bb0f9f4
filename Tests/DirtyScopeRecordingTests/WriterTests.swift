import DirtyScopeModel
@testable import DirtyScopeRecording
import Foundation
import Pages
import Testing

@Suite struct WriterTests {
    let info = SyntheticRounds.sessionInfo(slots: 2, pagesPerSlot: 524_288)

    @Test func idleRoundCostsUnder64Bytes() throws {
        let path = temporaryPath()
        defer { unlink(path) }
        let writer = try RecordingWriter(path: path, info: info)
        var idle = SyntheticRounds(shape: .idle, info: info)
        for _ in 0..<100 {
            var round = idle.nextRound()
            round.startNanos += 3_600_000_000_000  // an hour in: start times take 6 bytes
            let before = writer.bytesWritten
            try writer.append(.round(round))
            #expect(writer.bytesWritten - before < 64)
        }
        try writer.finish()
    }

    @Test func headerIsWrittenAtOnceAndEventsReachTheFileImmediately() throws {
        let path = temporaryPath()
        defer { unlink(path) }
        let writer = try RecordingWriter(path: path, info: info)
        #expect(try fileBytes(path).count == Int(writer.bytesWritten))
        try writer.append(.event(TimedEvent(nanos: 5, event: .paused)))
        #expect(try fileBytes(path).count == Int(writer.bytesWritten))
        let reader = try RecordingReader(path: path)
        #expect(reader.trailingEvents == [TimedEvent(nanos: 5, event: .paused)])
        try writer.finish()
    }

    @Test func unfinishedRecordingReplaysWithAWarning() throws {
        let small = SyntheticRounds.sessionInfo(slots: 2, pagesPerSlot: 2000)
        let rounds = mixedRounds(small, count: 30)
        let path = temporaryPath()
        defer { unlink(path) }
        let writer = try RecordingWriter(path: path, info: small)
        for round in rounds { try writer.append(.round(round)) }
        try writer.flush()  // what the half-second deadline does before a kill -9
        let reader = try RecordingReader(path: path)
        #expect(reader.roundCount == rounds.count)
        #expect(!reader.isFinished)
        #expect(reader.warnings == ["no end record: the recording was not finished (the writer stopped or is still running); 30 rounds replay"])
        try writer.finish()
        #expect(try RecordingReader(path: path).warnings.isEmpty)
    }

    @Test func finishIsIdempotentAndAppendAfterItFails() throws {
        let path = temporaryPath()
        defer { unlink(path) }
        let writer = try RecordingWriter(path: path, info: info)
        try writer.finish()
        let size = try fileBytes(path).count
        try writer.finish()
        #expect(try fileBytes(path).count == size)
        #expect(throws: RecordingError.finished(path: path)) { try writer.append(.event(TimedEvent(nanos: 0, event: .resumed))) }
    }

    @Test func headerIsReadableJSON() throws {
        let path = temporaryPath()
        defer { unlink(path) }
        try RecordingWriter(path: path, info: info).finish()
        let bytes = try fileBytes(path)
        #expect(Array(bytes[0..<8]) == Format.magic)
        let json = Data(bytes[Format.fileHeaderSize...]).prefix { $0 != 0xFF }
        #expect(try JSONDecoder().decode(SessionInfo.self, from: json) == info)
    }
}

@Suite struct BenchmarkTests {
    @Test func smallBenchmarkRunsEveryShape() throws {
        let report = try RecordingBenchmark.run(.init(slots: 2, pagesPerSlot: 4096, rounds: 20, seeks: 5))
        #expect(report.shapes.map(\.shape) == SyntheticShape.allCases)
        #expect(report.shapes.allSatisfy { $0.fileBytesPerRound > 0 && $0.rawBytesPerRound == 2 * 2 * 64 * 8 })
        #expect(report.text().contains("hotset"))
    }
}

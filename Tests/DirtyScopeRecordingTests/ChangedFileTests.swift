import DirtyScopeModel
@testable import DirtyScopeRecording
import Foundation
import Pages
import Testing

/// The file under a reader changes. The reader reads with pread(2), so a file that
/// shrinks at any moment is `RecordingError.fileChanged` (which replay shows), never SIGBUS.
@Suite struct ChangedFileTests {
    /// A recording several times the reader's cached blocks (random bitmaps barely
    /// compress), so reads after the open reach the file; returns its path and bytes.
    private func largeRecording() throws -> (path: String, bytes: [UInt8]) {
        let info = SyntheticRounds.sessionInfo(slots: 2, pagesPerSlot: 100_000)
        var random = SplitMix64(seed: 3)
        let rounds = mixedRounds(info, count: 40).map { round in
            var m = round.metrics
            let bitmaps = round.bitmaps.map { b in
                let words = (0..<b.reported.words.count).map { _ in random.next() & random.next() }
                return SlotBitmaps(reported: DirtyBitmap(pageCount: b.reported.pageCount, words: words),
                                   falsePositives: DirtyBitmap(pageCount: b.reported.pageCount, words: words.map { $0 & random.next() & random.next() }))
            }
            for i in m.slots.indices { m.slots[i][.copiedPages] = bitmaps[i].reported.count }
            return Round(counting: m, bitmaps: bitmaps)
        }
        let path = try writeRecording(info, rounds.map { .round($0) })
        let bytes = try fileBytes(path)
        try #require(bytes.count > 3 * RecordingFile.blockSize * RecordingFile.blockCount)
        return (path, bytes)
    }

    /// Truncated after the open: every round and metrics asked for after it says so.
    @Test func shrinkingFileIsAnErrorNotSIGBUS() throws {
        let (path, bytes) = try largeRecording()
        defer { unlink(path) }
        let reader = try RecordingReader(path: path)
        #expect(reader.roundCount == 40)
        _ = try reader.entry(at: 0)
        let now = Format.fileHeaderSize + 100
        #expect(truncate(path, off_t(now)) == 0)
        let changed = RecordingError.fileChanged(path: path, openedBytes: bytes.count, nowBytes: now)
        #expect(changed.description.contains("changed while open: \(bytes.count) bytes when opened, \(now) now"))
        for i in [0, 1, 20, 39] {
            #expect(throws: changed) { _ = try reader.entry(at: i) }
            #expect(throws: changed) { _ = try reader.metrics(at: i) }
        }
        #expect(reader.totals(through: 39)[.rounds] < 40)
        #expect(reader.warnings.contains { $0.contains("changed while open") })
    }

    /// Truncated between the size check and the read that follows it (where a mapping
    /// raised SIGBUS): the read finds the bytes gone.
    @Test func shrinkingBetweenCheckAndReadIsAnError() throws {
        let (path, bytes) = try largeRecording()
        defer { unlink(path) }
        let file = try RecordingFile(path: path)
        let reader = try RecordingReader(file: file, path: path)
        var cut: Int?
        file.willRead = { offset in
            #expect(truncate(path, off_t(offset)) == 0)
            cut = offset
            file.willRead = nil
        }
        do {
            _ = try reader.entry(at: reader.roundCount - 1)
            Issue.record("the last round decoded from a truncated file")
        } catch let error as RecordingError {
            #expect(error == .fileChanged(path: path, openedBytes: bytes.count, nowBytes: try #require(cut)))
        }
    }

    /// Truncated during the open scan, before each of its reads in turn and to several
    /// lengths: the open fails naming both sizes.
    @Test func shrinkingDuringTheScanFailsTheOpen() throws {
        let (path, bytes) = try largeRecording()
        defer { unlink(path) }
        // The reads of a clean open, by the offsets they start at.
        var offsets: [Int] = []
        let clean = try RecordingFile(path: path)
        clean.willRead = { offsets.append($0) }
        _ = try RecordingReader(file: clean, path: path)
        #expect(offsets.count > 2 * RecordingFile.blockCount)
        for (k, offset) in offsets.enumerated() {
            for now in Set([0, offset / 2, offset, offset + 1, bytes.count - 1]) where now < bytes.count {
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                let file = try RecordingFile(path: path)
                var reads = 0
                file.willRead = { _ in
                    if reads == k { #expect(truncate(path, off_t(now)) == 0) }
                    reads += 1
                }
                #expect(throws: RecordingError.fileChanged(path: path, openedBytes: bytes.count, nowBytes: now),
                        "truncated to \(now) before read \(k) at \(offset)") {
                    _ = try RecordingReader(file: file, path: path)
                }
            }
        }
    }

    /// A FIFO is refused at once (opening one for reading would wait for a writer).
    @Test func fifoIsNotARecording() throws {
        let path = temporaryPath("fifo")
        #expect(mkfifo(path, 0o600) == 0)
        defer { unlink(path) }
        #expect(throws: RecordingError.notARegularFile(path: path)) { _ = try RecordingReader(path: path) }
    }
}

import DirtyScopeModel
@testable import DirtyScopeRecording
import Foundation
import Testing

/// Forged files: valid on the outside (checksums and sync markers right), hostile inside.
@Suite struct ForgedFileTests {
    /// A few thousand inputs of the fuzzer that `dirtyscope bench --suite fuzz` runs 10^6
    /// times: none may trap, and the reader must open a good share of them (the forgeries
    /// reach past the header checks) and decode rounds from them.
    @Test func forgedFilesNeverTrap() throws {
        var fuzzer = try RecordingFuzzer(seed: 11)
        let report = fuzzer.run(inputs: 3000)
        #expect(report.inputs == 3000)
        #expect(report.opened > 1000)
        #expect(report.roundsDecoded > 10_000)
    }

    /// Taking a file apart and putting it back together gives the same bytes.
    @Test func partsReassembleToTheSameFile() throws {
        let info = SyntheticRounds.sessionInfo(slots: 2, pagesPerSlot: 1000)
        let path = try writeRecording(info, sessionRecords(mixedRounds(info, count: 10)))
        defer { unlink(path) }
        let bytes = try fileBytes(path)
        let parts = try RecordingFuzzer.parts(bytes)
        let again = RecordingFuzzer.assemble(parts)
        let reader = try RecordingReader(contents: again, name: "again")
        #expect(reader.roundCount == 10)
        #expect(reader.warnings.isEmpty)
        #expect(Array(again[Format.fileHeaderSize...]).count > 0)
    }

    /// The CRC of a long range from prefix CRCs equals the CRC of the range itself, read
    /// from memory or from a file through its blocks, with the prefixes behind dropped.
    @Test func rangeCRCMatchesDirectCRC() throws {
        var random = SplitMix64(seed: 5)
        let bytes = (0..<200_000).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let path = temporaryPath("range-crc")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        for file in [RecordingFile(copying: bytes, name: "random"), try RecordingFile(path: path)] {
            let crc = RangeCRC(file)
            let ranges = [(0, 20_000), (1, 19_999), (1023, 5000), (3000, 3001), (5000, 7049), (10, 3000),
                          (65_000, 140_000), (65_536, 65_537), (70_000, 200_000), (131_071, 131_200), (199_000, 200_000)]
            for (a, b) in ranges {
                crc.forget(below: a)
                let expected = bytes.withUnsafeBytes { CRC32.of(UnsafeRawBufferPointer(rebasing: $0[a..<b])) }
                #expect(try crc.of(a..<b) == expected, "\(a)..<\(b)")
            }
        }
    }
}

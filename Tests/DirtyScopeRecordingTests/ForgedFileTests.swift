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

    /// The CRC of a long range from prefix CRCs equals the CRC of the range itself.
    @Test func rangeCRCMatchesDirectCRC() {
        var random = SplitMix64(seed: 5)
        let bytes = (0..<20_000).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        bytes.withUnsafeBytes { buffer in
            let crc = RangeCRC(buffer)
            for (a, b) in [(0, 20_000), (1, 19_999), (1023, 5000), (3000, 3001), (5000, 7049), (10, 3000)] {
                #expect(crc.of(a..<b) == CRC32.of(UnsafeRawBufferPointer(rebasing: buffer[a..<b])), "\(a)..<\(b)")
            }
        }
    }
}

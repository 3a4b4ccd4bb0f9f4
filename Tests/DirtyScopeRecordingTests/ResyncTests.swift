import DirtyScopeModel
@testable import DirtyScopeRecording
import Foundation
import Testing

/// Resynchronising after damage: every sync marker is a candidate record, and each is
/// tried at a bounded cost however long a payload it claims, so the scan is linear in
/// the file. Work is counted in bytes examined (checksummed, searched, decoded), never
/// timed.
@Suite struct ResyncTests {
    /// A small recording with `markers` sync markers inserted before its end record, each
    /// claiming a 1 MiB event (12 bytes apart), followed by 1 MiB of junk so that every
    /// claim fits in the file and must be checksummed.
    static func markerFile(_ markers: Int) throws -> [UInt8] {
        let info = SyntheticRounds.sessionInfo(slots: 1, pagesPerSlot: 1000)
        let path = try writeRecording(info, mixedRounds(info, count: 4).map { .round($0) })
        defer { unlink(path) }
        var bytes = try fileBytes(path)
        var junk = ByteWriter()
        for i in 0..<markers {
            junk.append(contentsOf: Format.sync)
            junk.u32(UInt32(truncatingIfNeeded: i))
            junk.u8(RecordType.event.rawValue)
            junk.varint(1 << 20 - 1)
        }
        junk.append(contentsOf: [UInt8](repeating: 0x55, count: 1 << 20))
        bytes.insert(contentsOf: junk.bytes, at: bytes.count - 12)   // before the end record
        return bytes
    }

    /// The markers are all named as damage and the rounds around them replay.
    @Test func manyLongClaimsAfterDamageAreSkipped() throws {
        let reader = try RecordingReader(contents: try Self.markerFile(20_000), name: "markers")
        #expect(reader.roundCount == 4)
        #expect(reader.warnings.contains { $0.contains("corrupt record") })
        #expect(reader.isFinished)
    }

    /// From 10,000 to 150,000 markers (the case that took 37.7 s when every candidate's
    /// checksum ran over its whole claim) the bytes examined stay within a fixed multiple
    /// of the file: each candidate costs its header and at most two `RangeCRC.step`s of
    /// checksum, and the prefix checksums, the search and the rest pass over the file
    /// about once each.
    @Test(arguments: [10_000, 40_000, 150_000])
    func resyncExaminesBytesLinearInTheFile(markers: Int) throws {
        let bytes = try Self.markerFile(markers)
        let reader = try RecordingReader(contents: bytes, name: "markers")
        #expect(reader.roundCount == 4)
        let examined = reader.index.bytesExamined
        let perCandidate = Format.maxRecordHeaderSize + 2 * RangeCRC.step
        #expect(examined <= markers * perCandidate + 4 * bytes.count, "\(examined) bytes examined for \(bytes.count)")
        // With markers 12 bytes apart that bound is 27 times the file; the scan stays well inside it.
        #expect(examined <= 16 * bytes.count, "\(examined) bytes examined for \(bytes.count)")
    }
}

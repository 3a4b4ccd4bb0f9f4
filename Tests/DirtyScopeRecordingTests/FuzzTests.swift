import DirtyScopeModel
@testable import DirtyScopeRecording
import Foundation
import Testing

/// Random damage over thousands of deterministic seeds: byte flips, truncations,
/// insertions, deletions. The reader must never crash, must fail only with a
/// `RecordingError`, and whatever it replays must be exactly what was recorded.
@Suite struct FuzzTests {
    static let cases = 3000

    @Test func damagedFilesNeverCrashAndReplayOnlyWhatWasRecorded() throws {
        let info = SyntheticRounds.sessionInfo(slots: 2, pagesPerSlot: 1000)
        let rounds = mixedRounds(info, count: 40)
        let records = sessionRecords(rounds, eventsEvery: 3)
        let path = try writeRecording(info, records, keyframeInterval: 6)
        defer { unlink(path) }
        let original = try fileBytes(path)
        let events = records.compactMap { if case .event(let e) = $0 { e } else { nil } }

        var opened = 0
        var replayed = 0
        for seed in 0..<UInt64(Self.cases) {
            var random = SplitMix64(seed: seed)
            let bytes = Self.damage(original, &random)
            let reader: RecordingReader
            do {
                reader = try RecordingReader(contents: bytes, name: "seed \(seed)")
            } catch is RecordingError {
                continue
            }
            opened += 1
            #expect(reader.roundCount <= rounds.count)
            #expect(reader.events.allSatisfy { events.contains($0) }, "seed \(seed)")
            var positions = Array(0..<reader.roundCount)
            positions += positions.map { _ in Int(random.next() % UInt64(max(1, reader.roundCount))) }
            for i in positions where i < reader.roundCount {
                do {
                    let round = try reader.entry(at: i).round
                    let k = Int(round.index) - 1
                    #expect(k >= 0 && k < rounds.count && round == rounds[k], "seed \(seed): round \(i)")
                    replayed += 1
                } catch is RecordingError {
                    continue
                }
            }
            _ = reader.totals(through: reader.roundCount - 1)
            _ = RecordingSummary(reader).text()
        }
        // Most damage leaves most of the file readable.
        #expect(opened > Self.cases / 2)
        #expect(replayed > Self.cases * 10)
    }

    /// One to three random mutations of `bytes`.
    static func damage(_ bytes: [UInt8], _ random: inout SplitMix64) -> [UInt8] {
        var b = bytes
        for _ in 0...(random.next() % 3) {
            guard !b.isEmpty else { break }
            let at = Int(random.next() % UInt64(b.count))
            switch random.next() % 5 {
            case 0, 1:
                for _ in 0...(random.next() % 8) {
                    let p = (at + Int(random.next() % 64)) % b.count
                    b[p] ^= UInt8(1 + random.next() % 255)
                }
            case 2:
                b.removeSubrange(at...)
            case 3:
                b.insert(contentsOf: (0...(random.next() % 16)).map { _ in UInt8(truncatingIfNeeded: random.next()) }, at: at)
            default:
                b.removeSubrange(at..<min(b.count, at + 1 + Int(random.next() % 100)))
            }
        }
        return b
    }
}

import DirtyScopeModel
@testable import DirtyScopeRecording
import Foundation
import Testing

/// Each file in Tests/Regressions once crashed, hung or was silently accepted; it must now
/// fail with an error naming the field, value and limit, or read with the warnings due.
@Suite struct RegressionFileTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Regressions")

    /// Opens `name` and reads it as every command does; returns the reader or the error.
    private func read(_ name: String) throws -> Result<RecordingReader, RecordingError> {
        let path = Self.folder.appendingPathComponent(name).path
        let result: Result<RecordingReader, RecordingError>
        do {
            result = .success(try RecordingReader(path: path))
        } catch let error as RecordingError {
            return .failure(error)
        }
        var opened = 0
        let sink = try #require(fopen("/dev/null", "w"))
        defer { fclose(sink) }
        _ = RecordingFuzzer.read(try fileBytes(path), sink: sink, opened: &opened)
        return result
    }

    private func refused(_ name: String, naming parts: [String]) throws {
        guard case .failure(let error) = try read(name) else {
            Issue.record("\(name) opened")
            return
        }
        for part in parts { #expect(error.description.contains(part), "\(error)") }
    }

    private func warnings(_ name: String) throws -> [String] {
        guard case .success(let reader) = try read(name) else {
            Issue.record("\(name) did not open")
            return []
        }
        return reader.warnings
    }

    @Test func everyRegressionFileIsCovered() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.folder.path).filter { $0.hasSuffix(".dsrec") }
        #expect(files.count == 8, "\(files): add a test for each new file")
    }

    @Test func impossibleHeadersAreRefusedByName() throws {
        try refused("page-size-negative.dsrec", naming: ["page size -4096", "4096...65536"])
        try refused("page-size-2e62.dsrec", naming: ["page size 4611686018427387904"])
        try refused("slot-pages-2e61.dsrec", naming: ["slot 0 has 2305843009213693952 pages", "\(SessionLimits.maxTotalPages)"])
        try refused("slots-40-of-2e32-pages.dsrec", naming: ["40 slots", "at most 32"])
        try refused("vcpus-1e8.dsrec", naming: ["100000000 vCPUs", "1...64"])
    }

    @Test func overflowingHistogramIsAnInvalidRound() throws {
        let w = try warnings("histogram-count-2e64.dsrec")
        #expect(w.contains { $0.contains("latency call count 18446744073709551615 exceeds \(SessionLimits.maxTotalPages)") }, "\(w)")
    }

    @Test func duplicatedReorderedAndMissingRoundsAreNamed() throws {
        let w = try warnings("rounds-duplicated-reordered.dsrec")
        #expect(w.contains { $0.contains("repeats round sequence 1") }, "\(w)")
        #expect(w.contains { $0.contains("1 rounds missing") && $0.contains("jumps from 2 to 3") }, "\(w)")
        #expect(w.contains { $0.contains("goes back to round sequence 2 after 3") }, "\(w)")
        #expect(w.contains { $0.contains("the end record counts 50 rounds") && $0.contains("3 rounds") }, "\(w)")
    }

    @Test func impossibleEventsAreSkipped() throws {
        let w = try warnings("events-impossible.dsrec")
        #expect(w.contains { $0.contains("ring-full vCPU -1 is outside 0...63") }, "\(w)")
        #expect(w.contains { $0.contains("missed pages 4611686018427387904") }, "\(w)")
    }
}

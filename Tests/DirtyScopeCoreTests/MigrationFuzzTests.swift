@testable import DirtyScopeCore
import DirtyScopeModel
import DirtyScopeRecording
import XCTest

/// Forged migration streams through what `dirtyscope receive` does with them (no KVM):
/// none traps, none takes a second, and a valid stream gets to resume.
final class MigrationFuzzTests: XCTestCase {
    func testForgedStreamsNeverTrap() {
        var fuzzer = MigrationFuzzer(seed: 7)
        let report = fuzzer.run(inputs: 1500)
        XCTAssertEqual(report.inputs, 1500)
        XCTAssertEqual(report.hangs, 0)
        XCTAssertGreaterThan(report.resumed, 0, "some forgeries are harmless and resume")
        XCTAssertGreaterThan(report.inputs - report.resumed, 500, "most are refused: \(report.refusals)")
    }

    func testAValidStreamResumesAndEachLieIsNamed() {
        var fuzzer = MigrationFuzzer(seed: 3)
        var frames = fuzzer.validFrames()
        func stream(_ frames: [MigrationWire.Frame]) -> [UInt8] { frames.reduce(MigrationWire.greeting(.source)) { $0 + MigrationWire.encode($1) } }
        XCTAssertNil(fuzzer.receive(stream(frames)), "the valid stream resumes")
        // A page whose data does not match its hash.
        let i = frames.firstIndex { if case .pages(let p) = $0 { return !p.data.isEmpty } else { return false } }!
        guard case .pages(var p) = frames[i] else { return XCTFail() }
        p.data[0] ^= 1
        frames[i] = .pages(p)
        XCTAssertTrue(fuzzer.receive(stream(frames))?.contains("arrived corrupted") == true)
        // A hash of the source's that the destination's pages do not match.
        var lying = fuzzer.validFrames()
        let h = lying.firstIndex { if case .hashes = $0 { return true } else { return false } }!
        guard case .hashes(let slot, let pages, let hashes) = lying[h] else { return XCTFail() }
        lying[h] = .hashes(slot: slot, pages: pages, hashes: hashes.map { $0 ^ 1 })
        XCTAssertTrue(fuzzer.receive(stream(lying))?.contains("resume before a switch-over that found every page") == true)
    }
}

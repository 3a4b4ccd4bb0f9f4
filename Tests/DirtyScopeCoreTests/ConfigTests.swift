import DirtyScopeCore
import DirtyScopeModel
import Pages
import XCTest

final class ConfigTests: XCTestCase {
    func testClearChunkMustBeAMultipleOf64() {
        XCTAssertEqual(try ClearChunk(parsing: "4096"), .pages(4096))
        XCTAssertEqual(try ClearChunk(parsing: "slot"), .wholeSlot)
        XCTAssertThrowsError(try ClearChunk(parsing: "100")) { error in
            XCTAssertTrue("\(error)".contains("100"), "the message names the value")
            XCTAssertTrue("\(error)".contains("64"), "the message names the rule")
        }
        XCTAssertThrowsError(try ClearChunk(parsing: "0"))
    }

    func testSessionConfigRejectsBadValuesWithTheValueAndTheLimit() {
        var c = SessionConfig()
        c.slotBytes = [4097]
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("4097")) }
        c = SessionConfig()
        c.mode = .ring
        c.ringEntries = 1000
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("1000")) }
        // One ring-size rule: what KVM refuses (under a page of 16-byte entries) the config
        // and bench refuse too, naming the minimum.
        c.ringEntries = 16
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("from \(PageSize.system / 16)"), "\($0)") }
        var ringBench = BenchConfig()
        ringBench.ringEntries = 16
        XCTAssertThrowsError(try ringBench.validate()) { XCTAssertTrue("\($0)".contains("from \(PageSize.system / 16)"), "\($0)") }
        c.ringEntries = PageSize.system / 16
        XCTAssertNoThrow(try c.validate())
        var b = BenchConfig()
        b.dirtyPercent = 0
        XCTAssertThrowsError(try b.validate()) { XCTAssertTrue("\($0)".contains("0")) }
    }

    func testLatencyStatsHistogram() {
        var s = LatencyStats()
        for ns: UInt64 in [1, 3, 1000, 1500, 1_000_000] { s.record(ns) }
        XCTAssertEqual(s.count, 5)
        XCTAssertEqual(s.maxNanos, 1_000_000)
        XCTAssertEqual(s.histogram[0], 1)          // 1 ns
        XCTAssertEqual(s.histogram[1], 1)          // [2, 4)
        XCTAssertEqual(s.histogram[9], 1)          // [512, 1024)
        XCTAssertEqual(s.histogram[10], 1)         // [1024, 2048)
        XCTAssertEqual(s.histogram[19], 1)         // [524288, 1048576)
        XCTAssertEqual(s.percentileUpperBound(0.5), 1023)
    }
}

import KVM
import XCTest

/// DirtyBitmap against a plain `Set<Int>` model, plus its word/block layout (the kernel's).
final class DirtyBitmapTests: XCTestCase {
    private func bitmap(_ pageCount: Int, _ pages: [Int]) -> DirtyBitmap {
        var b = DirtyBitmap(pageCount: pageCount)
        for p in pages { b[p] = true }
        return b
    }

    func testSubscriptUsesTheKernelBitLayout() {
        var b = DirtyBitmap(pageCount: 200)
        XCTAssertEqual(b.blockCount, 4)
        XCTAssertEqual(b.byteCount, 32)
        XCTAssertTrue(b.isEmpty)
        b[0] = true
        b[63] = true
        b[64] = true
        b[199] = true
        XCTAssertEqual(b.words, [1 | 1 << 63, 1, 0, 1 << 7])
        XCTAssertTrue(b[0] && b[63] && b[64] && b[199])
        XCTAssertFalse(b[1] || b[62] || b[65] || b[198])
        XCTAssertEqual(b.count, 4)
        b[63] = false
        b[63] = false
        XCTAssertEqual(b.word(0), 1)
        XCTAssertEqual(b.setPages, [0, 64, 199])
        XCTAssertEqual(b.description, "DirtyBitmap(3/200 pages)")
    }

    func testCountInRangesAcrossWordBoundaries() {
        let pages = [0, 1, 63, 64, 65, 127, 128, 150, 191, 192, 255, 256, 299]
        let b = bitmap(300, pages)
        let model = Set(pages)
        let edges = [0, 1, 2, 62, 63, 64, 65, 66, 127, 128, 129, 191, 192, 193, 255, 256, 257, 299, 300]
        for lo in edges {
            for hi in edges where hi >= lo {
                XCTAssertEqual(b.count(in: lo..<hi), model.filter { (lo..<hi).contains($0) }.count, "count(in: \(lo)..<\(hi))")
            }
        }
        XCTAssertEqual(b.count(in: 0..<300), pages.count)
        XCTAssertEqual(b.count(in: 5..<5), 0)
    }

    func testSetAndClearRangesAcrossWordBoundaries() {
        let ranges = [0..<0, 0..<1, 3..<61, 0..<64, 60..<70, 63..<65, 64..<128, 10..<250, 100..<300, 0..<300, 299..<300, 128..<192]
        for r in ranges {
            var b = DirtyBitmap(pageCount: 300)
            b.set(r)
            XCTAssertEqual(b.setPages, Array(r), "set(\(r))")
            XCTAssertEqual(b.count, r.count)
            var full = DirtyBitmap(pageCount: 300)
            full.setAll()
            full.clear(r)
            XCTAssertEqual(full.count, 300 - r.count, "clear(\(r))")
            XCTAssertTrue(r.allSatisfy { !full[$0] }, "clear(\(r)) left a page set")
            XCTAssertEqual(full.count(in: r), 0)
        }
        // Overlapping set and clear compose like the set model.
        var b = DirtyBitmap(pageCount: 300)
        var model = Set<Int>()
        for (i, r) in ranges.enumerated() {
            if i % 3 == 2 { b.clear(r); model.subtract(r) } else { b.set(r); model.formUnion(r) }
            XCTAssertEqual(b.setPages, model.sorted(), "after step \(i) (\(r))")
        }
    }

    func testTailBitsStayClearForOddPageCounts() {
        for pageCount in [1, 63, 65, 100, 127, 129, 1027] {
            var b = DirtyBitmap(pageCount: pageCount)
            b.setAll()
            XCTAssertEqual(b.count, pageCount, "setAll over \(pageCount) pages")
            XCTAssertEqual(b.words.last!.nonzeroBitCount, pageCount % 64 == 0 ? 64 : pageCount % 64)
            // Raw words with every bit set (as a sloppy kernel copy might give) are masked.
            let raw = DirtyBitmap(pageCount: pageCount, words: [UInt64](repeating: ~0, count: (pageCount + 63) / 64))
            XCTAssertEqual(raw, b)
            var w = DirtyBitmap(pageCount: pageCount)
            w.setWord(w.blockCount - 1, ~0)
            XCTAssertEqual(w.count, pageCount % 64 == 0 ? 64 : pageCount % 64, "setWord on the last block of \(pageCount)")
            // So is a buffer filled through withUnsafeMutableWords.
            var m = DirtyBitmap(pageCount: pageCount)
            m.withUnsafeMutableWords { words in for i in words.indices { words[i] = ~0 } }
            XCTAssertEqual(m, b)
            XCTAssertEqual(m.pages(ofBlock: m.blockCount - 1).upperBound, pageCount)
        }
        XCTAssertEqual(DirtyBitmap(pageCount: 0).blockCount, 0)
        XCTAssertTrue(DirtyBitmap(pageCount: 0).isEmpty)
        var zero = DirtyBitmap(pageCount: 0)
        zero.setAll()
        XCTAssertEqual(zero.count, 0)
    }

    func testSetOperationsMatchTheSetModel() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let n = Int.random(in: 1...500, using: &rng)
            let a = (0..<n).filter { _ in Bool.random(using: &rng) }
            let c = (0..<n).filter { _ in Int.random(in: 0..<4, using: &rng) == 0 }
            let x = bitmap(n, a), y = bitmap(n, c)
            XCTAssertEqual(x.union(y).setPages, Set(a).union(c).sorted())
            XCTAssertEqual(x.intersection(y).setPages, Set(a).intersection(c).sorted())
            XCTAssertEqual(x.subtracting(y).setPages, Set(a).subtracting(c).sorted())
            var m = x
            m.formUnion(y)
            m.subtract(x)
            XCTAssertEqual(m.setPages, Set(c).subtracting(a).sorted())
            m.formIntersection(x)
            XCTAssertTrue(m.isEmpty)
        }
    }

    func testForEachSetPageVisitsInIncreasingOrder() {
        let pages = [299, 0, 64, 63, 128, 1, 200, 65]
        let b = bitmap(300, pages)
        var seen: [Int] = []
        b.forEachSetPage { seen.append($0) }
        XCTAssertEqual(seen, pages.sorted())
        struct Stop: Error {}
        var visited = 0
        XCTAssertThrowsError(try b.forEachSetPage { _ in visited += 1; if visited == 3 { throw Stop() } })
        XCTAssertEqual(visited, 3)
    }

    func testBlocks() {
        let b = bitmap(300, [5, 70, 71, 290])
        XCTAssertEqual(b.dirtyBlocks, [0, 1, 4])
        XCTAssertEqual(b.pages(ofBlock: 0), 0..<64)
        XCTAssertEqual(b.pages(ofBlock: 1), 64..<128)
        XCTAssertEqual(b.pages(ofBlock: 4), 256..<300)
        XCTAssertEqual(DirtyBitmap.pagesPerBlock, 64)
        for block in b.dirtyBlocks {
            XCTAssertGreaterThan(b.count(in: b.pages(ofBlock: block)), 0)
        }
        XCTAssertEqual(b.dirtyBlocks.map { b.count(in: b.pages(ofBlock: $0)) }.reduce(0, +), b.count)
    }

    func testClearAllAndEquality() {
        var a = bitmap(130, [1, 129])
        let b = bitmap(130, [1, 129])
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.hashValue, b.hashValue)
        XCTAssertNotEqual(a, bitmap(131, [1, 129]))
        a.clearAll()
        XCTAssertTrue(a.isEmpty)
        XCTAssertEqual(a, DirtyBitmap(pageCount: 130))
        a.withUnsafeWords { XCTAssertEqual($0.count, 3) }
    }
}

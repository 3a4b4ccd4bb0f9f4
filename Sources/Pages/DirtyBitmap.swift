/// One bit per guest page, in the layout KVM uses for `KVM_GET_DIRTY_LOG` and
/// `KVM_CLEAR_DIRTY_LOG` on x86-64: bit `i` of 64-bit word `w` is page `w * 64 + i`.
///
/// A word is also a *block*: the 64-page unit that `KVM_CLEAR_DIRTY_LOG` works in.
/// Bits past `pageCount` in the last word are always zero.
public struct DirtyBitmap: Equatable, Hashable, Sendable {
    /// Pages per word, and the alignment `KVM_CLEAR_DIRTY_LOG` demands of ranges.
    @inlinable public static var pagesPerBlock: Int { 1 << blockShift }
    /// log2 of `pagesPerBlock`: page `p` is in block `p >> blockShift`. (Inlinable
    /// constants, not stored lets: hot loops in other modules fold them.)
    @inlinable public static var blockShift: Int { 6 }

    /// Blocks (words) that cover `pages` pages.
    @inlinable public static func blocks(covering pages: Int) -> Int { (pages + pagesPerBlock - 1) / pagesPerBlock }

    /// Number of pages the bitmap covers.
    public let pageCount: Int
    /// The words, `blockCount` of them (`words` reads them).
    @usableFromInline var storage: [UInt64]

    /// The words, `blockCount` of them.
    public var words: [UInt64] { storage }

    /// A bitmap of `pageCount` clean pages.
    public init(pageCount: Int) {
        precondition(pageCount >= 0, "negative page count")
        self.pageCount = pageCount
        self.storage = [UInt64](repeating: 0, count: (pageCount + 63) / 64)
    }

    /// A bitmap over `pageCount` pages from raw words; bits past `pageCount` are dropped.
    public init(pageCount: Int, words: [UInt64]) {
        precondition(words.count == (pageCount + 63) / 64, "word count does not match page count")
        self.pageCount = pageCount
        self.storage = words
        maskTail()
    }

    /// Number of 64-page blocks (words).
    public var blockCount: Int { storage.count }

    /// Size of the bitmap in bytes, as the kernel sees it.
    public var byteCount: Int { storage.count * 8 }

    public subscript(page: Int) -> Bool {
        get {
            precondition(page >= 0 && page < pageCount, "page \(page) out of range 0..<\(pageCount)")
            return storage[page >> 6] & (1 << UInt64(page & 63)) != 0
        }
        set {
            precondition(page >= 0 && page < pageCount, "page \(page) out of range 0..<\(pageCount)")
            if newValue {
                storage[page >> 6] |= 1 << UInt64(page & 63)
            } else {
                storage[page >> 6] &= ~(1 << UInt64(page & 63))
            }
        }
    }

    /// The 64 bits of block `block`.
    public func word(_ block: Int) -> UInt64 { storage[block] }

    /// Replaces block `block`'s bits (bits past `pageCount` are dropped).
    public mutating func setWord(_ block: Int, _ value: UInt64) {
        storage[block] = value
        if block == storage.count - 1 { maskTail() }
    }

    /// Number of set bits.
    public var count: Int {
        var n = 0
        for w in storage { n &+= w.nonzeroBitCount }
        return n
    }

    /// True when no bit is set.
    public var isEmpty: Bool { storage.allSatisfy { $0 == 0 } }

    /// Number of set bits in `range` of pages.
    public func count(in range: Range<Int>) -> Int {
        precondition(range.lowerBound >= 0 && range.upperBound <= pageCount, "range \(range) out of 0..<\(pageCount)")
        guard !range.isEmpty else { return 0 }
        var n = 0
        var page = range.lowerBound
        while page < range.upperBound {
            let w = page >> 6
            let lo = page & 63
            let hi = min(64, range.upperBound - (w << 6))
            var bits = storage[w] >> UInt64(lo)
            if hi - lo < 64 { bits &= (1 << UInt64(hi - lo)) - 1 }
            n += bits.nonzeroBitCount
            page = (w + 1) << 6
        }
        return n
    }

    /// Sets every page in `range`.
    public mutating func set(_ range: Range<Int>) { update(range, to: true) }
    /// Clears every page in `range`.
    public mutating func clear(_ range: Range<Int>) { update(range, to: false) }

    /// Sets every page.
    public mutating func setAll() {
        for i in storage.indices { storage[i] = ~0 }
        maskTail()
    }

    /// Clears every page.
    public mutating func clearAll() {
        for i in storage.indices { storage[i] = 0 }
    }

    /// Adds the pages set in `other` (same page count).
    public mutating func formUnion(_ other: DirtyBitmap) {
        precondition(other.pageCount == pageCount, "page counts differ")
        for i in storage.indices { storage[i] |= other.storage[i] }
    }

    /// Keeps only the pages also set in `other` (same page count).
    public mutating func formIntersection(_ other: DirtyBitmap) {
        precondition(other.pageCount == pageCount, "page counts differ")
        for i in storage.indices { storage[i] &= other.storage[i] }
    }

    /// Removes the pages set in `other` (and-not; same page count).
    public mutating func subtract(_ other: DirtyBitmap) {
        precondition(other.pageCount == pageCount, "page counts differ")
        for i in storage.indices { storage[i] &= ~other.storage[i] }
    }

    public func union(_ other: DirtyBitmap) -> DirtyBitmap { var r = self; r.formUnion(other); return r }
    public func intersection(_ other: DirtyBitmap) -> DirtyBitmap { var r = self; r.formIntersection(other); return r }
    public func subtracting(_ other: DirtyBitmap) -> DirtyBitmap { var r = self; r.subtract(other); return r }

    /// Calls `body` with each set page, in increasing order.
    @inlinable
    public func forEachSetPage(_ body: (Int) throws -> Void) rethrows {
        for (w, word) in storage.enumerated() where word != 0 {
            var bits = word
            let base = w << 6
            while bits != 0 {
                try body(base + bits.trailingZeroBitCount)
                bits &= bits - 1
            }
        }
    }

    /// The set pages, in increasing order.
    public var setPages: [Int] {
        var pages: [Int] = []
        pages.reserveCapacity(count)
        forEachSetPage { pages.append($0) }
        return pages
    }

    /// Indices of blocks with at least one page set.
    public var dirtyBlocks: [Int] { storage.indices.filter { storage[$0] != 0 } }

    /// The page range of block `block` (the last block may be short).
    public func pages(ofBlock block: Int) -> Range<Int> {
        (block << 6)..<min(pageCount, (block + 1) << 6)
    }

    /// Gives the kernel (or any C API) the words to read or fill. Inlinable, as
    /// `withUnsafeWords` is: as a plain generic across modules it cost about 10 µs a call,
    /// and the harvester times it around KVM_GET_DIRTY_LOG (manual GET 21 µs against 13 µs
    /// for the kernel's test).
    @inlinable
    public mutating func withUnsafeMutableWords<R, E: Error>(_ body: (UnsafeMutableBufferPointer<UInt64>) throws(E) -> R) throws(E) -> R {
        defer { maskTail() }
        return try storage.withUnsafeMutableBufferPointer { (buffer: inout UnsafeMutableBufferPointer<UInt64>) throws(E) -> R in
            try body(buffer)
        }
    }

    /// Reads the words without copying them. Inlinable, so a caller in another module gets
    /// a specialized copy: the generic one, with its `Result` of unknown layout, cost about
    /// 10 µs a call in the harvester's round (its metadata is cold after a copy loop).
    @inlinable
    public func withUnsafeWords<R, E: Error>(_ body: (UnsafeBufferPointer<UInt64>) throws(E) -> R) throws(E) -> R {
        try storage.withUnsafeBufferPointer(body)
    }

    private mutating func update(_ range: Range<Int>, to value: Bool) {
        precondition(range.lowerBound >= 0 && range.upperBound <= pageCount, "range \(range) out of 0..<\(pageCount)")
        var page = range.lowerBound
        while page < range.upperBound {
            let w = page >> 6
            let lo = page & 63
            let hi = min(64, range.upperBound - (w << 6))
            let width = hi - lo
            let mask: UInt64 = (width == 64 ? ~0 : ((1 << UInt64(width)) - 1)) << UInt64(lo)
            if value { storage[w] |= mask } else { storage[w] &= ~mask }
            page = (w + 1) << 6
        }
    }

    @usableFromInline
    mutating func maskTail() {
        let tail = pageCount & 63
        if tail != 0, !storage.isEmpty {
            storage[storage.count - 1] &= (1 << UInt64(tail)) - 1
        }
    }
}

extension DirtyBitmap: CustomStringConvertible {
    public var description: String { "DirtyBitmap(\(count)/\(pageCount) pages)" }
}

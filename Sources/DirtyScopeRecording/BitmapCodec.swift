/// Run-length tokens over a bitmap's 64-bit words (FORMAT.md, "Bitmap tokens").
///
/// A token is a varint `count << 3 | kind` covering `count` (>= 1) words:
/// zeros and ones runs carry nothing, a repeated word carries it once (8 bytes),
/// literals carry each word (8 bytes), single-bit words carry each bit's position (1 byte).
/// Decoding XORs the words into a buffer: into zeros for a keyframe, into the previous
/// round's words for a delta, so both share one decoder.
enum BitmapCodec {
    enum Kind: UInt64 {
        case zeros = 0, ones = 1, repeated = 2, literal = 3, singleBits = 4
    }

    /// Most bytes `encode` can produce for `words` words.
    static func maxEncodedSize(words: Int) -> Int { words * 10 + 16 }

    /// Appends the tokens for `w` to `out` and returns the number of bits set in `w`.
    @discardableResult
    static func encode(_ w: UnsafeBufferPointer<UInt64>, into out: inout ByteWriter) -> Int {
        var words = SparseWords()
        let bits = words.collect(w)
        encode(words, wordCount: w.count, into: &out)
        return bits
    }

    /// Appends the tokens for a bitmap of `wordCount` words whose nonzero words are `s`.
    static func encode(_ s: SparseWords, wordCount: Int, into out: inout ByteWriter) {
        let n = s.indices.count
        var next = 0  // the first word not yet covered
        var e = 0
        while e < n {
            if s.indices[e] > next { token(.zeros, s.indices[e] - next, &out) }
            let v = s.values[e]
            let run = s.runEnd(from: e) - e
            if v == ~0 {
                token(.ones, run, &out)
                e += run
            } else if run >= 2 {
                token(.repeated, run, &out)
                out.u64(v)
                e += run
            } else if v.nonzeroBitCount == 1 {
                let end = s.groupEnd(from: e) { $0.nonzeroBitCount == 1 }
                token(.singleBits, end - e, &out)
                for k in e..<end { out.u8(UInt8(s.values[k].trailingZeroBitCount)) }
                e = end
            } else {
                let end = s.groupEnd(from: e) { $0 != ~0 && $0.nonzeroBitCount > 1 }
                token(.literal, end - e, &out)
                out.u64s(s.values[e..<end])
                e = end
            }
            next = s.indices[e - 1] + 1
        }
        if wordCount > next { token(.zeros, wordCount - next, &out) }
    }

    /// Reads tokens covering exactly `w.count` words and XORs them into `w`.
    static func decodeXOR(_ r: inout ByteReader, into w: UnsafeMutableBufferPointer<UInt64>) throws(FormatViolation) {
        let n = w.count
        var i = 0
        while i < n {
            let token = try r.varint()
            guard let kind = Kind(rawValue: token & 7) else {
                throw FormatViolation("unknown bitmap token kind \(token & 7)")
            }
            let count = token >> 3
            guard count >= 1, count <= UInt64(n - i) else {
                throw FormatViolation("bitmap run of \(count) words at word \(i) overruns the \(n) words of the slot")
            }
            let end = i + Int(count)
            switch kind {
            case .zeros:
                break
            case .ones:
                for k in i..<end { w[k] = ~w[k] }
            case .repeated:
                let v = try r.u64()
                for k in i..<end { w[k] ^= v }
            case .literal:
                guard r.remaining >= 8 * (end - i) else { throw FormatViolation("bitmap literals run past the record") }
                for k in i..<end { w[k] ^= try r.u64() }
            case .singleBits:
                for k in i..<end {
                    let bit = try r.u8()
                    guard bit < 64 else { throw FormatViolation("bit position \(bit) is not below 64") }
                    w[k] ^= 1 << UInt64(bit)
                }
            }
            i = end
        }
    }

    private static func token(_ kind: Kind, _ count: Int, _ out: inout ByteWriter) {
        out.varint(UInt64(count) << 3 | kind.rawValue)
    }
}

/// A bitmap's nonzero words with their indices, ascending: what the writer keeps of the
/// previous round to compute deltas, so it never reads that round's bitmaps again.
struct SparseWords {
    private(set) var indices: [Int] = []
    private(set) var values: [UInt64] = []

    /// Replaces the contents with the nonzero words of `w`; returns the bits set.
    mutating func collect(_ w: UnsafeBufferPointer<UInt64>) -> Int {
        indices.removeAll(keepingCapacity: true)
        values.removeAll(keepingCapacity: true)
        var bits = 0
        var i = 0
        // Eight words at a time: bitmaps are mostly zeros, and the OR vectorises.
        while i + 8 <= w.count {
            var any: UInt64 = 0
            for k in i..<i + 8 { any |= w[k] }
            if any != 0 {
                for k in i..<i + 8 where w[k] != 0 {
                    indices.append(k)
                    values.append(w[k])
                    bits += w[k].nonzeroBitCount
                }
            }
            i += 8
        }
        for k in i..<w.count where w[k] != 0 {
            indices.append(k)
            values.append(w[k])
            bits += w[k].nonzeroBitCount
        }
        return bits
    }

    /// Replaces the contents with the nonzero words of `a XOR b`.
    mutating func formXOR(_ a: SparseWords, _ b: SparseWords) {
        indices.removeAll(keepingCapacity: true)
        values.removeAll(keepingCapacity: true)
        var i = 0
        var j = 0
        while i < a.indices.count || j < b.indices.count {
            let ai = i < a.indices.count ? a.indices[i] : Int.max
            let bj = j < b.indices.count ? b.indices[j] : Int.max
            if ai < bj {
                indices.append(ai)
                values.append(a.values[i])
                i += 1
            } else if bj < ai {
                indices.append(bj)
                values.append(b.values[j])
                j += 1
            } else {
                let x = a.values[i] ^ b.values[j]
                if x != 0 {
                    indices.append(ai)
                    values.append(x)
                }
                i += 1
                j += 1
            }
        }
    }

    mutating func removeAll() {
        indices.removeAll(keepingCapacity: true)
        values.removeAll(keepingCapacity: true)
    }

    /// The end of the run of adjacent equal words starting at entry `e`.
    func runEnd(from e: Int) -> Int {
        var r = e + 1
        while r < indices.count && indices[r] == indices[r - 1] + 1 && values[r] == values[e] { r += 1 }
        return r
    }

    /// The end of the group of adjacent words from entry `e` that are `alike`, none starting a
    /// run of two or more equal words (those are cheaper as a repeated-word token).
    func groupEnd(from e: Int, _ alike: (UInt64) -> Bool) -> Int {
        var r = e + 1
        while r < indices.count && indices[r] == indices[r - 1] + 1 && alike(values[r])
                && !(r + 1 < indices.count && indices[r + 1] == indices[r] + 1 && values[r + 1] == values[r]) {
            r += 1
        }
        return r
    }
}

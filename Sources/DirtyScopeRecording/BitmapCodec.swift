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

    /// Appends the tokens for `w` to `out`.
    static func encode(_ w: UnsafeBufferPointer<UInt64>, into out: inout ByteWriter) {
        let n = w.count
        var i = 0
        while i < n {
            let v = w[i]
            var j = i + 1
            while j < n && w[j] == v { j += 1 }
            if v == 0 {
                token(.zeros, j - i, &out)
            } else if v == ~0 {
                token(.ones, j - i, &out)
            } else if j - i >= 2 {
                token(.repeated, j - i, &out)
                out.u64(v)
            } else if v.nonzeroBitCount == 1 {
                // Gather single-bit words that do not start a run of their own.
                j = i + 1
                while j < n && w[j].nonzeroBitCount == 1 && (j + 1 == n || w[j + 1] != w[j]) { j += 1 }
                token(.singleBits, j - i, &out)
                for k in i..<j { out.u8(UInt8(w[k].trailingZeroBitCount)) }
            } else {
                j = i + 1
                while j < n && isLiteral(w[j]) && (j + 1 == n || w[j + 1] != w[j]) { j += 1 }
                token(.literal, j - i, &out)
                for k in i..<j { out.u64(w[k]) }
            }
            i = j
        }
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

    private static func isLiteral(_ v: UInt64) -> Bool { v != 0 && v != ~0 && v.nonzeroBitCount > 1 }

    private static func token(_ kind: Kind, _ count: Int, _ out: inout ByteWriter) {
        out.varint(UInt64(count) << 3 | kind.rawValue)
    }
}

import DirtyScopeModel
import Pages

/// The bitmaps of a round record (FORMAT.md, "Bitmap section"): for each slot in the
/// round's order, the reported then the false-positive bitmap, each present only when its
/// count is not zero. A keyframe stores each bitmap's words; a delta stores their XOR with
/// the same slot's bitmap in the previous round (empty when that round lacked the slot).
/// Tokens of 1 KiB or more are deflated (zlib, `Z_RLE`) when that makes them smaller.
final class BitmapSectionEncoder {
    private let deflater: Deflater
    private var full = ByteWriter()
    private var delta = ByteWriter()
    private var xor = SparseWords()
    /// Nonzero words of the reported and false-positive bitmaps, by slot index: of the
    /// round being encoded, and of the previous round (empty where it lacked the slot).
    private var current: [(reported: SparseWords, falsePositives: SparseWords)]
    private var previous: [(reported: SparseWords, falsePositives: SparseWords)]

    init(slotCount: Int, level: Int32 = 1) {
        deflater = Deflater(level: level)
        current = Array(repeating: (SparseWords(), SparseWords()), count: slotCount)
        previous = current
    }

    /// Appends `round`'s bitmap section to `out` (nothing when every bitmap is empty) and
    /// says whether it was stored as a keyframe (when asked, or when the delta would not be
    /// smaller), with each slot's bitmap counts. Every bitmap must cover its slot's pages.
    /// The round becomes the base of the next delta only by `commit`.
    func encode(_ round: Round, forceKeyframe: Bool,
                into out: inout ByteWriter) -> (keyframe: Bool, counts: [(reported: Int, falsePositives: Int)]) {
        full.removeAll()
        delta.removeAll()
        let counts = zip(round.slots, round.bitmaps).map { s, b in
            (encode(b.reported, into: &current[s.slot].reported, previous: previous[s.slot].reported, forceKeyframe: forceKeyframe),
             encode(b.falsePositives, into: &current[s.slot].falsePositives, previous: previous[s.slot].falsePositives,
                    forceKeyframe: forceKeyframe))
        }
        let keyframe = forceKeyframe || delta.count >= full.count
        let tokens = keyframe ? full.bytes : delta.bytes
        guard !tokens.isEmpty else { return (keyframe, counts) }
        if tokens.count >= Format.deflateThreshold {
            let compressed = deflater.compress(tokens)
            var lengthField = ByteWriter()
            lengthField.varint(UInt64(tokens.count))
            if compressed.count + lengthField.count < tokens.count {
                out.u8(BitmapSectionCodec.deflate.rawValue)
                out.append(contentsOf: lengthField.bytes)
                out.append(contentsOf: compressed)
                return (keyframe, counts)
            }
        }
        out.u8(BitmapSectionCodec.stored.rawValue)
        out.append(contentsOf: tokens)
        return (keyframe, counts)
    }

    /// Makes `round`, just encoded and written, the base of the next delta.
    func commit(_ round: Round) {
        var present = [Bool](repeating: false, count: current.count)
        for s in round.slots { present[s.slot] = true }
        for slot in current.indices {
            if present[slot] {
                swap(&current[slot], &previous[slot])
            } else {
                previous[slot].reported.removeAll()
                previous[slot].falsePositives.removeAll()
            }
        }
    }

    /// Collects `bitmap`'s nonzero words into `words`; when it has pages set, adds its
    /// tokens to `full` and (unless a keyframe is forced) those of its XOR with `previous`
    /// to `delta`. Returns the pages set.
    private func encode(_ bitmap: DirtyBitmap, into words: inout SparseWords, previous: SparseWords,
                        forceKeyframe: Bool) -> Int {
        let count = bitmap.withUnsafeWords { words.collect($0) }
        guard count != 0 else { return 0 }
        BitmapCodec.encode(words, wordCount: bitmap.blockCount, into: &full)
        if !forceKeyframe {
            xor.formXOR(words, previous)
            BitmapCodec.encode(xor, wordCount: bitmap.blockCount, into: &delta)
        }
        return count
    }
}

/// Decodes bitmap sections, checking every length against the header's page counts.
/// (The pages set are not recounted against the metrics: the checksum already vouches
/// for the bytes, and a popcount of every bitmap would halve the decoding speed.)
final class BitmapSectionDecoder {
    private let layout: SlotLayout
    private let inflater = Inflater()
    private var inflated: [UInt8] = []
    /// One empty bitmap per slot, shared by every round that reports nothing there.
    private let empty: [DirtyBitmap]

    init(layout: SlotLayout) {
        self.layout = layout
        empty = layout.pages.map { DirtyBitmap(pageCount: $0) }
    }

    /// Reads the section at `r` (the rest of the record) for a round with `metrics`;
    /// `previous` is the round before it in the file (needed unless `keyframe`).
    func decode(_ r: inout ByteReader, metrics: RoundMetrics, keyframe: Bool,
                previous: Round?) throws -> [SlotBitmaps] {
        var bound = 0
        for s in metrics.slots {
            let perBitmap = BitmapCodec.maxEncodedSize(words: layout.words(s.slot))
            if s[.reportedPages] != 0 { bound += perBitmap }
            if s[.falsePositivePages] != 0 { bound += perBitmap }
        }
        guard bound > 0 else {
            guard r.isAtEnd else { throw FormatViolation("\(r.remaining) bytes follow a round without bitmaps") }
            return metrics.slots.map { SlotBitmaps(reported: empty[$0.slot], falsePositives: empty[$0.slot]) }
        }
        guard let codec = BitmapSectionCodec(rawValue: try r.u8()) else {
            throw FormatViolation("unknown bitmap codec")
        }
        switch codec {
        case .stored:
            let tokens = r.rest()
            guard tokens.count <= bound else { throw FormatViolation("bitmap tokens are longer than the slots allow") }
            return try decodeTokens(tokens, metrics: metrics, keyframe: keyframe, previous: previous)
        case .deflate:
            // Deflate expands at most 1032:1, so the declared length is bounded by the file too.
            let length = try r.count(upTo: bound, "inflated bitmap length")
            let compressed = r.rest()
            guard length <= compressed.count * 1032 + 64 else {
                throw FormatViolation("inflated length \(length) is impossible from \(compressed.count) bytes")
            }
            if inflated.count < length { inflated = [UInt8](repeating: 0, count: length) }
            return try inflated.withUnsafeMutableBytes { buffer in
                let target = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length])
                try inflater.decompress(compressed, into: target)
                return try decodeTokens(UnsafeRawBufferPointer(target), metrics: metrics, keyframe: keyframe, previous: previous)
            }
        }
    }

    private func decodeTokens(_ tokens: UnsafeRawBufferPointer, metrics: RoundMetrics, keyframe: Bool,
                              previous: Round?) throws -> [SlotBitmaps] {
        var r = ByteReader(tokens)
        var bitmaps: [SlotBitmaps] = []
        bitmaps.reserveCapacity(metrics.slots.count)
        for s in metrics.slots {
            let before = keyframe ? nil : previous.flatMap { p in p.slots.firstIndex { $0.slot == s.slot }.map { p.bitmaps[$0] } }
            bitmaps.append(SlotBitmaps(
                reported: try bitmap(&r, slot: s.slot, count: s[.reportedPages], base: before?.reported),
                falsePositives: try bitmap(&r, slot: s.slot, count: s[.falsePositivePages], base: before?.falsePositives)))
        }
        guard r.isAtEnd else { throw FormatViolation("\(r.remaining) bytes follow the last bitmap") }
        return bitmaps
    }

    private func bitmap(_ r: inout ByteReader, slot: Int, count: Int, base: DirtyBitmap?) throws -> DirtyBitmap {
        guard count != 0 else { return empty[slot] }
        let pages = layout.pages[slot]
        var words = base?.words ?? [UInt64](repeating: 0, count: layout.words(slot))
        try words.withUnsafeMutableBufferPointer { try BitmapCodec.decodeXOR(&r, into: $0) }
        return DirtyBitmap(pageCount: pages, words: words)
    }
}

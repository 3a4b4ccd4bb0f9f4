import DirtyScopeModel
import KVM

/// The bitmaps of a round record (FORMAT.md, "Bitmap section"): for each slot in the
/// round's order, the reported then the false-positive bitmap, each present only when its
/// count is not zero. A keyframe stores each bitmap's words; a delta stores their XOR with
/// the same slot's bitmap in the previous round (empty when that round lacked the slot).
/// The tokens are deflated when that makes them smaller.
final class BitmapSectionEncoder {
    private let slotCount: Int
    private let deflater: Deflater
    private var full = ByteWriter()
    private var delta = ByteWriter()
    private var xorScratch: [UInt64] = []
    /// The previous round's bitmaps, by slot index (nil where it lacked the slot).
    private var previousReported: [DirtyBitmap?]
    private var previousFalsePositives: [DirtyBitmap?]

    init(slotCount: Int, level: Int32 = 6) {
        self.slotCount = slotCount
        deflater = Deflater(level: level)
        previousReported = Array(repeating: nil, count: slotCount)
        previousFalsePositives = Array(repeating: nil, count: slotCount)
    }

    /// Appends `round`'s bitmap section to `out` (nothing when every bitmap is empty) and
    /// says whether it was stored as a keyframe: when asked, or when the delta would not be
    /// smaller. `round` must have passed `RoundCodec.check`.
    func encode(_ round: Round, forceKeyframe: Bool, into out: inout ByteWriter) -> Bool {
        full.removeAll()
        delta.removeAll()
        for s in round.slots {
            encode(s.reported, previous: previousReported[s.slot], forceKeyframe: forceKeyframe)
            encode(s.falsePositives, previous: previousFalsePositives[s.slot], forceKeyframe: forceKeyframe)
        }
        let keyframe = forceKeyframe || delta.count >= full.count
        let tokens = keyframe ? full.bytes : delta.bytes

        previousReported = Array(repeating: nil, count: slotCount)
        previousFalsePositives = Array(repeating: nil, count: slotCount)
        for s in round.slots {
            previousReported[s.slot] = s.reported
            previousFalsePositives[s.slot] = s.falsePositives
        }

        guard !tokens.isEmpty else { return keyframe }
        if tokens.count >= 32 {
            let compressed = deflater.compress(tokens)
            var lengthField = ByteWriter()
            lengthField.varint(UInt64(tokens.count))
            if compressed.count + lengthField.count < tokens.count {
                out.u8(BitmapSectionCodec.deflate.rawValue)
                out.append(contentsOf: lengthField.bytes)
                out.append(contentsOf: compressed)
                return keyframe
            }
        }
        out.u8(BitmapSectionCodec.stored.rawValue)
        out.append(contentsOf: tokens)
        return keyframe
    }

    private func encode(_ bitmap: DirtyBitmap, previous: DirtyBitmap?, forceKeyframe: Bool) {
        guard !bitmap.isEmpty else { return }
        bitmap.withUnsafeWords { BitmapCodec.encode($0, into: &full) }
        guard !forceKeyframe else { return }
        guard let previous, !previous.isEmpty else {
            bitmap.withUnsafeWords { BitmapCodec.encode($0, into: &delta) }
            return
        }
        if xorScratch.count < bitmap.blockCount { xorScratch = [UInt64](repeating: 0, count: bitmap.blockCount) }
        bitmap.withUnsafeWords { now in
            previous.withUnsafeWords { before in
                xorScratch.withUnsafeMutableBufferPointer { x in
                    for i in 0..<now.count { x[i] = now[i] ^ before[i] }
                    BitmapCodec.encode(UnsafeBufferPointer(rebasing: x[0..<now.count]), into: &delta)
                }
            }
        }
    }
}

/// Decodes bitmap sections, checking every length against the header's page counts and
/// every bitmap against the count stored in the round's metrics.
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
                previous: Round?) throws -> (reported: [DirtyBitmap], falsePositives: [DirtyBitmap]) {
        var bound = 0
        for s in metrics.slots {
            let perBitmap = BitmapCodec.maxEncodedSize(words: layout.words(s.slot))
            if s.reportedCount != 0 { bound += perBitmap }
            if s.falsePositiveCount != 0 { bound += perBitmap }
        }
        guard bound > 0 else {
            guard r.isAtEnd else { throw FormatViolation("\(r.remaining) bytes follow a round without bitmaps") }
            return (metrics.slots.map { empty[$0.slot] }, metrics.slots.map { empty[$0.slot] })
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
                              previous: Round?) throws -> (reported: [DirtyBitmap], falsePositives: [DirtyBitmap]) {
        var r = ByteReader(tokens)
        var reported: [DirtyBitmap] = []
        var falsePositives: [DirtyBitmap] = []
        reported.reserveCapacity(metrics.slots.count)
        falsePositives.reserveCapacity(metrics.slots.count)
        for s in metrics.slots {
            let before = keyframe ? nil : previous?.slots.first { $0.slot == s.slot }
            reported.append(try bitmap(&r, slot: s.slot, count: s.reportedCount, base: before?.reported, what: "reported"))
            falsePositives.append(try bitmap(&r, slot: s.slot, count: s.falsePositiveCount,
                                             base: before?.falsePositives, what: "false-positive"))
        }
        guard r.isAtEnd else { throw FormatViolation("\(r.remaining) bytes follow the last bitmap") }
        return (reported, falsePositives)
    }

    private func bitmap(_ r: inout ByteReader, slot: Int, count: Int, base: DirtyBitmap?, what: String) throws -> DirtyBitmap {
        guard count != 0 else { return empty[slot] }
        let pages = layout.pages[slot]
        var words = base?.words ?? [UInt64](repeating: 0, count: layout.words(slot))
        try words.withUnsafeMutableBufferPointer { try BitmapCodec.decodeXOR(&r, into: $0) }
        let bitmap = DirtyBitmap(pageCount: pages, words: words)
        guard bitmap.count == count else {
            throw FormatViolation("slot \(slot) \(what) bitmap has \(bitmap.count) pages set, the round says \(count)")
        }
        return bitmap
    }
}

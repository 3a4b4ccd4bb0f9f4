@testable import DirtyScopeRecording
import Testing

@Suite struct BitmapCodecTests {
    static func patterns() -> [[UInt64]] {
        var random = SplitMix64(seed: 5)
        var sparse = [UInt64](repeating: 0, count: 300)
        for _ in 0..<20 { sparse[Int(random.next() % 300)] |= 1 << (random.next() % 64) }
        return [
            [], [0], [~0], [1 << 63], [0x0101_0101_0101_0101],
            [UInt64](repeating: 0, count: 5000), [UInt64](repeating: ~0, count: 100),
            [UInt64](repeating: 0x0101_0101_0101_0101, count: 33),
            (0..<200).map { _ in random.next() }, sparse,
            (0..<64).map { UInt64(1) << UInt64($0) }, [1, 1, 2, 3, 3, 0, ~0, 5, 5, 5, 1 << 40, 7],
            (0..<500).map { $0 % 3 == 0 ? random.next() : 0 },
        ]
    }

    @Test(arguments: patterns())
    func tokensRoundTrip(_ words: [UInt64]) throws {
        var out = ByteWriter()
        words.withUnsafeBufferPointer { BitmapCodec.encode($0, into: &out) }
        #expect(out.count <= BitmapCodec.maxEncodedSize(words: words.count))
        var decoded = [UInt64](repeating: 0, count: words.count)
        try out.bytes.withUnsafeBytes { bytes in
            var r = ByteReader(bytes)
            try decoded.withUnsafeMutableBufferPointer { try BitmapCodec.decodeXOR(&r, into: $0) }
            #expect(r.isAtEnd)
        }
        #expect(decoded == words)
    }

    @Test func runsThatOverrunAreRejected() throws {
        var out = ByteWriter()
        out.varint(UInt64(10) << 3 | BitmapCodec.Kind.zeros.rawValue)
        var words = [UInt64](repeating: 0, count: 9)
        #expect(throws: FormatViolation.self) {
            try out.bytes.withUnsafeBytes { bytes in
                var r = ByteReader(bytes)
                try words.withUnsafeMutableBufferPointer { try BitmapCodec.decodeXOR(&r, into: $0) }
            }
        }
    }

    @Test func varintsAndZigzagRoundTrip() throws {
        let unsigned: [UInt64] = [0, 1, 127, 128, 300, 1 << 35, .max]
        let signed: [Int] = [0, -1, 1, -64, 64, .min, .max]
        var out = ByteWriter()
        unsigned.forEach { out.varint($0) }
        signed.forEach { out.zigzag($0) }
        try out.bytes.withUnsafeBytes { bytes throws in
            var r = ByteReader(bytes)
            for v in unsigned { #expect(try r.varint() == v) }
            for v in signed { #expect(try r.zigzag() == v) }
            #expect(r.isAtEnd)
        }
        let overlong: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]
        overlong.withUnsafeBytes { bytes in
            var r = ByteReader(bytes)
            #expect(throws: FormatViolation.self) { try r.varint() }
        }
    }
}

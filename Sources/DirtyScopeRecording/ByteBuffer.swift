/// Bytes being assembled for the file: little-endian integers and LEB128 varints.
struct ByteWriter {
    private(set) var bytes: [UInt8] = []

    var count: Int { bytes.count }

    mutating func removeAll() { bytes.removeAll(keepingCapacity: true) }
    mutating func removeFirst(_ n: Int) { bytes.removeFirst(n) }

    mutating func u8(_ v: UInt8) { bytes.append(v) }

    /// The file header (FORMAT.md): magic, version, flags, then the session's JSON with its
    /// length and CRC32.
    mutating func fileHeader(json: [UInt8]) {
        append(contentsOf: Format.magic)
        u16(Format.version)
        u16(0)
        u32(UInt32(json.count))
        u32(CRC32.of(json))
        append(contentsOf: json)
    }

    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }

    /// Words in a row, little-endian: one copy on a little-endian host.
    mutating func u64s(_ words: ArraySlice<UInt64>) {
        #if _endian(little)
        words.withUnsafeBytes { bytes.append(contentsOf: $0) }
        #else
        for v in words { u64(v) }
        #endif
    }

    /// Unsigned LEB128: 7 bits a byte, low bits first, high bit set on all but the last.
    mutating func varint(_ v: UInt64) {
        guard v >= 0x80 else {
            bytes.append(UInt8(v))
            return
        }
        var encoded: (UInt64, UInt16) = (0, 0)
        // In bounds: a 64-bit value takes at most 10 bytes, the size of `encoded`.
        let n = withUnsafeMutableBytes(of: &encoded) { out in
            var v = v
            var i = 0
            while v >= 0x80 {
                out[i] = UInt8(truncatingIfNeeded: v) | 0x80
                v >>= 7
                i += 1
            }
            out[i] = UInt8(v)
            return i + 1
        }
        withUnsafeBytes(of: &encoded) { bytes.append(contentsOf: $0[0..<n]) }
    }

    /// A signed integer as a zigzag varint (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...).
    mutating func zigzag(_ v: Int) {
        let v = Int64(v)
        varint(UInt64(bitPattern: (v << 1) ^ (v >> 63)))
    }

    mutating func append<S: Sequence>(contentsOf other: S) where S.Element == UInt8 {
        bytes.append(contentsOf: other)
    }

    /// Overwrites a u32 written earlier at `offset`.
    mutating func patchU32(at offset: Int, _ v: UInt32) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> UInt32(8 * i)) }
    }
}

/// A bounds-checked cursor over bytes of the file. Every read checks the bytes remain,
/// so no length in the file can make a read (or an allocation sized by it) overrun.
///
/// The buffer must stay valid while the cursor is used; the reader makes cursors only
/// inside `RecordingFile.withBytes`, over the bytes it lends.
struct ByteReader {
    let buffer: UnsafeRawBufferPointer
    private(set) var offset: Int

    init(_ buffer: UnsafeRawBufferPointer, offset: Int = 0) {
        self.buffer = buffer
        self.offset = offset
    }

    var remaining: Int { buffer.count - offset }
    var isAtEnd: Bool { offset >= buffer.count }

    mutating func u8() throws(FormatViolation) -> UInt8 {
        guard offset < buffer.count else { throw FormatViolation("ends inside a field") }
        defer { offset += 1 }
        return buffer[offset]
    }

    mutating func u16() throws(FormatViolation) -> UInt16 {
        guard remaining >= 2 else { throw FormatViolation("ends inside a field") }
        defer { offset += 2 }
        return UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    mutating func u32() throws(FormatViolation) -> UInt32 {
        guard remaining >= 4 else { throw FormatViolation("ends inside a field") }
        defer { offset += 4 }
        return UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    mutating func u64() throws(FormatViolation) -> UInt64 {
        guard remaining >= 8 else { throw FormatViolation("ends inside a field") }
        defer { offset += 8 }
        return UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    mutating func varint() throws(FormatViolation) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try u8()
            if shift == 63 && byte > 1 { throw FormatViolation("varint overflows 64 bits") }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    mutating func zigzag() throws(FormatViolation) -> Int {
        let v = try varint()
        return Int(Int64(bitPattern: (v >> 1) ^ (0 &- (v & 1))))
    }

    /// A varint that must lie in `0...limit`, as an Int (`what` names it in the error).
    mutating func count(upTo limit: Int, _ what: String) throws(FormatViolation) -> Int {
        let v = try varint()
        guard v <= UInt64(max(0, limit)) else { throw FormatViolation("\(what) \(v) exceeds \(limit)") }
        return Int(v)
    }

    /// The next `n` bytes, which must remain.
    mutating func bytes(_ n: Int) throws(FormatViolation) -> UnsafeRawBufferPointer {
        guard n >= 0, n <= remaining else { throw FormatViolation("length \(n) exceeds the \(remaining) bytes left") }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + n])
    }

    /// The rest of the buffer.
    mutating func rest() -> UnsafeRawBufferPointer {
        defer { offset = buffer.count }
        return UnsafeRawBufferPointer(rebasing: buffer[offset...])
    }
}

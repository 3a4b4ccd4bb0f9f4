import CZlib

/// zlib's CRC-32 (the one in gzip and PNG), over records and the header.
enum CRC32 {
    /// The CRC of `bytes`, or of what came before (whose CRC is `crc`) followed by `bytes`.
    static func of(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        // crc32_z with a NULL buffer returns the initial CRC, not `crc`.
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return crc }
        // Safe: crc32_z only reads `count` bytes from the base address.
        return UInt32(truncatingIfNeeded: crc32_z(UInt(crc), base.assumingMemoryBound(to: Bytef.self), z_size_t(bytes.count)))
    }

    /// The CRC of A followed by B from CRC(A), CRC(B) and B's length (zlib's `crc32_combine`).
    static func combine(_ a: UInt32, _ b: UInt32, _ lengthB: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: crc32_combine(UInt(a), UInt(b), Int(lengthB)))
    }

    static func of(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { of($0) }
    }
}

/// A raw-deflate compressor kept across rounds (its state is ~300 KiB; `deflateReset`
/// reuses it). Not thread-safe, like the writer that owns it.
final class Deflater {
    private let stream: UnsafeMutablePointer<z_stream>
    private var scratch: [UInt8] = []

    /// `strategy` is zlib's: `Z_RLE` looks for runs of one byte only, which is where
    /// bitmap tokens repeat, at the speed of level 1.
    init(level: Int32, strategy: Int32 = Z_RLE) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // -15: raw deflate, no zlib header or Adler-32 (records carry their own CRC).
        let rc = deflateInit2_(stream, level, Z_DEFLATED, -15, 8, strategy,
                               zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        precondition(rc == Z_OK, "deflateInit2 failed (\(rc)): out of memory or a zlib version mismatch")
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// `input` compressed; the result is only valid until the next call.
    func compress(_ input: [UInt8]) -> ArraySlice<UInt8> {
        deflateReset(stream)
        let bound = Int(deflateBound(stream, uLong(input.count)))
        if scratch.count < bound { scratch = [UInt8](repeating: 0, count: bound) }
        let produced = input.withUnsafeBufferPointer { inBuf in
            scratch.withUnsafeMutableBufferPointer { outBuf in
                // Safe: zlib reads `avail_in` bytes of input (never writes it, despite the
                // mutable pointer type) and writes at most `avail_out` bytes of output; both
                // buffers outlive this closure, and the pointers are cleared before it ends.
                stream.pointee.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
                stream.pointee.avail_in = uInt(inBuf.count)
                stream.pointee.next_out = outBuf.baseAddress
                stream.pointee.avail_out = uInt(outBuf.count)
                let rc = deflate(stream, Z_FINISH)
                precondition(rc == Z_STREAM_END, "deflate into deflateBound bytes did not finish (\(rc))")
                let n = outBuf.count - Int(stream.pointee.avail_out)
                stream.pointee.next_in = nil
                stream.pointee.next_out = nil
                return n
            }
        }
        return scratch[0..<produced]
    }
}

/// A raw-deflate decompressor kept across rounds.
final class Inflater {
    private let stream: UnsafeMutablePointer<z_stream>

    init() {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let rc = inflateInit2_(stream, -15, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        precondition(rc == Z_OK, "inflateInit2 failed (\(rc)): out of memory or a zlib version mismatch")
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Inflates all of `input` into exactly `output.count` bytes; anything else is a violation.
    func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(FormatViolation) {
        inflateReset(stream)
        // Safe: zlib reads `avail_in` bytes from input and writes at most `avail_out` bytes
        // into output, both valid for this call; the pointers are cleared before returning.
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = uInt(input.count)
        stream.pointee.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_out = uInt(output.count)
        let rc = inflate(stream, Z_FINISH)
        let leftIn = stream.pointee.avail_in
        let leftOut = stream.pointee.avail_out
        stream.pointee.next_in = nil
        stream.pointee.next_out = nil
        guard rc == Z_STREAM_END else {
            throw FormatViolation(rc == Z_BUF_ERROR ? "compressed bitmaps inflate past their declared length"
                                                    : "compressed bitmaps are corrupt (zlib \(rc))")
        }
        guard leftIn == 0, leftOut == 0 else {
            throw FormatViolation("compressed bitmaps inflate to \(output.count - Int(leftOut)) bytes, not the declared \(output.count)")
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A recording's bytes as the reader sees them: the file read with `pread(2)`, or a copy
/// held in memory (tests and fuzzing). Owns the file descriptor or the copy.
///
/// Nothing is mapped, so a file that shrinks while open cannot raise SIGBUS: a read that
/// finds fewer bytes than the file had when opened throws `RecordingError.fileChanged`
/// with both sizes. The reader reads the file as it was when opened; one still being
/// recorded grows, and what is added later is not read.
///
/// Reads go through a few aligned blocks kept from the last reads (the scan and playback
/// move forward, so most reads hit one); a range that spans blocks is read whole into a
/// scratch buffer. Memory is the blocks plus the longest range asked for, which callers
/// bound by the header's limits before they ask.
///
/// Only a regular file is read: a FIFO would block, a directory or a device has no size.
final class RecordingFile {
    /// Bytes per cached block; a multiple of `RangeCRC.step`.
    static let blockSize = 64 << 10
    /// Blocks kept, least recently used replaced first.
    static let blockCount = 4

    /// The file's size when opened; nothing past it is read.
    let size: Int
    private let path: String
    /// The open file, or -1 for a copy in memory.
    private let fd: Int32
    /// The copy in memory, if any.
    private let memory: UnsafeMutableRawBufferPointer?
    /// `blockCount` blocks in one allocation, made at the first read.
    private var storage: UnsafeMutableRawBufferPointer?
    /// The file block each slot of `storage` holds (-1: none), and when it was last used.
    private var held = [Int](repeating: -1, count: RecordingFile.blockCount)
    private var lastUse = [UInt64](repeating: 0, count: RecordingFile.blockCount)
    private var uses: UInt64 = 0
    /// For ranges that span blocks; grows to the longest asked for.
    private var scratch = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    /// True while a `withBytes` body runs: it must not read the file again.
    private var lent = false
    /// Tests: called before every `pread(2)` with the offset it reads from.
    var willRead: ((Int) -> Void)?

    init(path: String) throws(RecordingError) {
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(path: path, errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw .ioFailed(path: path, call: "fstat", errno: e)
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw .notARegularFile(path: path)
        }
        self.fd = fd
        self.path = path
        size = Int(st.st_size)
        memory = nil
    }

    /// A private copy of `contents` (tests and fuzzing read recordings from memory);
    /// `name` stands for the path in messages.
    init(copying contents: [UInt8], name: String) {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, contents.count), alignment: 16)
        // Safe: `copy` has room for every byte of `contents`; it is freed only in deinit.
        contents.withUnsafeBytes { copy.copyMemory(from: $0) }
        memory = UnsafeMutableRawBufferPointer(rebasing: copy[0..<contents.count])
        fd = -1
        path = name
        size = contents.count
    }

    deinit {
        if fd >= 0 { close(fd) }
        memory?.deallocate()
        storage?.deallocate()
        scratch.deallocate()
    }

    /// Calls `body` with the bytes of `range`, which must lie within `size`. The buffer is
    /// valid only during the call, and `body` must not read this file again.
    /// - Throws: `RecordingError.fileChanged` when the file no longer holds the range,
    ///   `.ioFailed` when `pread(2)` fails, or what `body` throws.
    func withBytes<R>(_ range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        precondition(range.lowerBound >= 0 && range.upperBound <= size, "read \(range) outside the file's \(size) bytes")
        precondition(!lent, "a withBytes body read the file again")
        if let memory {
            return try body(UnsafeRawBufferPointer(rebasing: memory[range]))
        }
        guard !range.isEmpty else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        let buffer: UnsafeRawBufferPointer
        let b = range.lowerBound / Self.blockSize
        if (range.upperBound - 1) / Self.blockSize == b {
            let start = range.lowerBound - b * Self.blockSize
            buffer = UnsafeRawBufferPointer(rebasing: try block(b)[start..<(start + range.count)])
        } else {
            if scratch.count < range.count {
                scratch.deallocate()
                scratch = .allocate(byteCount: range.count, alignment: 16)
            }
            let target = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<range.count])
            try read(into: target, at: range.lowerBound)
            buffer = UnsafeRawBufferPointer(target)
        }
        lent = true
        defer { lent = false }
        return try body(buffer)
    }

    /// Throws `RecordingError.fileChanged` when the file is now shorter than when opened,
    /// though the bytes asked for next may be held already: the reader calls it once per
    /// round or metrics asked for, so a shrink is reported whatever is cached.
    func checkSize() throws(RecordingError) {
        guard fd >= 0 else { return }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .ioFailed(path: path, call: "fstat", errno: errno) }
        guard Int(st.st_size) >= size else { throw .fileChanged(path: path, openedBytes: size, nowBytes: Int(st.st_size)) }
    }

    /// Lets go of the cached blocks: the next reads go to the file.
    func forgetBlocks() {
        for i in held.indices { held[i] = -1 }
    }

    /// Block `b` of the file (its last block may be short), read unless held.
    private func block(_ b: Int) throws(RecordingError) -> UnsafeMutableRawBufferPointer {
        uses += 1
        let storage = self.storage ?? .allocate(byteCount: Self.blockSize * Self.blockCount, alignment: 4096)
        self.storage = storage
        let count = min(Self.blockSize, size - b * Self.blockSize)
        if let i = held.firstIndex(of: b) {
            lastUse[i] = uses
            return UnsafeMutableRawBufferPointer(rebasing: storage[(i * Self.blockSize)..<(i * Self.blockSize + count)])
        }
        // The least recently used slot, or an empty one (its last use is 0).
        let i = lastUse.indices.min { lastUse[$0] < lastUse[$1] }!
        held[i] = -1
        let slot = UnsafeMutableRawBufferPointer(rebasing: storage[(i * Self.blockSize)..<(i * Self.blockSize + count)])
        try read(into: slot, at: b * Self.blockSize)
        held[i] = b
        lastUse[i] = uses
        return slot
    }

    /// Fills `buffer` from `offset`; a file that ends first has shrunk since the open.
    private func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(RecordingError) {
        var done = 0
        while done < buffer.count {
            willRead?(offset + done)
            // Safe: the kernel writes at most `buffer.count - done` bytes from `done` on.
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n > 0 {
                done += n
            } else if n == 0 {
                var st = stat()
                let now = fstat(fd, &st) == 0 ? Int(st.st_size) : offset + done
                throw .fileChanged(path: path, openedBytes: size, nowBytes: now)
            } else if errno != EINTR {
                throw .ioFailed(path: path, call: "pread", errno: errno)
            }
        }
    }
}

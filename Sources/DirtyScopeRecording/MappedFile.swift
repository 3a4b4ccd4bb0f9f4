#if canImport(Glibc)
import Glibc
#endif

/// A recording's bytes, read-only: the file mapped with `mmap(2)` (pages load as replay
/// reaches them), or a copy of bytes given in memory. Owns the mapping (and the file
/// descriptor, kept to re-check the size) or the copy.
///
/// Only a regular file is mapped: a FIFO or a device would block or map nothing sensible.
/// The mapping covers the file as it was when opened; a file that grows later (a session
/// still recording) is read up to that size. A file that shrinks while open would make the
/// kernel raise SIGBUS on access to the lost pages, so `checkSize` is called before every
/// access after the open and turns a shrink into `RecordingError.fileChanged`.
final class MappedFile {
    let bytes: UnsafeRawBufferPointer
    /// The open file, or -1 for a copy in memory.
    private let fd: Int32
    private let release: () -> Void

    init(path: String) throws {
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw RecordingError.cannotOpen(path: path, errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw RecordingError.ioFailed(path: path, call: "fstat", errno: e)
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw RecordingError.notARegularFile(path: path)
        }
        let size = Int(st.st_size)
        guard size > 0 else {
            close(fd)
            self.fd = -1
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            release = {}
            return
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            let e = errno
            close(fd)
            throw RecordingError.ioFailed(path: path, call: "mmap", errno: e)
        }
        self.fd = fd
        // Safe: mmap returned `size` readable bytes at `base`, unmapped only in deinit,
        // after the last use of `bytes` by this object's owner.
        bytes = UnsafeRawBufferPointer(start: base, count: size)
        release = {
            munmap(base, size)
            close(fd)
        }
    }

    /// Throws `RecordingError.fileChanged` when the file is now shorter than the mapping.
    func checkSize(_ path: String) throws {
        guard fd >= 0 else { return }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw RecordingError.ioFailed(path: path, call: "fstat", errno: errno) }
        guard Int(st.st_size) >= bytes.count else {
            throw RecordingError.fileChanged(path: path, openedBytes: bytes.count, nowBytes: Int(st.st_size))
        }
    }

    /// A private copy of `contents` (tests and fuzzing read recordings from memory).
    init(copying contents: [UInt8]) {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, contents.count), alignment: 16)
        // Safe: `copy` has room for every byte of `contents`; it is freed only in deinit.
        contents.withUnsafeBytes { copy.copyMemory(from: $0) }
        bytes = UnsafeRawBufferPointer(rebasing: copy[0..<contents.count])
        fd = -1
        release = { copy.deallocate() }
    }

    deinit { release() }
}

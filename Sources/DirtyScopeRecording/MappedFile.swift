#if canImport(Glibc)
import Glibc
#endif

/// A recording's bytes, read-only: the file mapped with `mmap(2)` (pages load as replay
/// reaches them), or a copy of bytes given in memory. Owns the mapping or the copy.
///
/// The mapping covers the file as it was when opened; a file that grows later (a session
/// still recording) is read up to that size. Shrinking the file while it is open would make
/// the kernel raise SIGBUS on access, as with any mapped file.
final class MappedFile {
    let bytes: UnsafeRawBufferPointer
    private let release: () -> Void

    init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RecordingError.cannotOpen(path: path, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw RecordingError.ioFailed(path: path, call: "fstat", errno: errno) }
        let size = Int(st.st_size)
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            release = {}
            return
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw RecordingError.ioFailed(path: path, call: "mmap", errno: errno)
        }
        // Safe: mmap returned `size` readable bytes at `base`, unmapped only in deinit,
        // after the last use of `bytes` by this object's owner.
        bytes = UnsafeRawBufferPointer(start: base, count: size)
        release = { munmap(base, size) }
    }

    /// A private copy of `contents` (tests and fuzzing read recordings from memory).
    init(copying contents: [UInt8]) {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, contents.count), alignment: 16)
        // Safe: `copy` has room for every byte of `contents`; it is freed only in deinit.
        contents.withUnsafeBytes { copy.copyMemory(from: $0) }
        bytes = UnsafeRawBufferPointer(rebasing: copy[0..<contents.count])
        release = { copy.deallocate() }
    }

    deinit { release() }
}

#if canImport(Glibc)
import Glibc
#endif

/// An owned file descriptor, closed when the owner goes away. The raw number is
/// reached only through `withRaw`, so it never outlives its owner by accident.
final class FileDescriptor: @unchecked Sendable {
    private let raw: Int32

    /// Takes ownership of `raw` (>= 0).
    init(owning raw: Int32) {
        precondition(raw >= 0, "invalid fd \(raw)")
        self.raw = raw
    }

    deinit { close(raw) }

    func withRaw<R, E: Error>(_ body: (Int32) throws(E) -> R) throws(E) -> R { try body(raw) }
}

/// An owned memory mapping, unmapped when the owner goes away.
final class Mapping: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let length: Int

    /// Maps `length` bytes of `fd` at `offset` (or anonymous memory when fd is nil).
    init(length: Int, protection: Int32, flags: Int32, fd: Int32 = -1, offset: Int = 0, what: String) throws(KVMError) {
        let p = mmap(nil, length, protection, flags, fd, off_t(offset))
        guard let p, p != MAP_FAILED else { throw .mapping(what: what, bytes: length, errno: errno) }
        self.base = p
        self.length = length
    }

    deinit { munmap(base, length) }
}

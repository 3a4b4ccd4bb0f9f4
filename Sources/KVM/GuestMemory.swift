#if canImport(Glibc)
import Glibc
#endif

/// Anonymous, sparse host memory backing a memslot: `MAP_NORESERVE`, so a large
/// guest costs only the pages it touches; transparent huge pages are turned off so
/// that stays true page by page. Unmapped when the last owner lets go.
public final class GuestMemory: @unchecked Sendable {
    private let mapping: Mapping

    /// Maps `bytes` (a multiple of the page size) of zeroed memory.
    public init(bytes: Int, what: String = "guest memory") throws(KVMError) {
        guard bytes > 0, bytes % PageSize.system == 0 else {
            throw .invalidArgument(call: "mmap", reason: "\(what) size \(bytes) is not a positive multiple of the page size \(PageSize.system)")
        }
        mapping = try Mapping(length: bytes, protection: PROT_READ | PROT_WRITE,
                              flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, what: what)
        _ = madvise(mapping.base, bytes, MADV_NOHUGEPAGE)
    }

    /// Start of the mapping.
    public var base: UnsafeMutableRawPointer { mapping.base }
    /// Size in bytes.
    public var byteCount: Int { mapping.length }
    /// Size in pages.
    public var pageCount: Int { mapping.length / PageSize.system }

    /// Address of page `page` (checked: every raw page access goes through here, so no
    /// caller can reach outside the mapping).
    @inline(__always)
    public func page(_ page: Int) -> UnsafeMutableRawPointer {
        precondition(page >= 0 && page < pageCount, "page \(page) outside 0..<\(pageCount)")
        return mapping.base + page * PageSize.system
    }

    /// Pages resident in host memory (mincore), for memory accounting and sparse scans.
    public func residentPages() -> DirtyBitmap {
        let pages = pageCount
        var vec = [UInt8](repeating: 0, count: pages)
        _ = mincore(mapping.base, mapping.length, &vec)
        var words = [UInt64](repeating: 0, count: (pages + 63) / 64)
        for i in 0..<pages where vec[i] & 1 != 0 { words[i >> 6] |= 1 << UInt64(i & 63) }
        return DirtyBitmap(pageCount: pages, words: words)
    }

}

#if canImport(Glibc)
import Glibc
#endif

/// The host's page size, read from the system (never assumed).
public enum PageSize {
    /// `sysconf(_SC_PAGESIZE)`.
    public static let system: Int = Int(sysconf(Int32(_SC_PAGESIZE)))
}

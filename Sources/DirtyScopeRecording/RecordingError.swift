#if canImport(Glibc)
import Glibc
#endif

/// Why a recording could not be written or read, in one line that names the file.
public enum RecordingError: Error, Equatable, CustomStringConvertible {
    /// The file could not be created or opened (`open(2)`'s errno).
    case cannotOpen(path: String, errno: Int32)
    /// `write(2)`, `fdatasync(2)`, `pread(2)` or `fstat(2)` failed.
    case ioFailed(path: String, call: String, errno: Int32)
    /// The file does not start with the recording magic.
    case notARecording(path: String)
    /// The file was written by a newer DirtyScope.
    case newerVersion(path: String, version: Int)
    /// The header is unreadable (too short, bad checksum, bad JSON, impossible layout).
    case badHeader(path: String, reason: String)
    /// A round given to the writer does not fit the session's slot layout.
    case invalidRound(path: String, reason: String)
    /// A record that passed the scan on open failed to decode.
    case corruptRecord(path: String, offset: Int, reason: String)
    /// `entry(at:)` was asked for a round the file does not have.
    case noSuchRound(path: String, index: Int, count: Int)
    /// The path is a FIFO, a device or a directory, not a file.
    case notARegularFile(path: String)
    /// The file shrank while it was open for replay.
    case fileChanged(path: String, openedBytes: Int, nowBytes: Int)
    /// `append` after `finish`.
    case finished(path: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let e):
            return "\(path): cannot open: \(Self.words(e)) (errno \(e))"
        case .ioFailed(let path, let call, let e):
            return "\(path): \(call) failed: \(Self.words(e)) (errno \(e))"
        case .notARecording(let path):
            return "\(path): not a DirtyScope recording (wrong magic)"
        case .newerVersion(let path, let version):
            return "\(path): written in recording format version \(version); this dirtyscope reads up to version \(Format.version), upgrade it"
        case .badHeader(let path, let reason):
            return "\(path): unreadable recording header: \(reason)"
        case .invalidRound(let path, let reason):
            return "\(path): cannot record round: \(reason)"
        case .corruptRecord(let path, let offset, let reason):
            return "\(path): corrupt record at offset \(offset): \(reason)"
        case .noSuchRound(let path, let index, let count):
            return "\(path): no round \(index) (the recording has \(count))"
        case .notARegularFile(let path):
            return "\(path): not a regular file (a recording is a file; FIFOs, devices and directories are refused)"
        case .fileChanged(let path, let opened, let now):
            return "\(path): the file changed while open: \(opened) bytes when opened, \(now) now; reopen it"
        case .finished(let path):
            return "\(path): recording already finished"
        }
    }

    private static func words(_ e: Int32) -> String { String(cString: strerror(e)) }
}

/// A parse failure inside the module; the reader turns it into a warning or a `RecordingError`.
struct FormatViolation: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

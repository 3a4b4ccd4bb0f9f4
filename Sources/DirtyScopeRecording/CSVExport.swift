import DirtyScopeModel
#if canImport(Glibc)
import Glibc
#endif

/// Per-round metrics as CSV for spreadsheets (`dirtyscope export --csv`): one header line,
/// then one line per round, from round metrics only (no bitmap is decoded).
public enum CSVExport {
    /// The column names, in order.
    public static let columns = [
        "round", "time_s", "duration_ns", "mode", "chunk", "clear_policy", "reported", "false_positives", "fp_rate", "initial",
        "copied_pages", "bytes_copied", "missed", "get_calls", "get_total_ns", "get_max_ns", "clear_calls",
        "clear_total_ns", "clear_max_ns", "copy_ns", "bookkeeping_ns", "guest_writes", "wp_faults", "exits",
        "ring_entries", "ring_full_exits", "fp_raced", "fp_never_cleared", "lost_pages", "events",
    ]

    /// Writes the CSV to `stream` (for example `stdout`).
    /// - Throws: `RecordingError.corruptRecord` for a round that no longer decodes,
    ///   `.ioFailed` when the stream reports an error.
    public static func write(_ reader: RecordingReader, to stream: UnsafeMutablePointer<FILE>, name: String = "<stream>") throws {
        fputs(columns.joined(separator: ",") + "\n", stream)
        let origin = RowExport.recordingStart(reader)
        // A failed write (a closed pipe, a full disk) stops the export at once.
        for i in 0..<reader.roundCount where ferror(stream) == 0 {
            fputs(row(try reader.metrics(at: i), events: reader.index.rounds[i].events.count, origin: origin) + "\n", stream)
        }
        if fflush(stream) != 0 || ferror(stream) != 0 {
            throw RecordingError.ioFailed(path: name, call: "write", errno: errno)
        }
    }

    /// Writes the CSV to a file at `path` (created or truncated).
    public static func write(_ reader: RecordingReader, toPath path: String) throws {
        guard let stream = fopen(path, "w") else { throw RecordingError.cannotOpen(path: path, errno: errno) }
        defer { fclose(stream) }
        try write(reader, to: stream, name: path)
    }

    /// One round's line (without the newline); `events` counts the events recorded before
    /// it, and `time_s` counts from `origin`, the start of the recording.
    static func row(_ m: RoundMetrics, events: Int, origin: UInt64 = 0) -> String {
        let fields: [String] = [
            "\(m.index)", RowExport.seconds(m.startNanos >= origin ? m.startNanos - origin : 0), "\(m.durationNanos)", m.mode.rawValue, "\(m.clearChunk)", m.clearPolicy.rawValue,
            "\(m.reported)", "\(m.falsePositives)", rate(m.falsePositiveRate), "\(m.initial)", "\(m.copiedPages)",
            "\(m.bytesCopied)", m.missed.map { "\($0)" } ?? "", "\(m.getLatency.count)", "\(m.getLatency.totalNanos)",
            "\(m.getLatency.maxNanos)", "\(m.clearLatency.count)", "\(m.clearLatency.totalNanos)",
            "\(m.clearLatency.maxNanos)", "\(m.copyNanos)", "\(m.bookkeepingNanos)", "\(m.guestWrites)",
            "\(m.writeProtectFaults)", "\(m.exits)", "\(m.ringEntries)", "\(m.ringFullExits)", "\(m.origins.raced)", "\(m.origins.neverCleared)", "\(m.lostPages)", "\(events)",
        ]
        return fields.joined(separator: ",")
    }

    /// A rate (0...1) with 6 decimals.
    private static func rate(_ r: Double) -> String {
        let micro = Int((r * 1_000_000).rounded())
        let fraction = String(micro % 1_000_000)
        return "\(micro / 1_000_000)." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }
}

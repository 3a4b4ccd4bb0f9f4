import DirtyScopeModel
#if canImport(Glibc)
import Glibc
#endif

/// Per-round metrics as CSV for spreadsheets (`dirtyscope export --csv`): one header line,
/// then one line per round, from round metrics only (no bitmap is decoded).
public enum CSVExport {
    /// The columns before the metrics: what the round was.
    public static let roundColumns = ["round", "time_s", "mode", "clear_policy", "clear_chunk_pages"]
    /// The column after the metrics: events recorded before the round.
    public static let trailingColumns = ["events"]
    /// The column names, in order: the round's, then every metric's (`Metric.columns`).
    public static let columns = roundColumns + Metric.columns.map(\.name) + trailingColumns

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
        values(m, events: events, origin: origin).map(\.csv).joined(separator: ",")
    }

    /// One round's cells, in `columns` order. The clear policy and chunk are manual mode's
    /// alone: empty (JSON null) in the other modes.
    static func values(_ m: RoundMetrics, events: Int, origin: UInt64) -> [RowExport.Value] {
        let manual = m.mode.entry.manualProtect
        var fields: [RowExport.Value] = [
            .uint(m.index), .seconds(m.startNanos >= origin ? m.startNanos - origin : 0), .text(m.mode.rawValue),
            manual ? .text(m.clearPolicy.rawValue) : .empty, manual ? .text("\(m.clearChunk)") : .empty,
        ]
        fields += m.values.cells.map { .cell($0.value) }
        fields.append(.int(events))
        return fields
    }
}

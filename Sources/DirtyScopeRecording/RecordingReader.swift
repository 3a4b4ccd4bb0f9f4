import DirtyScopeModel
import Foundation

/// A replay file opened for random access by round; needs no /dev/kvm.
///
/// Opening scans the file once: it checks every record's checksum, indexes the rounds and
/// reads the events, and turns damage into `warnings` rather than errors: a truncated file
/// replays up to its last whole record; a corrupt record is named by its offset and skipped
/// to the next intact record, and delta rounds that depended on it up to the next keyframe.
/// Only an unreadable header (wrong magic, newer format version, bad checksum) fails, or
/// a file that shrinks during the scan.
///
/// The file is read with `pread(2)`, never mapped: a file that shrinks while open makes
/// the read that misses its bytes throw `RecordingError.fileChanged`, which `replay` shows,
/// instead of SIGBUS.
///
/// `entry(at:)` decodes forward from the nearest keyframe at or before the round, and
/// keeps the last round decoded, so playing rounds in order decodes each once.
/// Not thread-safe.
public final class RecordingReader: RecordedSession {
    public let path: String
    public let info: SessionInfo
    /// The file's format version.
    public let formatVersion: Int
    /// Size of the file when opened, in bytes.
    public var fileSize: Int { file.size }
    /// True when the file ends with the end record that `RecordingWriter.finish` writes.
    public var isFinished: Bool { index.finished }
    public private(set) var warnings: [String]

    private let file: RecordingFile
    let index: RecordingIndex
    private let layout: SlotLayout
    private let bitmaps: BitmapSectionDecoder
    private var cache: (position: Int, round: Round)?

    /// Opens and scans `path`.
    /// - Throws: `RecordingError.cannotOpen` / `.ioFailed` (errno), `.notARegularFile`,
    ///   `.notARecording`, `.newerVersion`, `.badHeader`, or `.fileChanged` when the file
    ///   shrinks during the scan.
    public convenience init(path: String) throws {
        try self.init(file: RecordingFile(path: path), path: path)
    }

    /// Reads a recording held in memory; `name` stands for the path in messages.
    public convenience init(contents: [UInt8], name: String) throws {
        try self.init(file: RecordingFile(copying: contents, name: name), path: name)
    }

    /// Scans `file`, opened by the caller (tests watch its reads).
    init(file: RecordingFile, path: String) throws {
        self.file = file
        self.path = path
        let jsonLength: Int
        (formatVersion, info, layout, jsonLength) = try Self.header(file, path: path)
        index = try RecordingIndex(file: file, start: Format.fileHeaderSize + jsonLength, layout: layout)
        // A shrink that cut only bytes the scan held already.
        try file.checkSize()
        // The scan ends at the end of the file; playback starts at its beginning.
        file.forgetBlocks()
        warnings = index.warnings
        bitmaps = BitmapSectionDecoder(layout: layout)
    }

    /// Whole, decodable rounds.
    public var roundCount: Int { index.rounds.count }

    /// Every event in the file, in order.
    public var events: [TimedEvent] { index.events }

    /// Events after the last round.
    public var trailingEvents: [TimedEvent] {
        let start = index.rounds.last?.events.upperBound ?? 0
        return Array(index.events[start...])
    }

    /// Every event recorded before round `i` (0-based); all events but the trailing ones
    /// for `i >= roundCount`.
    public func events(before i: Int) -> [TimedEvent] {
        guard !index.rounds.isEmpty, i > 0 else { return [] }
        let end = i < index.rounds.count ? index.rounds[i].events.lowerBound : index.rounds[index.rounds.count - 1].events.upperBound
        return Array(index.events[..<end])
    }

    /// How many events `events(before: i)` holds.
    public func eventCount(before i: Int) -> Int {
        guard !index.rounds.isEmpty, i > 0 else { return 0 }
        return i < index.rounds.count ? index.rounds[i].events.lowerBound : index.rounds[index.rounds.count - 1].events.upperBound
    }

    /// Round `i` (0-based) with the events recorded after round `i - 1` and before it.
    /// - Throws: `RecordingError.noSuchRound`, or `.corruptRecord` if its bitmaps (or those
    ///   of a round it decodes from) fail to decode despite an intact checksum.
    public func entry(at i: Int) throws -> (events: [TimedEvent], round: Round) {
        guard i >= 0, i < index.rounds.count else {
            throw RecordingError.noSuchRound(path: path, index: i, count: index.rounds.count)
        }
        try file.checkSize()
        return (Array(index.events[index.rounds[i].events]), try round(at: i))
    }

    /// The events recorded after round `i - 1` and before round `i` (0-based), without
    /// decoding any round; empty past the end.
    public func events(at i: Int) -> [TimedEvent] {
        guard i >= 0, i < index.rounds.count else { return [] }
        return Array(index.events[index.rounds[i].events])
    }

    /// Round `i`'s metrics (counts, latencies, times) without decoding its bitmaps.
    public func metrics(at i: Int) throws -> RoundMetrics {
        guard i >= 0, i < index.rounds.count else {
            throw RecordingError.noSuchRound(path: path, index: i, count: index.rounds.count)
        }
        try file.checkSize()
        var examined = 0
        do {
            return try RecordingIndex.metrics(of: index.rounds[i].payload, in: file, layout: layout, examined: &examined).metrics
        } catch let violation as FormatViolation {
            throw RecordingError.corruptRecord(path: path, offset: index.rounds[i].offset, reason: violation.reason)
        }
    }

    /// Totals over rounds `0...i` from a checkpoint every 64 rounds and the metrics after
    /// it; no bitmap is decoded. `i` below 0 gives zero totals; past the end, all rounds.
    public func totals(through i: Int) -> MetricValues {
        guard i >= 0, !index.rounds.isEmpty else { return MetricValues() }
        let last = min(i, index.rounds.count - 1)
        let checkpoint = last / Format.totalsCheckpointInterval
        var totals = index.totalsBefore[checkpoint]
        for j in (checkpoint * Format.totalsCheckpointInterval)...last {
            do {
                totals.add(try metrics(at: j).values)
            } catch {
                // The scan decoded these metrics already: only a file changed while open fails here.
                let warning = "\(error); the rounds from \(j) on are left out of the totals"
                if !warnings.contains(warning) { warnings.append(warning) }
                break
            }
        }
        return totals
    }

    private func round(at i: Int) throws -> Round {
        if let cache, cache.position == i { return cache.round }
        let keyframe = index.rounds[i].keyframePosition
        var start = keyframe
        var previous: Round?
        if let cache, cache.position >= keyframe, cache.position < i {
            start = cache.position + 1
            previous = cache.round
        }
        for j in start...i {
            previous = try decodeRound(j, previous: previous)
        }
        // `start...i` is never empty, so `previous` holds round i.
        let round = previous!
        cache = (i, round)
        return round
    }

    private func decodeRound(_ j: Int, previous: Round?) throws -> Round {
        let entry = index.rounds[j]
        do {
            return try file.withBytes(entry.payload) { bytes in
                var r = ByteReader(bytes)
                let metrics = try RoundCodec.decode(&r, layout).metrics
                let decoded = try bitmaps.decode(&r, metrics: metrics, keyframe: entry.keyframe, previous: previous)
                return Round(metrics: metrics, bitmaps: decoded)
            }
        } catch let violation as FormatViolation {
            throw RecordingError.corruptRecord(path: path, offset: entry.offset, reason: violation.reason)
        }
    }

    /// Checks the magic, version and header checksum and decodes the session description;
    /// also returns the description's length.
    private static func header(_ file: RecordingFile, path: String) throws -> (Int, SessionInfo, SlotLayout, Int) {
        let size = file.size
        let fixed = try file.withBytes(0..<min(size, Format.fileHeaderSize)) { Array($0) }
        let magicBytes = min(size, Format.magic.count)
        guard fixed.prefix(magicBytes).elementsEqual(Format.magic.prefix(magicBytes)) else {
            throw RecordingError.notARecording(path: path)
        }
        guard size >= Format.fileHeaderSize else {
            throw RecordingError.badHeader(path: path, reason: "the file is \(size) bytes, shorter than a header (truncated?)")
        }
        do {
            let (version, length, checksum) = try fixed.withUnsafeBytes { bytes in
                var r = ByteReader(bytes, offset: Format.magic.count)
                let version = Int(try r.u16())
                _ = try r.u16()  // flags, none defined in version 1
                return (version, Int(try r.u32()), try r.u32())
            }
            guard version >= 1 else { throw RecordingError.badHeader(path: path, reason: "format version 0") }
            guard version <= Format.version else { throw RecordingError.newerVersion(path: path, version: version) }
            guard length <= Format.maxHeaderJSON else {
                throw RecordingError.badHeader(path: path, reason: "session description length \(length) exceeds \(Format.maxHeaderJSON)")
            }
            guard length <= size - Format.fileHeaderSize else {
                throw RecordingError.badHeader(path: path, reason: "a \(length)-byte session description does not fit in the file (truncated?)")
            }
            let json = try file.withBytes(Format.fileHeaderSize..<(Format.fileHeaderSize + length)) { Data($0) }
            guard json.withUnsafeBytes({ CRC32.of($0) }) == checksum else {
                throw RecordingError.badHeader(path: path, reason: "header checksum mismatch")
            }
            let info: SessionInfo
            do {
                info = try JSONDecoder().decode(SessionInfo.self, from: json)
            } catch {
                throw RecordingError.badHeader(path: path, reason: "session description: \(error)")
            }
            return (version, info, try SlotLayout(info), length)
        } catch let violation as FormatViolation {
            throw RecordingError.badHeader(path: path, reason: violation.reason)
        }
    }
}

import DirtyScopeModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes a session to a replay file: the header at once, then one record per
/// `SessionRecord`. Records are buffered and reach the file with `write(2)` whenever the
/// oldest buffered one is half a second old (checked on every append and by `flushIfDue`),
/// when 256 KiB are pending, and right after every event; `finish` adds the end record and
/// `fdatasync`s. A `kill -9` thus loses about the last second at most.
///
/// Not thread-safe: the session's harvest thread owns it.
public final class RecordingWriter {
    public let path: String
    public let info: SessionInfo
    /// Bytes of the recording so far, header included (the last second's may still be buffered).
    public private(set) var bytesWritten: UInt64 = 0
    public private(set) var roundCount = 0
    public private(set) var eventCount = 0

    private var fd: Int32
    private let layout: SlotLayout
    private let bitmaps: BitmapSectionEncoder
    private let keyframeInterval: Int
    private var deltasSinceKeyframe = 0
    private var buffer = ByteWriter()
    private var payload = ByteWriter()
    /// Monotonic time at which the oldest buffered byte was appended.
    private var bufferedSince: UInt64?
    private let json = JSONEncoder()
    private var finished = false
    /// The first failed `write(2)` (a full disk, a file size limit): later calls throw it
    /// again instead of buffering without end. The file keeps every record written before
    /// it (the last one may be torn, which a reader reports and skips).
    public private(set) var failure: RecordingError?

    /// Creates (or truncates) `path` and writes the header describing `info`.
    ///
    /// - Parameter keyframeInterval: most rounds from one keyframe to the next (default 64);
    ///   a seek decodes at most this many rounds.
    /// - Throws: `RecordingError.cannotOpen` or `.ioFailed` naming the path and errno, or
    ///   `.badHeader` when `info`'s slot layout is impossible.
    public init(path: String, info: SessionInfo, keyframeInterval: Int = 64) throws {
        precondition(keyframeInterval >= 1, "keyframe interval must be at least 1")
        self.path = path
        self.info = info
        self.keyframeInterval = keyframeInterval
        do {
            layout = try SlotLayout(info)
        } catch let violation {
            throw RecordingError.badHeader(path: path, reason: violation.reason)
        }
        bitmaps = BitmapSectionEncoder(slotCount: layout.count)
        json.outputFormatting = [.sortedKeys]
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let e = errno
            finished = true  // deinit has nothing to flush or close
            throw RecordingError.cannotOpen(path: path, errno: e)
        }

        let headerJSON: [UInt8]
        do {
            let pretty = JSONEncoder()
            pretty.outputFormatting = [.sortedKeys, .prettyPrinted]
            headerJSON = Array(try pretty.encode(info))
        } catch {
            finished = true
            close(fd)
            throw RecordingError.badHeader(path: path, reason: "cannot encode the session: \(error)")
        }
        buffer.fileHeader(json: headerJSON)
        bytesWritten = UInt64(buffer.count)
        do {
            try flush()
        } catch {
            finished = true
            close(fd)
            throw error
        }
    }

    deinit {
        guard !finished else { return }
        try? flush()
        close(fd)
    }

    /// Appends a round or an event. Events are written to the file at once.
    /// - Throws: `RecordingError.invalidRound` for a round that does not fit the header's
    ///   slots (nothing is written), `.ioFailed` when `write(2)` fails, `.finished` after `finish`.
    public func append(_ record: SessionRecord) throws {
        if let failure { throw failure }
        guard !finished else { throw RecordingError.finished(path: path) }
        switch record {
        case .round(let round):
            try appendRound(round)
            try flushIfDue()
        case .event(let event):
            let body: [UInt8]
            do {
                body = Array(try json.encode(event))
            } catch {
                throw RecordingError.invalidRound(path: path, reason: "cannot encode event \(event.event): \(error)")
            }
            appendRecord(.event, body)
            eventCount += 1
            try flush()
        }
    }

    /// Writes the buffered records if the oldest is due; call it while idle, at least every second.
    public func flushIfDue() throws {
        guard let since = bufferedSince else { return }
        if buffer.count >= Format.flushBytes || monotonicNanos() &- since >= Format.flushNanos {
            try flush()
        }
    }

    /// Writes every buffered record now (`write(2)`, no sync).
    public func flush() throws {
        if let failure { throw failure }
        guard !buffer.bytes.isEmpty else { return }
        var written = 0
        defer {
            if written == buffer.count {
                buffer.removeAll()
                bufferedSince = nil
            } else {
                buffer.removeFirst(written)
            }
        }
        while written < buffer.count {
            // Safe: the pointer and count describe the unwritten tail of the buffer,
            // which is not mutated while write(2) reads it.
            let n = buffer.bytes.withUnsafeBytes { bytes in
                write(fd, bytes.baseAddress! + written, bytes.count - written)
            }
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                let error = RecordingError.ioFailed(path: path, call: "write", errno: e)
                failure = error
                written = buffer.count   // dropped: nothing more reaches this file
                throw error
            }
            written += n
        }
    }

    /// Appends the end record, writes everything, `fdatasync`s and closes the file.
    /// Calling it again does nothing.
    public func finish() throws {
        guard !finished else { return }
        finished = true
        defer { close(fd) }
        if let failure { throw failure }
        payload.removeAll()
        payload.varint(UInt64(roundCount))
        payload.varint(UInt64(eventCount))
        appendRecord(.end, payload.bytes)
        try flush()
        if fdatasync(fd) != 0 { throw RecordingError.ioFailed(path: path, call: "fdatasync", errno: errno) }
    }

    private func appendRound(_ round: Round) throws {
        var section = ByteWriter()
        let forceKeyframe = roundCount == 0 || deltasSinceKeyframe + 1 >= keyframeInterval
        let keyframe: Bool
        do {
            var seen = [Bool](repeating: false, count: layout.count)
            for (s, b) in zip(round.slots, round.bitmaps) {
                guard s.slot >= 0, s.slot < layout.count, !seen[s.slot] else {
                    throw FormatViolation("slot \(s.slot) is not in the header's \(layout.count) slots, or appears twice")
                }
                seen[s.slot] = true
                guard b.reported.pageCount == layout.pages[s.slot], b.falsePositives.pageCount == layout.pages[s.slot] else {
                    throw FormatViolation("slot \(s.slot) bitmaps cover \(b.reported.pageCount) and \(b.falsePositives.pageCount) pages, the header says \(layout.pages[s.slot])")
                }
            }
            let encoded = bitmaps.encode(round, forceKeyframe: forceKeyframe, into: &section)
            keyframe = encoded.keyframe
            // The file's counts are those of the bitmaps it stores.
            var metrics = round.metrics
            for (i, c) in encoded.counts.enumerated() {
                metrics.slots[i][.reportedPages] = c.reported
                metrics.slots[i][.falsePositivePages] = c.falsePositives
            }
            try RoundCodec.check(metrics, layout)
            payload.removeAll()
            RoundCodec.encode(metrics, sequence: UInt64(roundCount), into: &payload)
            payload.append(contentsOf: section.bytes)
            guard payload.count <= Int(UInt32.max) else {
                throw FormatViolation("it encodes to \(payload.count) bytes, over 4 GiB")
            }
        } catch let violation as FormatViolation {
            throw RecordingError.invalidRound(path: path, reason: "round \(round.index): \(violation.reason)")
        }
        bitmaps.commit(round)
        deltasSinceKeyframe = keyframe ? 0 : deltasSinceKeyframe + 1
        appendRecord(keyframe ? .keyframe : .delta, payload.bytes)
        roundCount += 1
    }

    /// Frames `body` as a record (sync, CRC32, type, varint length) at the end of the buffer.
    private func appendRecord(_ type: RecordType, _ body: [UInt8]) {
        if bufferedSince == nil { bufferedSince = monotonicNanos() }
        let start = buffer.count
        buffer.append(contentsOf: Format.sync)
        buffer.u32(0)
        buffer.u8(type.rawValue)
        buffer.varint(UInt64(body.count))
        buffer.append(contentsOf: body)
        let crc = buffer.bytes.withUnsafeBytes { CRC32.of(UnsafeRawBufferPointer(rebasing: $0[(start + Format.checksummedFrom)...])) }
        buffer.patchU32(at: start + Format.sync.count, crc)
        bytesWritten += UInt64(buffer.count - start)
    }
}

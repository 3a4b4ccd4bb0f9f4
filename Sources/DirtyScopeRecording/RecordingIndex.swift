import DirtyScopeModel
import Foundation

/// What the reader knows after one scan of the file: where each decodable round lies,
/// which keyframe it decodes from, the events between rounds, cumulative totals every 64
/// rounds, and a warning for everything it had to skip.
struct RecordingIndex {
    struct Entry {
        /// Offset of the record (its sync marker) in the file.
        let offset: Int
        /// The record's payload bytes.
        let payload: Range<Int>
        let keyframe: Bool
        /// Position (in `rounds`) of the keyframe this round decodes from (itself for a keyframe).
        let keyframePosition: Int
        /// The events recorded after the previous round and before this one.
        let events: Range<Int>
    }

    var rounds: [Entry] = []
    var events: [TimedEvent] = []
    /// `totalsBefore[k]` sums rounds `0 ..< k * Format.totalsCheckpointInterval`.
    var totalsBefore: [MetricValues] = []
    private(set) var warnings: [String] = []
    /// Warnings past `Format.maxWarnings`, counted rather than kept.
    private var warningsLeftOut = 0
    /// True when the file ends with the writer's end record.
    var finished = false

    /// Keeps a warning, or counts it once `Format.maxWarnings` are kept: a hostile file can
    /// hold a damaged record every few bytes.
    mutating func warn(_ warning: String) {
        if warnings.count < Format.maxWarnings {
            warnings.append(warning)
        } else {
            warningsLeftOut += 1
        }
    }

    /// Bytes the scan looked at: checksummed, searched for a sync marker, or decoded.
    /// Linear in the file however its damage is laid out (the tests check the ratio).
    private(set) var bytesExamined = 0

    /// Scans `file` from `start` (just past the header).
    /// - Throws: `RecordingError.fileChanged` when the file shrinks during the scan,
    ///   `.ioFailed` when a read fails.
    init(file: RecordingFile, start: Int, layout: SlotLayout) throws {
        var scanner = Scanner(file: file, layout: layout)
        try scanner.run(from: start, into: &self)
        bytesExamined = scanner.examined + scanner.crc.bytesExamined
        if warningsLeftOut > 0 { warnings.append("... and \(warningsLeftOut) more warnings") }
    }
}

/// One pass over the records: checks each record's framing and checksum, decodes round
/// metrics and events, resynchronises on the next sync marker after damage.
private struct Scanner {
    let file: RecordingFile
    let size: Int
    let layout: SlotLayout
    /// Largest payload a round record can have under this header.
    let maxRoundPayload: Int
    let decoder = JSONDecoder()
    let crc: RangeCRC
    /// Bytes looked at outside the checksums: record headers, bytes searched for a sync
    /// marker, payloads decoded.
    var examined = 0

    var totals = MetricValues()
    var lastSequence: UInt64?
    /// Sequence of the last delta skipped for want of its base (rounds lost, not missing).
    var lastSkippedSequence: UInt64?
    var firstEventOfNextRound = 0
    /// Delta rounds skipped since the last decodable round: count and first offset.
    var orphans: (count: Int, first: Int)?
    var endOffset: Int?
    /// Rounds and events the end record says were written.
    var endCounts: (rounds: UInt64, events: UInt64)?
    var warnedAfterEnd = false

    init(file: RecordingFile, layout: SlotLayout) {
        self.file = file
        size = file.size
        self.layout = layout
        crc = RangeCRC(file)
        let bitmapBound = (0..<layout.count).reduce(0) { $0 + 2 * BitmapCodec.maxEncodedSize(words: layout.words($1)) }
        maxRoundPayload = min(Int(UInt32.max), (1 << 20) + bitmapBound)
    }

    enum Framing {
        case record(type: UInt8, payload: Range<Int>)
        /// The record claims more bytes than the file has left.
        case incomplete(String)
        case damaged(String)
    }

    mutating func run(from start: Int, into index: inout RecordingIndex) throws {
        var p = start
        while p < size {
            // Every range checked from here on starts at p or later.
            crc.forget(below: p)
            switch try framing(at: p) {
            case .record(let type, let payload):
                try take(type: type, offset: p, payload: payload, into: &index)
                p = payload.upperBound
            case .incomplete(let reason):
                guard let q = try resynchronise(after: p) else {
                    index.warn("truncated: the last record, at offset \(p), is incomplete (\(reason)); replaying the whole records before it")
                    p = size
                    continue
                }
                index.warn("corrupt record at offset \(p) (\(reason)); skipped \(q - p) bytes to the next record at offset \(q)")
                p = q
            case .damaged(let reason):
                guard let q = try resynchronise(after: p) else {
                    index.warn("corrupt data from offset \(p) to the end (\(size - p) bytes: \(reason)); replaying the records before it")
                    p = size
                    continue
                }
                index.warn("corrupt record at offset \(p) (\(reason)); skipped \(q - p) bytes to the next record at offset \(q)")
                p = q
            }
        }
        reportOrphans(resumedAt: nil, into: &index)
        if endOffset == nil {
            index.warn("no end record: the recording was not finished (the writer stopped or is still running); \(index.rounds.count) rounds replay")
        }
        if let (rounds, events) = endCounts, rounds != UInt64(index.rounds.count) || events != UInt64(index.events.count) {
            index.warn("the end record counts \(rounds) rounds and \(events) events; \(index.rounds.count) rounds and \(index.events.count) events replay")
        }
        index.finished = endOffset != nil
    }

    /// A record's header as read: what `framing` checks against the limits and the file.
    private enum Head {
        case noSync
        case endsInHeader
        case badLength(String)
        case head(type: UInt8, length: Int, payloadStart: Int, checksum: UInt32)
    }

    /// Checks the record at `p`: sync marker, length within the file and the header's
    /// limits, checksum.
    mutating func framing(at p: Int) throws -> Framing {
        let end = min(size, p + Format.maxRecordHeaderSize)
        examined += end - p
        let head = try file.withBytes(p..<end) { bytes -> Head in
            for i in 0..<min(bytes.count, Format.sync.count) where bytes[i] != Format.sync[i] { return .noSync }
            guard bytes.count > Format.checksummedFrom else { return .endsInHeader }
            var r = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[(Format.checksummedFrom + 1)...]))
            do throws(FormatViolation) {
                let length = try r.count(upTo: Int(UInt32.max), "length")
                return .head(type: bytes[Format.checksummedFrom], length: length,
                             payloadStart: p + Format.checksummedFrom + 1 + r.offset,
                             checksum: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: Format.sync.count, as: UInt32.self)))
            } catch {
                return r.isAtEnd && p + Format.maxRecordHeaderSize > size ? .endsInHeader : .badLength(error.reason)
            }
        }
        switch head {
        case .noSync: return .damaged("no sync marker")
        case .endsInHeader: return .incomplete("ends inside its header")
        case .badLength(let reason): return .damaged("bad length (\(reason))")
        case .head(let type, let length, let start, let checksum):
            let limit = switch RecordType(rawValue: type) {
            case .event: Format.maxEventPayload
            case .end: 64
            default: maxRoundPayload
            }
            guard length <= limit else { return .damaged("length \(length) exceeds the largest possible record, \(limit)") }
            guard length <= size - start else {
                return .incomplete("\(length) bytes of payload, \(size - start) in the file")
            }
            guard checksum == (try crc.of((p + Format.checksummedFrom)..<(start + length))) else {
                return .damaged("checksum mismatch")
            }
            return .record(type: type, payload: start..<(start + length))
        }
    }

    /// The offset of the next whole, intact record after `p`, if any.
    mutating func resynchronise(after p: Int) throws -> Int? {
        var q = p + 1
        while q + Format.sync.count <= size {
            // Look for the marker's first byte up to the end of q's block (one read).
            let end = min(size, (q / RecordingFile.blockSize + 1) * RecordingFile.blockSize)
            let hit = try file.withBytes(q..<end) { bytes -> Int? in
                // Safe: memchr reads the `bytes.count` bytes of the buffer lent.
                memchr(bytes.baseAddress!, Int32(Format.sync[0]), bytes.count).map { bytes.baseAddress!.distance(to: UnsafeRawPointer($0)) }
            }
            examined += hit.map { $0 + 1 } ?? end - q
            guard let hit else {
                q = end
                continue
            }
            q += hit
            crc.forget(below: q)
            if case .record = try framing(at: q) { return q }
            q += 1
        }
        return nil
    }

    mutating func take(type: UInt8, offset: Int, payload: Range<Int>, into index: inout RecordingIndex) throws {
        if let end = endOffset, !warnedAfterEnd {
            index.warn("records follow the end record at offset \(end); reading them too")
            warnedAfterEnd = true
        }
        switch RecordType(rawValue: type) {
        case .keyframe, .delta:
            let keyframe = type == RecordType.keyframe.rawValue
            let sequence: UInt64
            let metrics: RoundMetrics
            do {
                (sequence, metrics) = try RecordingIndex.metrics(of: payload, in: file, layout: layout, examined: &examined)
            } catch let violation as FormatViolation {
                index.warn("round record at offset \(offset) is invalid (\(violation.reason)); skipped")
                return
            }
            if let last = lastSequence, sequence <= last {
                let what = sequence == last ? "repeats round sequence \(sequence)" : "goes back to round sequence \(sequence) after \(last)"
                index.warn("round record at offset \(offset) \(what) (a duplicated or reordered record); skipped")
                return
            }
            guard keyframe || (lastSequence.map { $0 &+ 1 == sequence } ?? false) else {
                orphans = ((orphans?.count ?? 0) + 1, orphans?.first ?? offset)
                lastSkippedSequence = sequence
                return
            }
            let expected = lastSkippedSequence.map { $0 &+ 1 } ?? lastSequence.map { $0 &+ 1 } ?? 0
            if sequence > expected {
                index.warn("\(sequence - expected) rounds missing before the round record at offset \(offset) (round sequence jumps from \(expected) to \(sequence))")
            }
            lastSkippedSequence = nil
            reportOrphans(resumedAt: offset, into: &index)
            let position = index.rounds.count
            if position % Format.totalsCheckpointInterval == 0 { index.totalsBefore.append(totals) }
            totals.add(metrics.values)
            index.rounds.append(RecordingIndex.Entry(
                offset: offset, payload: payload, keyframe: keyframe,
                keyframePosition: keyframe ? position : index.rounds[position - 1].keyframePosition,
                events: firstEventOfNextRound..<index.events.count))
            firstEventOfNextRound = index.events.count
            lastSequence = sequence
        case .event:
            examined += payload.count
            do {
                let event = try decoder.decode(TimedEvent.self, from: file.withBytes(payload) { Data($0) })
                try event.event.checkLimits()
                index.events.append(event)
            } catch let error as ModelError {
                index.warn("event at offset \(offset) is impossible (\(error)); skipped")
            } catch let error as RecordingError {
                throw error
            } catch {
                index.warn("event at offset \(offset) could not be read (\(error)); skipped")
            }
        case .end:
            endOffset = offset
            examined += payload.count
            do {
                endCounts = try file.withBytes(payload) { bytes in
                    var r = ByteReader(bytes)
                    return (try r.varint(), try r.varint())
                }
            } catch let violation as FormatViolation {
                index.warn("end record at offset \(offset) is invalid (\(violation.reason))")
            }
        case nil:
            index.warn("record of unknown type \(type) at offset \(offset) skipped (written by a newer dirtyscope?)")
        }
    }

    mutating func reportOrphans(resumedAt offset: Int?, into index: inout RecordingIndex) {
        guard let (count, first) = orphans else { return }
        orphans = nil
        let resumed = offset.map { "replay resumes at the keyframe at offset \($0)" } ?? "no keyframe follows"
        index.warn("\(count) delta rounds from offset \(first) skipped: the round they build on was lost; \(resumed)")
    }
}

extension RecordingIndex {
    /// Decodes a round's sequence and metrics, which open its payload, reading only the
    /// first `Format.metricsReadAhead` bytes unless they do not hold them all.
    static func metrics(of payload: Range<Int>, in file: RecordingFile, layout: SlotLayout,
                        examined: inout Int) throws -> (sequence: UInt64, metrics: RoundMetrics) {
        let head = payload.lowerBound..<min(payload.upperBound, payload.lowerBound + Format.metricsReadAhead)
        do {
            examined += head.count
            return try file.withBytes(head) { bytes in
                var r = ByteReader(bytes)
                return try RoundCodec.decode(&r, layout)
            }
        } catch is FormatViolation where head != payload {
            examined += payload.count
            return try file.withBytes(payload) { bytes in
                var r = ByteReader(bytes)
                return try RoundCodec.decode(&r, layout)
            }
        }
    }
}

/// CRC-32 of any range of the file in bounded time, over a scan that moves forward.
///
/// A long range that starts where no checksum has reached yet (the next record of an
/// intact file) is read once, whole. Any other keeps the CRC of every prefix from a base
/// that ends on a `step` boundary, filled in forward as ranges reach further, and takes
/// one prefix off another with zlib's `crc32_combine`: CRC(a..<b) is CRC(base..<b) xor
/// CRC(base..<a) shifted over b - a zero bytes. The ranges read whole never overlap and
/// the prefixes are filled once, so in all each byte is checksummed about twice, and a
/// range costs at most 2 `step`s more and one combine (logarithmic in its length): trying
/// every sync marker after damage stays linear in the file.
///
/// Checkpoints behind the scan are dropped (`forget`), so their memory is bounded by the
/// longest record the header allows (4 bytes per `step`), not by the file.
final class RangeCRC {
    static let step = 128
    private let file: RecordingFile
    /// `checkpoints[k]` is the CRC of the file's bytes `base ..< base + k * step`.
    private var checkpoints: [UInt32] = [0]
    private var base = 0
    /// The furthest any long range was checksummed (read whole, or prefixes filled).
    private var highWater = 0
    /// Bytes run through CRC-32 so far.
    private(set) var bytesExamined = 0

    init(_ file: RecordingFile) {
        self.file = file
    }

    /// The CRC-32 of `range`, which must start at or after the last `forget`.
    func of(_ range: Range<Int>) throws -> UInt32 {
        guard range.count > 2 * Self.step else { return try crc(range, continuing: 0) }
        guard range.lowerBound < highWater else {
            highWater = range.upperBound
            return try crc(range, continuing: 0)
        }
        return try prefix(range.upperBound) ^ CRC32.combine(try prefix(range.lowerBound), 0, range.count)
    }

    /// Drops the checkpoints before `offset`: no range asked for later starts there.
    func forget(below offset: Int) {
        guard base + (checkpoints.count - 1) * Self.step > offset else {
            // Nothing filled reaches past `offset`: start afresh there.
            base = offset
            checkpoints.removeAll(keepingCapacity: true)
            checkpoints.append(0)
            return
        }
        let drop = (offset - base) / Self.step
        // Half the array at a time, so dropping stays linear in all.
        guard drop > 0, drop >= checkpoints.count / 2 else { return }
        checkpoints.removeFirst(drop)
        base += drop * Self.step
    }

    /// CRC of the file's bytes `base ..< end`.
    private func prefix(_ end: Int) throws -> UInt32 {
        precondition(end >= base, "RangeCRC asked for a prefix it forgot")
        let k = (end - base) / Self.step
        while checkpoints.count <= k {
            // Fill forward up to the checkpoint wanted or the end of a cache block, in one read.
            let from = base + (checkpoints.count - 1) * Self.step
            let inBlock = ((from / RecordingFile.blockSize + 1) * RecordingFile.blockSize - from) / Self.step
            let to = from + max(1, min(k + 1 - checkpoints.count, inBlock)) * Self.step
            try file.withBytes(from..<to) { bytes in
                var c = checkpoints[checkpoints.count - 1]
                for o in stride(from: 0, to: bytes.count, by: Self.step) {
                    c = CRC32.of(UnsafeRawBufferPointer(rebasing: bytes[o..<(o + Self.step)]), continuing: c)
                    checkpoints.append(c)
                }
            }
            bytesExamined += to - from
            highWater = max(highWater, to)
        }
        return try crc((base + k * Self.step)..<end, continuing: checkpoints[k])
    }

    private func crc(_ range: Range<Int>, continuing c: UInt32) throws -> UInt32 {
        bytesExamined += range.count
        return try file.withBytes(range) { CRC32.of($0, continuing: c) }
    }
}

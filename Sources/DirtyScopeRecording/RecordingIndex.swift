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

    /// Scans `bytes` from `start` (just past the header).
    init(bytes: UnsafeRawBufferPointer, start: Int, layout: SlotLayout) {
        var scanner = Scanner(bytes: bytes, layout: layout)
        scanner.run(from: start, into: &self)
        if warningsLeftOut > 0 { warnings.append("... and \(warningsLeftOut) more warnings") }
    }
}

/// One pass over the records: checks each record's framing and checksum, decodes round
/// metrics and events, resynchronises on the next sync marker after damage.
private struct Scanner {
    let bytes: UnsafeRawBufferPointer
    let layout: SlotLayout
    /// Largest payload a round record can have under this header.
    let maxRoundPayload: Int
    let decoder = JSONDecoder()
    let crc: RangeCRC

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

    init(bytes: UnsafeRawBufferPointer, layout: SlotLayout) {
        self.bytes = bytes
        self.layout = layout
        crc = RangeCRC(bytes)
        let bitmapBound = (0..<layout.count).reduce(0) { $0 + 2 * BitmapCodec.maxEncodedSize(words: layout.words($1)) }
        maxRoundPayload = min(Int(UInt32.max), (1 << 20) + bitmapBound)
    }

    enum Framing {
        case record(type: UInt8, payload: Range<Int>)
        /// The record claims more bytes than the file has left.
        case incomplete(String)
        case damaged(String)
    }

    mutating func run(from start: Int, into index: inout RecordingIndex) {
        var p = start
        while p < bytes.count {
            switch framing(at: p) {
            case .record(let type, let payload):
                take(type: type, offset: p, payload: payload, into: &index)
                p = payload.upperBound
            case .incomplete(let reason):
                guard let q = resynchronise(after: p) else {
                    index.warn("truncated: the last record, at offset \(p), is incomplete (\(reason)); replaying the whole records before it")
                    p = bytes.count
                    continue
                }
                index.warn("corrupt record at offset \(p) (\(reason)); skipped \(q - p) bytes to the next record at offset \(q)")
                p = q
            case .damaged(let reason):
                guard let q = resynchronise(after: p) else {
                    index.warn("corrupt data from offset \(p) to the end (\(bytes.count - p) bytes: \(reason)); replaying the records before it")
                    p = bytes.count
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

    /// Checks the record at `p`: sync marker, length within the file and the header's
    /// limits, checksum.
    func framing(at p: Int) -> Framing {
        let left = bytes.count - p
        for i in 0..<min(left, Format.sync.count) where bytes[p + i] != Format.sync[i] {
            return .damaged("no sync marker")
        }
        guard left > Format.checksummedFrom else { return .incomplete("ends inside its header") }
        let type = bytes[p + Format.checksummedFrom]
        var r = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[(p + Format.checksummedFrom + 1)..<min(bytes.count, p + Format.maxRecordHeaderSize)]))
        let length: Int
        do {
            length = try r.count(upTo: Int(UInt32.max), "length")
        } catch {
            return r.isAtEnd && p + Format.maxRecordHeaderSize > bytes.count
                ? .incomplete("ends inside its header") : .damaged("bad length (\(error.reason))")
        }
        let limit = switch RecordType(rawValue: type) {
        case .event: Format.maxEventPayload
        case .end: 64
        default: maxRoundPayload
        }
        guard length <= limit else { return .damaged("length \(length) exceeds the largest possible record, \(limit)") }
        let start = p + Format.checksummedFrom + 1 + r.offset
        guard length <= bytes.count - start else {
            return .incomplete("\(length) bytes of payload, \(bytes.count - start) in the file")
        }
        let stored = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: p + Format.sync.count, as: UInt32.self))
        let end = start + length
        guard stored == crc.of((p + Format.checksummedFrom)..<end) else {
            return .damaged("checksum mismatch")
        }
        return .record(type: type, payload: start..<end)
    }

    /// The offset of the next whole, intact record after `p`, if any.
    func resynchronise(after p: Int) -> Int? {
        var q = p + 1
        while q + Format.sync.count <= bytes.count {
            // Safe: `q` and the length passed stay within `bytes`.
            guard let hit = memchr(bytes.baseAddress! + q, Int32(Format.sync[0]), bytes.count - q) else { return nil }
            q = bytes.baseAddress!.distance(to: UnsafeRawPointer(hit))
            if case .record = framing(at: q) { return q }
            q += 1
        }
        return nil
    }

    mutating func take(type: UInt8, offset: Int, payload: Range<Int>, into index: inout RecordingIndex) {
        if let end = endOffset, !warnedAfterEnd {
            index.warn("records follow the end record at offset \(end); reading them too")
            warnedAfterEnd = true
        }
        var r = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[payload]))
        switch RecordType(rawValue: type) {
        case .keyframe, .delta:
            let keyframe = type == RecordType.keyframe.rawValue
            let sequence: UInt64
            let metrics: RoundMetrics
            do {
                (sequence, metrics) = try RoundCodec.decode(&r, layout)
            } catch {
                index.warn("round record at offset \(offset) is invalid (\(error.reason)); skipped")
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
            do {
                let event = try decoder.decode(TimedEvent.self, from: Data(r.rest()))
                try event.event.checkLimits()
                index.events.append(event)
            } catch let error as ModelError {
                index.warn("event at offset \(offset) is impossible (\(error)); skipped")
            } catch {
                index.warn("event at offset \(offset) could not be read (\(error)); skipped")
            }
        case .end:
            endOffset = offset
            do {
                endCounts = (try r.varint(), try r.varint())
            } catch {
                index.warn("end record at offset \(offset) is invalid (\(error.reason))")
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

/// CRC-32 of any range of the file in bounded time. It keeps the CRC of every prefix that
/// ends on a `step` boundary, filled in forward as ranges reach further (one pass over the
/// file in all), and takes a prefix off with zlib's `crc32_combine`: CRC(a..<b) is
/// CRC(0..<b) xor CRC(0..<a) shifted over b - a zero bytes. A range of any length costs at
/// most 2 `step`s of CRC, so trying every sync marker after damage stays linear in the file.
final class RangeCRC {
    static let step = 1024
    private let bytes: UnsafeRawBufferPointer
    /// `checkpoints[k]` is the CRC of `bytes[0 ..< k * step]`.
    private var checkpoints: [UInt32] = [0]

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    func of(_ range: Range<Int>) -> UInt32 {
        guard range.count > 2 * Self.step else { return CRC32.of(UnsafeRawBufferPointer(rebasing: bytes[range])) }
        return prefix(range.upperBound) ^ CRC32.combine(prefix(range.lowerBound), 0, range.count)
    }

    /// CRC of `bytes[0 ..< end]`.
    private func prefix(_ end: Int) -> UInt32 {
        let k = end / Self.step
        while checkpoints.count <= k {
            let i = checkpoints.count - 1
            checkpoints.append(CRC32.of(UnsafeRawBufferPointer(rebasing: bytes[(i * Self.step)..<((i + 1) * Self.step)]),
                                        continuing: checkpoints[i]))
        }
        return CRC32.of(UnsafeRawBufferPointer(rebasing: bytes[(k * Self.step)..<end]), continuing: checkpoints[k])
    }
}

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
    var totalsBefore: [RoundTotals] = []
    var warnings: [String] = []
    /// True when the file ends with the writer's end record.
    var finished = false

    /// Scans `bytes` from `start` (just past the header).
    init(bytes: UnsafeRawBufferPointer, start: Int, layout: SlotLayout) {
        var scanner = Scanner(bytes: bytes, layout: layout)
        scanner.run(from: start, into: &self)
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

    var totals = RoundTotals()
    var lastSequence: UInt64?
    var firstEventOfNextRound = 0
    /// Delta rounds skipped since the last decodable round: count and first offset.
    var orphans: (count: Int, first: Int)?
    var endOffset: Int?
    var warnedAfterEnd = false

    init(bytes: UnsafeRawBufferPointer, layout: SlotLayout) {
        self.bytes = bytes
        self.layout = layout
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
                    index.warnings.append("truncated: the last record, at offset \(p), is incomplete (\(reason)); replaying the whole records before it")
                    p = bytes.count
                    continue
                }
                index.warnings.append("corrupt record at offset \(p) (\(reason)); skipped \(q - p) bytes to the next record at offset \(q)")
                p = q
            case .damaged(let reason):
                guard let q = resynchronise(after: p) else {
                    index.warnings.append("corrupt data from offset \(p) to the end (\(bytes.count - p) bytes: \(reason)); replaying the records before it")
                    p = bytes.count
                    continue
                }
                index.warnings.append("corrupt record at offset \(p) (\(reason)); skipped \(q - p) bytes to the next record at offset \(q)")
                p = q
            }
        }
        reportOrphans(resumedAt: nil, into: &index)
        if endOffset == nil {
            index.warnings.append("no end record: the recording was not finished (the writer stopped or is still running); \(index.rounds.count) rounds replay")
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
        guard stored == CRC32.of(UnsafeRawBufferPointer(rebasing: bytes[(p + Format.checksummedFrom)..<end])) else {
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
            index.warnings.append("records follow the end record at offset \(end); reading them too")
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
                index.warnings.append("round record at offset \(offset) is invalid (\(error.reason)); skipped")
                return
            }
            guard keyframe || (lastSequence.map { $0 &+ 1 == sequence } ?? false) else {
                orphans = ((orphans?.count ?? 0) + 1, orphans?.first ?? offset)
                return
            }
            reportOrphans(resumedAt: offset, into: &index)
            let position = index.rounds.count
            if position % Format.totalsCheckpointInterval == 0 { index.totalsBefore.append(totals) }
            totals.add(metrics)
            index.rounds.append(RecordingIndex.Entry(
                offset: offset, payload: payload, keyframe: keyframe,
                keyframePosition: keyframe ? position : index.rounds[position - 1].keyframePosition,
                events: firstEventOfNextRound..<index.events.count))
            firstEventOfNextRound = index.events.count
            lastSequence = sequence
        case .event:
            do {
                index.events.append(try decoder.decode(TimedEvent.self, from: Data(r.rest())))
            } catch {
                index.warnings.append("event at offset \(offset) could not be read (\(error)); skipped")
            }
        case .end:
            endOffset = offset
        case nil:
            index.warnings.append("record of unknown type \(type) at offset \(offset) skipped (written by a newer dirtyscope?)")
        }
    }

    mutating func reportOrphans(resumedAt offset: Int?, into index: inout RecordingIndex) {
        guard let (count, first) = orphans else { return }
        orphans = nil
        let resumed = offset.map { "replay resumes at the keyframe at offset \($0)" } ?? "no keyframe follows"
        index.warnings.append("\(count) delta rounds from offset \(first) skipped: the round they build on was lost; \(resumed)")
    }
}

import DirtyScopeModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Forges replay files and reads each one the way `inspect`, `export --csv` and `replay`
/// do, in-process (`dirtyscope bench --suite fuzz`; a few thousand in `swift test`).
///
/// Most inputs are *valid on the outside*: the mutator takes a real recording apart into
/// its header and records, rewrites header fields, round fields, bitmap tokens and event
/// values with hostile numbers (negative, huge, at and just past `SessionLimits`),
/// duplicates, drops, reorders and splices records, and puts the file back together with
/// correct checksums and sync markers, so the reader's checks are what stands between the
/// values and an allocation or a loop. The rest get byte-level damage on top.
///
/// A crash ends the process (so a finished run means none); an input that takes longer
/// than `Report.slowNanos` counts as a hang, and the slowest is kept to replay.
public struct RecordingFuzzer {
    public struct Report: Sendable {
        public var inputs = 0
        /// Inputs the reader opened (the rest failed with a `RecordingError`).
        public var opened = 0
        public var roundsDecoded = 0
        /// Inputs that took longer than `slowNanos`.
        public var hangs = 0
        public var slowestNanos: UInt64 = 0
        public var slowestInput: [UInt8] = []
        public var elapsedNanos: UInt64 = 0
        public static let slowNanos: UInt64 = 1_000_000_000

        public func text() -> String {
            let seconds = Double(elapsedNanos) / 1e9
            return "fuzz: \(inputs) inputs in \(String(format: "%.1f", seconds)) s (\(Int(Double(inputs) / max(seconds, 1e-9)))/s), "
                + "\(opened) opened, \(roundsDecoded) rounds decoded, crashes 0, hangs \(hangs) (over 1 s), "
                + "slowest \(String(format: "%.1f", Double(slowestNanos) / 1e6)) ms\n"
        }
    }

    /// A recording taken apart: the header's JSON and the records in file order.
    struct Parts {
        var header: [String: Any]
        /// `header` as JSON.
        var headerJSON: [UInt8]
        var records: [(type: UInt8, payload: [UInt8])]
    }

    private var random: SplitMix64
    private let bases: [Parts]
    /// Hostile headers, each a base's with one to three fields rewritten, encoded once:
    /// JSON encoding would otherwise be most of the cost of a forgery.
    private var headers: [[UInt8]] = []
    private let sink: UnsafeMutablePointer<FILE>

    /// Builds the base recordings (written through `RecordingWriter` into `directory`).
    public init(seed: UInt64, directory: String = NSTemporaryDirectory()) throws {
        random = SplitMix64(seed: seed)
        var bases: [Parts] = []
        for (k, (slots, pages)) in [(2, 1000), (1, 130), (3, 64)].enumerated() {
            let info = SyntheticRounds.sessionInfo(slots: slots, pagesPerSlot: pages)
            var generators = SyntheticShape.allCases.enumerated().map {
                SyntheticRounds(shape: $1, info: info, seed: seed &+ UInt64(k * 8 + $0))
            }
            let path = (directory as NSString).appendingPathComponent("dirtyscope-fuzz-\(getpid())-\(k).dsrec")
            defer { unlink(path) }
            let writer = try RecordingWriter(path: path, info: info, keyframeInterval: 4)
            for i in 0..<12 {
                if i % 3 == 0 {
                    let events: [SessionEvent] = [.paused, .verified(Verification(missedPerSlot: [0, 1], comparedPages: 9)),
                                                  .blocksCleared(BlockClear(slot: 0, blocks: [1, 2], calls: 1, pagesCleared: 3,
                                                                            pagesCopied: 3, clearNanos: 100)),
                                                  .ringFull(vcpu: 1), .guestFault("triple fault")]
                    try writer.append(.event(TimedEvent(nanos: UInt64(i), event: events[i / 3 % events.count])))
                }
                try writer.append(.round(generators[i / 3 % generators.count].nextRound()))
            }
            try writer.finish()
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
            bases.append(try Self.parts(bytes))
        }
        self.bases = bases
        guard let sink = fopen("/dev/null", "w") else { throw RecordingError.cannotOpen(path: "/dev/null", errno: errno) }
        self.sink = sink
        for _ in 0..<256 {
            var header = bases[Int(random.next() % UInt64(bases.count))].header
            for _ in 0...(random.next() % 3) { mutateHeader(&header) }
            headers.append(Array(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])))
        }
    }

    /// Forges and reads `inputs` files; `progress` hears every 10% of them.
    public mutating func run(inputs: Int, progress: (Report) -> Void = { _ in }) -> Report {
        var report = Report()
        let start = monotonicNanos()
        for n in 0..<inputs {
            let input = next()
            let t0 = monotonicNanos()
            report.roundsDecoded += Self.read(input, sink: sink, opened: &report.opened)
            let took = monotonicNanos() - t0
            if took > report.slowestNanos {
                report.slowestNanos = took
                report.slowestInput = input
            }
            if took > Report.slowNanos { report.hangs += 1 }
            report.inputs += 1
            if inputs >= 10, (n + 1) % (inputs / 10) == 0 {
                report.elapsedNanos = monotonicNanos() - start
                progress(report)
            }
        }
        report.elapsedNanos = monotonicNanos() - start
        return report
    }

    /// Reads `bytes` as every command does: open, decode every round (at most 256, in
    /// order and by seeks), totals, the summary as text and JSON, and the CSV. Returns the
    /// rounds decoded. Any error but a `RecordingError` is a defect, and traps here.
    public static func read(_ bytes: [UInt8], sink: UnsafeMutablePointer<FILE>, opened: inout Int) -> Int {
        let reader: RecordingReader
        do {
            reader = try RecordingReader(contents: bytes, name: "fuzz")
        } catch let error as RecordingError {
            _ = error.description
            return 0
        } catch {
            preconditionFailure("the reader threw something other than a RecordingError: \(error)")
        }
        opened += 1
        var decoded = 0
        let count = reader.roundCount
        let positions = Array(0..<min(count, 128)) + (0..<min(count, 128)).map { (count - 1 - $0 * 7 % count) }
        for i in positions {
            if (try? reader.entry(at: i)) != nil { decoded += 1 }
            _ = try? reader.metrics(at: i)
        }
        _ = reader.totals(through: count - 1)
        _ = reader.totals(through: count / 2)
        _ = reader.events(before: count / 2)
        _ = reader.trailingEvents
        let summary = RecordingSummary(reader)
        _ = summary.text()
        _ = summary.json()
        try? CSVExport.write(reader, to: sink)
        return decoded
    }

    /// The next input: a forged file, sometimes with byte-level damage on top.
    mutating func next() -> [UInt8] {
        var parts = bases[Int(random.next() % UInt64(bases.count))]
        let structural = 1 + Int(random.next() % 3)
        for _ in 0..<structural { mutate(&parts) }
        var bytes = Self.assemble(parts, crcs: random.next() % 16 != 0)
        if random.next() % 4 == 0 { damage(&bytes) }
        return bytes
    }

    // MARK: Structure-aware mutations

    /// Values that break careless arithmetic: zero, one, negative, at and past the limits,
    /// powers of two near the top, the extremes.
    private mutating func hostileInt() -> Int {
        let values = [0, 1, -1, 2, 63, 64, 65, 1023, 1024, 1025, 4096, 65536, 1 << 20, (1 << 26) - 1, 1 << 26, (1 << 26) + 1,
                      1 << 32, (1 << 32) + 1, 1 << 40, 1 << 53, 1 << 62, 0x2000_0000_0000_0000, Int.max, Int.max - 1, Int.min, -4096]
        return random.next() % 8 == 0 ? Int(truncatingIfNeeded: random.next()) : values[Int(random.next() % UInt64(values.count))]
    }

    private mutating func hostileUInt() -> UInt64 {
        random.next() % 3 == 0 ? UInt64(bitPattern: Int64(hostileInt())) : [0, 1, 2, 127, 128, UInt64.max, UInt64.max - 1, 1 << 63][Int(random.next() % 8)]
    }

    private mutating func mutate(_ parts: inout Parts) {
        switch random.next() % 16 {
        case 0, 1:
            parts.headerJSON = headers[Int(random.next() % UInt64(headers.count))]
        case 2, 3, 4, 5: mutateRound(&parts)
        case 6: mutateEvent(&parts)
        case 7: // duplicate a record
            guard let i = pick(parts.records) else { return }
            parts.records.insert(parts.records[i], at: Int(random.next() % UInt64(parts.records.count + 1)))
        case 8: // remove one
            guard let i = pick(parts.records) else { return }
            parts.records.remove(at: i)
        case 9: // swap two
            guard let i = pick(parts.records), let j = pick(parts.records) else { return }
            parts.records.swapAt(i, j)
        case 10: // splice records from another recording (another header's layout)
            let other = bases[Int(random.next() % UInt64(bases.count))]
            guard let i = pick(other.records) else { return }
            parts.records.insert(other.records[i], at: Int(random.next() % UInt64(parts.records.count + 1)))
        case 11: // many records of a hostile type or length
            let n = Int(random.next() % 2000)
            let type = UInt8(truncatingIfNeeded: random.next() % 6)
            let payload = [UInt8](repeating: UInt8(truncatingIfNeeded: random.next()), count: Int(random.next() % 64))
            parts.records += Array(repeating: (type, payload), count: n)
        case 12: // an end record with hostile counts
            var w = ByteWriter()
            w.varint(hostileUInt())
            w.varint(hostileUInt())
            parts.records.append((RecordType.end.rawValue, w.bytes))
        case 13: // a record's type changed
            guard let i = pick(parts.records) else { return }
            parts.records[i].type = UInt8(truncatingIfNeeded: random.next() % 6)
        default: // bytes inside a payload changed, the checksum then recomputed
            guard let i = pick(parts.records), !parts.records[i].payload.isEmpty else { return }
            for _ in 0...(random.next() % 4) {
                let p = Int(random.next() % UInt64(parts.records[i].payload.count))
                parts.records[i].payload[p] = UInt8(truncatingIfNeeded: random.next())
            }
        }
    }

    private mutating func pick<T>(_ a: [T]) -> Int? {
        a.isEmpty ? nil : Int(random.next() % UInt64(a.count))
    }

    private mutating func mutateHeader(_ header: inout [String: Any]) {
        switch random.next() % 9 {
        case 0: header["pageSize"] = hostileInt()
        case 1: header["vcpus"] = hostileInt()
        case 2: header["ringEntries"] = hostileInt()
        case 3:
            guard var slots = header["slots"] as? [[String: Any]], !slots.isEmpty else { return }
            let i = Int(random.next() % UInt64(slots.count))
            slots[i]["pages"] = hostileInt()
            if random.next() % 2 == 0 { slots[i]["guestPhysicalAddress"] = hostileUInt() }
            header["slots"] = slots
        case 4:
            guard let slots = header["slots"] as? [[String: Any]], let first = slots.first else { return }
            header["slots"] = Array(repeating: first, count: [0, 31, 32, 33, 1000, 3000][Int(random.next() % 6)])
        case 5: header["clearChunk"] = ["pages": ["_0": hostileInt()]]
        case 6: header["startTime"] = [1e300, -1e300, 0, 1e12, Double(Int.max)][Int(random.next() % 5)]
        case 7: header["guestName"] = String(repeating: "\u{1b}[2J", count: Int(random.next() % 3000))
        default: header["capabilities"] = Dictionary(uniqueKeysWithValues: (0..<Int(random.next() % 400)).map { ("CAP\($0)", hostileInt()) })
        }
    }

    /// Rewrites a round record from scratch with hostile values in its fields.
    private mutating func mutateRound(_ parts: inout Parts) {
        let rounds = parts.records.indices.filter { parts.records[$0].type == 1 || parts.records[$0].type == 2 }
        guard !rounds.isEmpty else { return }
        let i = rounds[Int(random.next() % UInt64(rounds.count))]
        var w = ByteWriter()
        w.varint(random.next() % 2 == 0 ? UInt64(i) : hostileUInt())   // sequence
        let mask = random.next() % 4 == 0 ? hostileUInt() : random.next() & RoundField.all
        w.varint(mask)
        // Mode and chunk; mode code 3 (manual with a clear policy) carries the policy, 0 included.
        w.varint(random.next() % 3 == 0 ? hostileUInt() : (random.next() % 8) << 2 | random.next() % 4)
        if mask & RoundField.all != mask { w.varint(hostileUInt()) }
        for bit in 0..<16 where mask & (UInt64(1) << UInt64(bit)) != 0 {
            switch UInt64(1) << UInt64(bit) {
            case RoundField.bit(.getDirtyLog), RoundField.bit(.clearDirtyLog):
                w.varint(hostileUInt())
                w.varint(hostileUInt())
                w.varint(hostileUInt())
                w.varint(hostileUInt())
                let length = [0, 40, 1024, 1025, Int(random.next() % 64)][Int(random.next() % 5)]
                w.varint(UInt64(length))
                let nonzero = Int(random.next() % 5)
                w.varint(UInt64(nonzero))
                for _ in 0..<nonzero {
                    w.varint(random.next() % 8)
                    w.varint(hostileUInt())
                }
            case RoundField.origins:
                w.varint(hostileUInt())   // never cleared
                let nonzero = random.next() % 4 == 0 ? hostileUInt() : random.next() % 30
                w.varint(nonzero)
                for _ in 0..<min(nonzero, 30) {
                    w.varint(random.next() % 2 == 0 ? random.next() % 4 : hostileUInt())
                    w.varint(hostileUInt())
                }
            case RoundField.verification:
                let n = random.next() % 4 == 0 ? hostileUInt() : random.next() % 4
                w.varint(n)
                for _ in 0..<min(n, 40) { w.zigzag(hostileInt()) }
                w.zigzag(hostileInt())
            default:
                w.varint(hostileUInt())
            }
        }
        let slots = random.next() % 4 == 0 ? hostileUInt() : random.next() % 4
        w.varint(slots)
        for s in 0..<min(slots, 40) {
            let flags = random.next() % 64
            w.varint((random.next() % 5 == 0 ? hostileUInt() : s) << 6 | flags)
            for bit in 0..<5 where flags & (1 << UInt64(bit)) != 0 {
                w.varint(random.next() % 2 == 0 ? hostileUInt() : random.next() % 200)
            }
            if flags & 32 != 0 { for _ in 0..<3 { w.varint(hostileUInt()) } }
        }
        // A bitmap section: stored or deflated, tokens with hostile counts.
        if random.next() % 4 != 0 {
            let deflated = random.next() % 3 == 0
            w.u8(deflated ? 1 : UInt8(truncatingIfNeeded: random.next() % 3 == 0 ? random.next() : 0))
            if deflated { w.varint(hostileUInt()) }
            for _ in 0..<(random.next() % 6) {
                let count = random.next() % 2 == 0 ? hostileUInt() >> 3 : random.next() % 40
                let kind = random.next() % 6
                w.varint(count << 3 | kind)
                for _ in 0..<min(count, 16) { w.u64(random.next()) }
            }
        }
        parts.records[i] = (random.next() % 2 == 0 ? 1 : 2, w.bytes)
    }

    private mutating func mutateEvent(_ parts: inout Parts) {
        let json: String
        switch random.next() % 6 {
        case 0: json = #"{"nanos":\#(hostileUInt()),"event":{"verified":{"_0":{"missedPerSlot":[\#(hostileInt()),\#(hostileInt())],"comparedPages":\#(hostileInt())}}}}"#
        case 1: json = #"{"nanos":0,"event":{"ringFull":{"vcpu":\#(hostileInt())}}}"#
        case 2: json = #"{"nanos":0,"event":{"blocksCleared":{"_0":{"slot":\#(hostileInt()),"blocks":[\#(hostileInt()),\#(hostileInt())],"calls":\#(hostileInt()),"pagesCleared":\#(hostileInt()),"pagesCopied":\#(hostileInt()),"clearNanos":\#(hostileUInt())}}}}"#
        case 3: json = #"{"nanos":0,"event":{"modeChanged":{"_0":"manual","_1":{"pages":{"_0":\#(hostileInt())}}}}}"#
        case 4: json = #"{"nanos":0,"event":{"intervalChanged":{"nanos":\#(hostileUInt())}}}"#
        default: json = #"{"nanos":0,"event":{"note":{"_0":"\#(String(repeating: "\\u001b[31m\\n", count: Int(random.next() % 5000)))"}}}"#
        }
        parts.records.insert((RecordType.event.rawValue, Array(json.utf8)), at: Int(random.next() % UInt64(parts.records.count + 1)))
    }

    // MARK: Byte-level damage

    private mutating func damage(_ b: inout [UInt8]) {
        guard !b.isEmpty else { return }
        let at = Int(random.next() % UInt64(b.count))
        switch random.next() % 5 {
        case 0, 1:
            for _ in 0...(random.next() % 8) { b[(at + Int(random.next() % 64)) % b.count] ^= UInt8(1 + random.next() % 255) }
        case 2:
            b.removeSubrange(at...)
        case 3:
            // Sync markers claiming long payloads: what a resynchronising scan must not chew on.
            var w = ByteWriter()
            for _ in 0..<(random.next() % 3000) {
                w.append(contentsOf: Format.sync)
                w.u32(UInt32(truncatingIfNeeded: random.next()))
                w.u8(UInt8(1 + random.next() % 3))
                w.varint(1 << 20)
            }
            b.insert(contentsOf: w.bytes, at: at)
        default:
            b.removeSubrange(at..<min(b.count, at + 1 + Int(random.next() % 100)))
        }
    }

    // MARK: Taking files apart and putting them together

    static func parts(_ bytes: [UInt8]) throws -> Parts {
        let length = Int(UInt32(bytes[12]) | UInt32(bytes[13]) << 8 | UInt32(bytes[14]) << 16 | UInt32(bytes[15]) << 24)
        let json = Array(bytes[Format.fileHeaderSize..<(Format.fileHeaderSize + length)])
        guard let header = try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
            throw RecordingError.badHeader(path: "fuzz base", reason: "not a JSON object")
        }
        var records: [(UInt8, [UInt8])] = []
        try bytes.withUnsafeBytes { buffer in
            var r = ByteReader(buffer, offset: Format.fileHeaderSize + length)
            while !r.isAtEnd {
                _ = try r.bytes(Format.checksummedFrom)
                let type = try r.u8()
                let n = try r.count(upTo: r.remaining, "length")
                records.append((type, Array(try r.bytes(n))))
            }
        }
        return Parts(header: header, headerJSON: json, records: records)
    }

    /// The file for `parts`, with correct checksums (or, when `crcs` is false, the records' unchecked).
    static func assemble(_ parts: Parts, crcs: Bool = true) -> [UInt8] {
        let json = parts.headerJSON
        var w = ByteWriter()
        w.fileHeader(json: json)
        for (type, payload) in parts.records {
            var body = ByteWriter()
            body.u8(type)
            body.varint(UInt64(payload.count))
            body.append(contentsOf: payload)
            w.append(contentsOf: Format.sync)
            w.u32(crcs ? CRC32.of(body.bytes) : 0)
            w.append(contentsOf: body.bytes)
        }
        return w.bytes
    }
}

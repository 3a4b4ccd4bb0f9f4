import CZlib
import DirtyScopeModel
import Foundation
import Pages
#if canImport(Glibc)
import Glibc
#endif

/// Measures the replay-file layer on synthetic rounds (`dirtyscope bench`): bytes per round
/// against the raw bitmaps, for the chosen encoding and the alternatives; microseconds per
/// append; rounds decoded per second; milliseconds per random seek. Figures, not verdicts.
public enum RecordingBenchmark {
    public struct Options: Sendable {
        public var slots: Int
        public var pagesPerSlot: Int
        /// Rounds written per shape.
        public var rounds: Int
        /// Random seeks timed per shape.
        public var seeks: Int
        /// Where the scratch recordings go (removed afterwards).
        public var directory: String

        /// The defaults describe a 4 GiB guest: 2 slots of 524,288 pages of 4 KiB.
        public init(slots: Int = 2, pagesPerSlot: Int = 524_288, rounds: Int = 1024, seeks: Int = 200,
                    directory: String = FileManager.default.temporaryDirectory.path) {
            self.slots = slots
            self.pagesPerSlot = pagesPerSlot
            self.rounds = rounds
            self.seeks = seeks
            self.directory = directory
        }
    }

    /// Bytes per round of each way to store a round's bitmaps, over the first rounds.
    public struct CodecSizes: Sendable {
        /// zlib alone (level 6) over the raw words.
        public var zlib: Double
        /// Run-length tokens alone.
        public var runLength: Double
        /// Run-length tokens deflated as the writer does (`Z_RLE`), at any size.
        public var runLengthZlib: Double
        /// Tokens of the XOR with the previous round.
        public var deltaRunLength: Double
        public var deltaRunLengthZlib: Double
    }

    public struct ShapeFigures: Sendable {
        public var shape: SyntheticShape
        public var rounds: Int
        /// Both bitmaps of every slot, uncompressed.
        public var rawBytesPerRound: Double
        /// What the file spends per round (records, metrics and bitmaps; header excluded).
        public var fileBytesPerRound: Double
        public var keyframes: Int
        public var codecs: CodecSizes
        public var appendMeanMicros: Double
        public var appendMaxMicros: Double
        public var openMillis: Double
        public var decodeRoundsPerSecond: Double
        public var seekMeanMillis: Double
        public var seekMaxMillis: Double
    }

    public struct Report: Sendable {
        public var options: Options
        public var shapes: [ShapeFigures]

        /// A table for a terminal.
        public func text() -> String {
            let gib = Double(options.slots * options.pagesPerSlot * PageSize.system) / Double(1 << 30)
            var lines = ["replay files: \(options.slots) slots x \(options.pagesPerSlot) pages (\(String(format: "%.1f", gib)) GiB guest), \(options.rounds) rounds per shape"]
            lines.append("shape      raw B/round  file B/round   ratio  keyframes  append us mean/max  open ms  decode rounds/s  seek ms mean/max")
            for s in shapes {
                lines.append(s.shape.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)
                             + String(format: " %12.0f %13.1f %6.2f%% %10d %10.1f/%-8.1f %8.1f %16.0f %8.2f/%.2f",
                                    s.rawBytesPerRound, s.fileBytesPerRound,
                                    100 * s.fileBytesPerRound / max(1, s.rawBytesPerRound), s.keyframes,
                                    s.appendMeanMicros, s.appendMaxMicros, s.openMillis, s.decodeRoundsPerSecond,
                                    s.seekMeanMillis, s.seekMaxMillis))
            }
            lines.append("bitmap bytes per round by encoding (first \(min(options.rounds, codecSampleRounds)) rounds)")
            lines.append("shape            zlib  run-length  run-length+zlib  delta+run-length  delta+run-length+zlib")
            for s in shapes {
                let c = s.codecs
                lines.append(s.shape.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)
                             + String(format: " %10.1f %11.1f %16.1f %17.1f %22.1f",
                                    c.zlib, c.runLength, c.runLengthZlib, c.deltaRunLength, c.deltaRunLengthZlib))
            }
            return lines.joined(separator: "\n") + "\n"
        }
    }

    static let codecSampleRounds = 128

    /// Runs every shape in turn.
    public static func run(_ options: Options = Options()) throws -> Report {
        let info = SyntheticRounds.sessionInfo(slots: options.slots, pagesPerSlot: options.pagesPerSlot)
        let shapes = try SyntheticShape.allCases.map { try measure($0, info: info, options: options) }
        return Report(options: options, shapes: shapes)
    }

    private static func measure(_ shape: SyntheticShape, info: SessionInfo, options: Options) throws -> ShapeFigures {
        let path = options.directory + "/dirtyscope-bench-\(getpid())-\(shape.rawValue).dsrec"
        defer { unlink(path) }

        // Write, timing each append alone.
        var generator = SyntheticRounds(shape: shape, info: info, seed: 42)
        let writer = try RecordingWriter(path: path, info: info)
        let headerBytes = writer.bytesWritten
        var comparison = CodecComparison()
        var appendTotal: UInt64 = 0
        var appendMax: UInt64 = 0
        for k in 0..<options.rounds {
            let round = generator.nextRound()
            if k < codecSampleRounds { comparison.add(round) }
            let start = monotonicNanos()
            try writer.append(.round(round))
            let took = monotonicNanos() - start
            appendTotal += took
            appendMax = max(appendMax, took)
        }
        let recordBytes = writer.bytesWritten - headerBytes
        try writer.finish()

        // Open, play in order, then seek at random.
        var start = monotonicNanos()
        let reader = try RecordingReader(path: path)
        let openNanos = monotonicNanos() - start
        start = monotonicNanos()
        for i in 0..<reader.roundCount { _ = try reader.entry(at: i) }
        let playNanos = monotonicNanos() - start
        var random = SplitMix64(seed: 9)
        var seekTotal: UInt64 = 0
        var seekMax: UInt64 = 0
        for _ in 0..<options.seeks {
            let target = Int(random.next() % UInt64(max(1, reader.roundCount)))
            let t0 = monotonicNanos()
            _ = try reader.entry(at: target)
            let took = monotonicNanos() - t0
            seekTotal += took
            seekMax = max(seekMax, took)
        }

        let rounds = Double(max(1, options.rounds))
        let seeks = Double(max(1, options.seeks))
        return ShapeFigures(
            shape: shape, rounds: options.rounds,
            rawBytesPerRound: Double(info.slots.reduce(0) { $0 + 2 * $1.blocks * 8 }),
            fileBytesPerRound: Double(recordBytes) / rounds,
            keyframes: reader.index.rounds.filter(\.keyframe).count,
            codecs: comparison.sizes,
            appendMeanMicros: Double(appendTotal) / rounds / 1e3, appendMaxMicros: Double(appendMax) / 1e3,
            openMillis: Double(openNanos) / 1e6,
            decodeRoundsPerSecond: Double(reader.roundCount) / max(1e-9, Double(playNanos) / 1e9),
            seekMeanMillis: Double(seekTotal) / seeks / 1e6, seekMaxMillis: Double(seekMax) / 1e6)
    }
}

/// Sizes of the alternative encodings of the same rounds' bitmaps.
private struct CodecComparison {
    /// zlib at its default level and strategy, for zlib alone; the writer's settings after run-length.
    private let zlib = Deflater(level: 6, strategy: Z_DEFAULT_STRATEGY)
    private let deflater = Deflater(level: 1)
    private var previous: Round?
    private var totals = [Int](repeating: 0, count: 5)
    private var rounds = 0

    mutating func add(_ round: Round) {
        var raw: [UInt8] = []
        var full = ByteWriter()
        var delta = ByteWriter()
        for (s, bitmaps) in zip(round.slots, round.bitmaps) {
            let before = previous.flatMap { p in p.slots.firstIndex { $0.slot == s.slot }.map { p.bitmaps[$0] } }
            for (now, then) in [(bitmaps.reported, before?.reported), (bitmaps.falsePositives, before?.falsePositives)] {
                now.withUnsafeWords { words in
                    raw.append(contentsOf: UnsafeRawBufferPointer(words))
                    BitmapCodec.encode(words, into: &full)
                }
                let xor = then.map { then in zip(now.words, then.words).map { $0 ^ $1 } } ?? now.words
                _ = xor.withUnsafeBufferPointer { BitmapCodec.encode($0, into: &delta) }
            }
        }
        totals[0] += zlib.compress(raw).count
        totals[1] += full.count
        totals[2] += deflater.compress(full.bytes).count
        totals[3] += delta.count
        totals[4] += deflater.compress(delta.bytes).count
        rounds += 1
        previous = round
    }

    var sizes: RecordingBenchmark.CodecSizes {
        let n = Double(max(1, rounds))
        return .init(zlib: Double(totals[0]) / n, runLength: Double(totals[1]) / n, runLengthZlib: Double(totals[2]) / n,
                     deltaRunLength: Double(totals[3]) / n, deltaRunLengthZlib: Double(totals[4]) / n)
    }
}

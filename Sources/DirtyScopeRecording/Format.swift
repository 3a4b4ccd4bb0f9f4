import DirtyScopeModel

/// The layout of a replay file; FORMAT.md at the repository root describes it in words.
enum Format {
    /// First 8 bytes of every recording (PNG-style: a high byte, a name, CR LF, ^Z, LF,
    /// so that 7-bit transfers and newline conversions show up as a wrong magic).
    static let magic: [UInt8] = [0x89, 0x44, 0x53, 0x52, 0x0D, 0x0A, 0x1A, 0x0A]
    /// The format version this build writes and the newest it reads.
    static let version: UInt16 = 1
    /// Magic, version (u16), flags (u16), header length (u32), header CRC32 (u32).
    static let fileHeaderSize = 20
    /// Longest JSON session description a reader accepts: the largest a session within
    /// `SessionLimits` writes is under 64 KiB (32 slots, 256 capabilities, three 4 KiB
    /// names even when every byte needs a 6-byte escape), so it is refused before decoding.
    static let maxHeaderJSON = 256 << 10

    /// Starts every record. 0xFF and 0xFE never occur in UTF-8, so never in an event's JSON.
    static let sync: [UInt8] = [0xFF, 0x44, 0x53, 0xFE]
    /// Sync (4), CRC32 (u32) of everything after it, type (u8), payload length (varint,
    /// at most 5 bytes: the length fits in 32 bits).
    static let maxRecordHeaderSize = 14
    /// Where the CRC32's coverage starts inside a record.
    static let checksummedFrom = 8

    /// Warnings a reader keeps; past these it only counts them.
    static let maxWarnings = 100
    /// Rounds per cumulative-totals checkpoint in the reader's index.
    static let totalsCheckpointInterval = 64
    /// Most calls one round's latency may count: one GET per slot, one CLEAR per 64 pages.
    static let maxLatencyCalls = SessionLimits.maxTotalPages
    /// Longest latency histogram a reader accepts.
    static let maxHistogramBuckets = 1024
    /// Longest event record a reader accepts.
    static let maxEventPayload = 1 << 20
    /// Bytes of a round's payload read to decode its metrics (they come first): an honest
    /// round's metrics take a few KiB at most (32 slots, 40-bucket latency histograms); longer
    /// ones are read whole.
    static let metricsReadAhead = 16 << 10
    /// Bitmap tokens shorter than this are stored as they are: deflate's fixed cost per
    /// call (about 20 µs: resetting its tables, building Huffman trees) buys little there.
    static let deflateThreshold = 1024
    /// Buffered bytes that trigger a write(2) before the time limit.
    static let flushBytes = 256 << 10
    /// Oldest buffered data before a write(2), in nanoseconds: with rounds at most half a
    /// second apart, a kill loses at most about a second.
    static let flushNanos: UInt64 = 500_000_000
}

/// What a record holds: the byte after its checksum.
enum RecordType: UInt8 {
    /// A round whose bitmaps are stored whole.
    case keyframe = 1
    /// A round whose bitmaps are XORed against the previous round's.
    case delta = 2
    /// A `TimedEvent` as JSON.
    case event = 3
    /// Written by `RecordingWriter.finish()`: round and event counts.
    case end = 4
}

/// Round-record field presence bits (FORMAT.md, "Round payload"). The metrics' bits are
/// in the metric table (`Metric.spec.storage`); these are the round's own. The fields an
/// idle round has take the low 7 bits, so its mask is one byte.
enum RoundField {
    static let index: UInt64 = 1 << 0
    static let startNanos: UInt64 = 1 << 1
    static let verification: UInt64 = 1 << 6
    /// Where the round's false positives came from, when it had any.
    static let origins: UInt64 = 1 << 14
    /// Round fields with a bit from here on follow the composite fields (latencies,
    /// verification, origins) in the record; those below precede them.
    static let firstLateBit: UInt64 = 1 << 15
    /// Each vCPU's guest cost (`RoundMetrics.vcpus`), after the late fields.
    static let vcpus: UInt64 = 1 << 28

    /// A metric's presence bit (0 for a metric kept per slot, or not kept).
    static func bit(_ metric: Metric) -> UInt64 {
        switch metric.spec.storage {
        case .round(let bit), .latency(let bit): return bit
        default: return 0
        }
    }

    /// The varint round fields before the composites, and after them, in bit order.
    static let early = Metric.roundFields.filter { bit($0) < firstLateBit }.sorted { bit($0) < bit($1) }
    static let late = Metric.roundFields.filter { bit($0) >= firstLateBit }.sorted { bit($0) < bit($1) }

    /// Every bit a round record may set.
    static let all: UInt64 = Metric.allCases.reduce(index | startNanos | verification | origins | vcpus) { $0 | bit($1) }

    /// Latency fields after the late varints, in bit order (the early ones, GET and
    /// CLEAR, sit among the composites for the format's first version).
    static let lateLatencies = Metric.allCases.filter {
        if case .latency(let bit) = $0.spec.storage { return bit >= firstLateBit } else { return false }
    }.sorted { bit($0) < bit($1) }
}

/// Per-slot presence bits in a round record, below the slot index in one varint.
enum SlotField {
    // Bits 0 to 4 are the per-slot metrics' (`Metric.perSlot`).
    /// Written before the metric table (counts in the blocks cleared last); read and dropped.
    static let watched: UInt8 = 1 << 5
    static let bits = 6
}

/// How a round's bitmap section is stored.
enum BitmapSectionCodec: UInt8 {
    /// Run-length tokens as they are.
    case stored = 0
    /// Run-length tokens compressed with raw deflate, preceded by their length.
    case deflate = 1
}

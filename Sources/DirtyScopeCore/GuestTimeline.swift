import CKVM
import DirtyScopeModel
import Pages

/// One record of a vCPU's timeline (`struct ds_tick`, ABI 3), as read from guest memory.
public struct TimelineRecord: Equatable, Sendable {
    public enum Kind: UInt32, Sendable {
        /// The first record: nothing before it to measure.
        case start = 0
        /// Since the previous record the guest worked: `writes` page writes.
        case work = 1
        /// Since the previous record the guest was in a host call it made (pace, pass,
        /// idle, a clock exchange): not work.
        case resume = 2
    }

    public var tsc: UInt64
    /// The vCPU's steal time (ns its thread waited for a host CPU) when the record was made.
    public var steal: UInt64
    public var writes: UInt32
    public var kind: Kind

    public init(tsc: UInt64, steal: UInt64, writes: UInt32, kind: Kind) {
        self.tsc = tsc
        self.steal = steal
        self.writes = writes
        self.kind = kind
    }
}

/// Reads one vCPU's timeline ring in guest memory. The guest is untrusted: whatever it
/// writes to its head or its records, a read copies at most the ring's capacity, never
/// reads outside the ring, and counts what it could not use. Records the guest overwrote
/// before the host read them are `lost`; records whose index does not match their slot
/// (a scribbler) are `invalid`. After either, the next record starts a new run.
struct TimelineRing {
    /// The first record (`DS_TIMELINE_GPA + vcpu * DS_TIMELINE_BYTES` in the system slot).
    let records: UnsafeRawPointer
    /// Records the ring holds (a power of two).
    let capacity: UInt64
    /// The next index to read.
    private(set) var tail: UInt64 = 0
    private(set) var lost: UInt64 = 0
    private(set) var invalid: UInt64 = 0

    init(records: UnsafeRawPointer, capacity: UInt64, tail: UInt64 = 0) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "ring capacity must be a power of two")
        self.records = records
        self.capacity = capacity
        self.tail = tail
    }

    /// Reads the records written since the last read. `head` loads the guest's
    /// `timeline_head` (with acquire ordering); `body` gets each record in order, or nil
    /// where records are missing before it (the run breaks there).
    mutating func read(head: () -> UInt64, _ body: (TimelineRecord?) -> Void) {
        // One nil however many records are missing in a row.
        var broken = false
        func emit(_ r: TimelineRecord) {
            if broken { body(nil); broken = false }
            body(r)
        }
        let h = head()
        if h < tail {
            // The guest stepped its head back (a new timeline, or a scribbler).
            invalid &+= 1
            tail = h
            body(nil)
            return
        }
        if h - tail > capacity {
            lost &+= h - tail - capacity
            tail = h - capacity
            broken = true
        }
        let count = Int(h - tail)
        guard count > 0 else { if broken { body(nil) }; return }
        let size = MemoryLayout<ds_tick>.size
        var copied: [(index: UInt64, raw: ds_tick)] = []
        copied.reserveCapacity(count)
        for k in 0..<UInt64(count) {
            let i = tail + k
            // Safe: the slot index is masked into [0, capacity), inside the ring's mapping.
            let slot = records + Int(i & (capacity - 1)) * size
            copied.append((i, slot.loadUnaligned(as: ds_tick.self)))
        }
        // A record the guest may have begun to overwrite while it was copied: the writer
        // of index j (at most the head now) rewrites the slot of j - capacity.
        let after = head()
        let firstSafe = after >= capacity ? after - capacity + 1 : 0
        for (i, raw) in copied {
            guard i >= firstSafe else { lost &+= 1; broken = true; continue }
            guard raw.seq == i, let kind = TimelineRecord.Kind(rawValue: raw.kind) else {
                invalid &+= 1
                broken = true
                continue
            }
            emit(TimelineRecord(tsc: raw.tsc, steal: raw.steal, writes: raw.writes, kind: kind))
        }
        if broken { body(nil) }
        tail = h
    }
}

/// A clock exchange: the guest's TSC just before its DS_PORT_CLOCK call, the host's
/// monotonic clock when it handled the call, the TSC just after the call returned.
public struct ClockSample: Equatable, Sendable {
    public var before: UInt64
    public var host: UInt64
    public var after: UInt64

    public init(before: UInt64, host: UInt64, after: UInt64) {
        self.before = before
        self.host = host
        self.after = after
    }

    /// The round trip in TSC ticks (the host's time lies within it).
    var roundTrip: UInt64 { after &- before }
    /// The TSC at the round trip's middle: the guest's best estimate of `host`.
    var middle: UInt64 { before &+ roundTrip / 2 }
}

/// Places a vCPU's TSC on the host's monotonic clock. Each clock exchange says that the
/// host's clock read `host` somewhere between the TSC values `before` and `after`, so
/// mapping the middle to `host` is off by at most half the round trip. The rate comes
/// from KVM's TSC frequency until two good exchanges are a second apart, then from them.
/// Each new exchange also tests the calibration so far: how far its prediction of the
/// exchange's host time was off is the alignment error, measured.
public struct GuestClock: Sendable {
    /// Nanoseconds per TSC tick.
    public private(set) var nanosPerTick: Double
    /// The exchange the mapping is anchored to.
    public private(set) var anchor: ClockSample?
    /// The first good exchange, for the rate.
    private var first: ClockSample?
    /// The shortest round trip seen, in ticks.
    private var shortest: UInt64 = .max
    private let nominalNanosPerTick: Double
    /// Exchanges used, and refused (a round trip of zero or less, or a rate more than 1%
    /// off KVM's: a guest scribbling its clock fields).
    public private(set) var samples = 0
    public private(set) var refused = 0
    /// The largest and the last error of a prediction, in ns (nil before the second exchange):
    /// how far the mapping so far put a good exchange's host time (one whose round trip is
    /// within twice the best), which includes that exchange's own half round trip.
    public private(set) var worstPredictionError: UInt64?
    public private(set) var lastPredictionError: UInt64?

    /// A clock running at `ticksPerSecond` (KVM_GET_TSC_KHZ * 1000).
    public init(ticksPerSecond: UInt64) {
        nominalNanosPerTick = 1e9 / Double(max(1, ticksPerSecond))
        nanosPerTick = nominalNanosPerTick
    }

    /// Whether any exchange has anchored the clock: without one nothing can be placed.
    public var isCalibrated: Bool { anchor != nil }

    /// Half the anchor's round trip in ns: how far any mapped time may be off the host's
    /// clock at the anchor (plus the rate's drift away from it).
    public var alignmentBound: UInt64? {
        anchor.map { Self.clampNanos(Double($0.roundTrip) * nanosPerTick / 2) }
    }

    /// Adds an exchange; returns false if it was refused.
    @discardableResult
    public mutating func add(_ s: ClockSample) -> Bool {
        guard s.after > s.before, s.roundTrip < 1 << 40 else { refused += 1; return false }
        samples += 1
        shortest = min(shortest, s.roundTrip)
        // A round trip much longer than the best (the vCPU was preempted inside it) is a
        // poor anchor: it replaces the anchor only if that one is worse still, and it is
        // no test of the calibration either (its own error is that large).
        let good = s.roundTrip <= shortest * 2
        if anchor != nil, good {
            let predicted = hostNanos(tsc: s.middle)
            let error = predicted > s.host ? predicted - s.host : s.host - predicted
            lastPredictionError = error
            worstPredictionError = max(worstPredictionError ?? 0, error)
        }
        if !good, let a = anchor, a.roundTrip <= s.roundTrip { return true }
        if let f = first, f.roundTrip <= shortest * 2 {
            if s.host > f.host + 1_000_000_000, s.middle > f.middle {
                let rate = Double(s.host - f.host) / Double(s.middle - f.middle)
                guard abs(rate / nominalNanosPerTick - 1) < 0.01 else { refused += 1; return false }
                nanosPerTick = rate
            }
        } else if good {
            first = s
        }
        anchor = s
        return true
    }

    /// The host's monotonic time (ns) at guest TSC `tsc`; 0 before any exchange.
    public func hostNanos(tsc: UInt64) -> UInt64 {
        guard let a = anchor else { return 0 }
        let ticks = tsc >= a.middle ? Double(tsc - a.middle) : -Double(a.middle - tsc)
        return Self.clampNanos(Double(a.host) + ticks * nanosPerTick)
    }

    /// Nanoseconds from a Double, clamped into UInt64 (a guest's TSC values are untrusted).
    static func clampNanos(_ x: Double) -> UInt64 {
        guard x.isFinite, x > 0 else { return 0 }
        return x >= 0x1p64 ? .max : UInt64(x)
    }
}

import DirtyScopeModel
import Foundation
import KVM

/// `bench --suite clock`: what the guest's clock costs to read on this host, and how well
/// a clock exchange aligns it with the host's. The built-in guest `clockprobe` times an
/// empty loop, one with an `add` and one with an `rdtsc` in it; the difference per
/// iteration is one instruction's cost. Then it does clock exchanges until the host has
/// enough of them.
public enum ClockProbe {
    public struct Result: Sendable {
        /// Per repeat: ns per iteration of the empty, add and rdtsc loops.
        public var loops: [(empty: Double, add: Double, rdtsc: Double)]
        /// Round trips of the clock exchanges, ns.
        public var roundTrips: [UInt64]
        public var ticksPerSecond: UInt64

        /// The cost of one rdtsc and one add, ns: the median over the repeats of each loop's
        /// time less the empty loop's in the same repeat. (Not the least: a repeat whose empty
        /// loop was preempted gives a negative cost, which a minimum would pick.)
        public var rdtscNanos: Double { Self.median(loops.map { $0.rdtsc - $0.empty }) }
        public var addNanos: Double { Self.median(loops.map { $0.add - $0.empty }) }

        static func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            guard !sorted.isEmpty else { return 0 }
            return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        public var text: String {
            let rtts = roundTrips.sorted()
            let rdtsc = String(format: "%.0f ns", rdtscNanos), add = String(format: "%.0f ns", addNanos)
            var out = "clock probe: TSC at \(ticksPerSecond / 1_000_000) MHz (KVM_GET_TSC_KHZ)\n"
            out += "  one rdtsc costs \(rdtsc) in the guest, one add \(add) (medians of \(loops.count) repeats)"
            if addNanos > 0 { out += String(format: " (rdtsc = %.1f adds)", rdtscNanos / addNanos) }
            out += "\n  loops of each repeat, ns per iteration (empty / add / rdtsc): "
            out += loops.map { String(format: "%.0f/%.0f/%.0f", $0.empty, $0.add, $0.rdtsc) }.joined(separator: ", ") + "\n"
            if let first = rtts.first {
                out += "  clock exchange round trip over \(rtts.count) exchanges: min \(formatNanos(first)), median \(formatNanos(rtts[rtts.count / 2])), "
                    + "max \(formatNanos(rtts.last!)); the best aligns guest and host clocks within \(formatNanos(first / 2))\n"
            }
            return out
        }
    }

    /// A console line of the probe: "probe loops=N empty=T add=T rdtsc=T" (ticks).
    static func parse(_ line: String) -> (loops: Double, empty: Double, add: Double, rdtsc: Double)? {
        var fields: [String: Double] = [:]
        for part in line.split(separator: " ").dropFirst() {
            let kv = part.split(separator: "=")
            guard kv.count == 2, let v = Double(kv[1]) else { return nil }
            fields[String(kv[0])] = v
        }
        guard line.hasPrefix("probe "), let n = fields["loops"], n > 0, let e = fields["empty"], let a = fields["add"], let t = fields["rdtsc"] else { return nil }
        return (n, e, a, t)
    }

    private final class Lines: @unchecked Sendable {
        let lock = NSLock()
        var lines: [String] = []
        func add(_ s: String) { lock.lock(); lines.append(s); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
    }

    public static func run(system: KVMSystem, exchanges: Int = 50) throws(SessionError) -> Result {
        let machine = try GuestMachine(system: system, config: MachineConfig(
            slotBytes: [2 << 20], vcpus: 1, guest: .builtin("clockprobe"), workload: WorkloadSettings(workload: .idle, rate: 0)))
        defer { machine.stop() }
        let ticks = machine.tscTicksPerSecond[0]
        guard ticks > 0 else { throw .invalidArgument("this host's KVM gives no TSC frequency (KVM_GET_TSC_KHZ)") }
        let lines = Lines()
        machine.onConsoleLine = { lines.add($0) }
        machine.start()
        let deadline = monotonicNanos() + 120_000_000_000
        while lines.all.compactMap(parse).count < 5 {
            if let f = machine.currentFault { throw .guestFault(f) }
            guard monotonicNanos() < deadline else { throw .invalidArgument("the clock probe printed nothing in 120 s") }
            usleep(20_000)
        }
        var samples: [ClockSample] = []
        let start = machine.clockExchanges(vcpu: 0).served
        machine.requestClockExchanges(vcpu: 0, count: start + UInt64(exchanges))
        while samples.count < exchanges && monotonicNanos() < deadline {
            usleep(10_000)
            samples += machine.takeClockSamples()[0]
        }
        let nanosPerTick = 1e9 / Double(ticks)
        let loops = lines.all.compactMap(parse).map { p in
            (p.empty / p.loops * nanosPerTick, p.add / p.loops * nanosPerTick, p.rdtsc / p.loops * nanosPerTick)
        }
        return Result(loops: loops.map { (empty: $0.0, add: $0.1, rdtsc: $0.2) },
                      roundTrips: samples.filter { $0.after > $0.before }.map { UInt64(Double($0.after - $0.before) * nanosPerTick) },
                      ticksPerSecond: ticks)
    }
}

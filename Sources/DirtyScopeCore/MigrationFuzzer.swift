import DirtyScopeModel
import DirtyScopeRecording
import Foundation
import KVM
import Pages

/// The receiver's side of the migration stream under forged input, in-process and without
/// /dev/kvm: each input is a valid stream (a hello, pages, rounds, states, hashes, the
/// switch-over, resume) taken apart and put back with hostile values (counts, slots, pages
/// and lengths at and past their limits, zero pages with data, hashes that lie, frames
/// dropped, repeated and reordered), most of them with correct checksums so they reach the
/// checks behind the checksum, a quarter with bytes flipped or cut as well. Every input
/// goes through what `dirtyscope receive` does with a stream (the greeting, each frame's
/// header and decoding, `MigrationIntake`), over plain memory. What must hold: no trap, no
/// input over a second, memory bounded by the layout.
public struct MigrationFuzzer {
    public struct Report: Sendable {
        public var inputs = 0
        public var resumed = 0
        /// Inputs refused, by the first words of their error.
        public var refusals: [String: Int] = [:]
        public var hangs = 0
        public var slowestNanos: UInt64 = 0
        public var seconds: Double = 0

        public func text() -> String {
            let top = refusals.sorted { $0.value > $1.value }.prefix(8).map { "\($0.value) \($0.key)" }.joined(separator: "; ")
            return "fuzz-migration: \(inputs) inputs in \(String(format: "%.1f", seconds)) s (\(Int(Double(inputs) / max(seconds, 1e-9)))/s), "
                + "\(resumed) resumed, \(inputs - resumed) refused, hangs \(hangs) (over 1 s), slowest \(formatNanos(slowestNanos))\n"
                + "  most common refusals: \(top)\n"
        }
    }

    private var random: UInt64
    private let pageSize = PageSize.system
    /// The layout every forged stream starts from: two small slots and a small system slot.
    let hello: MigrationWire.Hello

    public init(seed: UInt64) {
        random = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        hello = MigrationWire.Hello(pageSize: PageSize.system, vcpus: 2, systemBytes: 16 * PageSize.system,
                                    slots: [(1 << 30, 64), (1 << 31, 200)], guestName: "workload", stamps: true)
    }

    private mutating func next() -> UInt64 {
        random ^= random << 13
        random ^= random >> 7
        random ^= random << 17
        return random
    }

    private mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }

    /// A valid stream's frames for `hello`: two rounds of pages, states, hashes, switch-over, resume.
    mutating func validFrames() -> [MigrationWire.Frame] {
        var frames: [MigrationWire.Frame] = [.hello(hello)]
        var last: [[Int: UInt64]] = Array(repeating: [:], count: hello.slots.count + 1)
        let slots = hello.slots.map(\.pages) + [hello.systemBytes / pageSize]
        for round in 1...2 {
            for s in slots.indices {
                let first = below(slots[s] - 8)
                let count = 1 + below(min(8, slots[s] - first))
                var bits = [UInt8](repeating: 0, count: (count + 7) / 8)
                var hashes: [UInt64] = [], data: [UInt8] = []
                for i in 0..<count {
                    if below(4) == 0 {
                        bits[i >> 3] |= 1 << UInt8(i & 7)
                        hashes.append(MigrationWire.zeroHash(bytes: pageSize))
                    } else {
                        var page = [UInt8](repeating: 0, count: pageSize)
                        for k in 0..<8 { page[k] = UInt8(truncatingIfNeeded: next()) }
                        hashes.append(page.withUnsafeBytes { MigrationWire.hash($0.baseAddress!, bytes: pageSize) })
                        data += page
                    }
                    last[s][first + i] = hashes.last!
                }
                frames.append(.pages(.init(slot: s == slots.count - 1 ? MigrationWire.systemSlot : UInt32(s), firstPage: UInt64(first),
                                           count: count, zeroBits: bits, hashes: hashes, data: data)))
            }
            frames.append(.roundEnd(.init(round: UInt64(round), pages: 8, zeroPages: 2, bytes: 8192, falsePositivePages: 1)))
        }
        for v in 0..<hello.vcpus {
            frames.append(.state(.init(vcpu: v, mpState: 0, parts: [[UInt8](repeating: 0, count: 144), [UInt8](repeating: 0, count: 312),
                                                                      [UInt8](repeating: 0, count: 4096), [], [], []],
                                       msrs: [(UInt32(0x10), next())])))
        }
        for s in last.indices where !last[s].isEmpty {
            let sorted = last[s].sorted(by: { $0.key < $1.key })
            frames.append(.hashes(slot: s == last.count - 1 ? MigrationWire.systemSlot : UInt32(s),
                                  pages: sorted.map { UInt64($0.key) }, hashes: sorted.map(\.value)))
        }
        frames.append(.switchOver(pages: UInt64(last.reduce(0) { $0 + $1.count })))
        frames.append(.resume)
        return frames
    }

    /// A hostile value for a count or index field.
    private mutating func hostile() -> UInt64 {
        [0, 1, 7, 8, 63, 64, 255, 256, 257, 4095, 4096, 65535, 1 << 20, 1 << 26, 1 << 31, 1 << 32, 1 << 62, UInt64.max - 1, UInt64.max][below(19)]
    }

    /// A frame with one field turned hostile.
    private mutating func mutate(_ frame: MigrationWire.Frame) -> MigrationWire.Frame {
        switch frame {
        case .hello(var h):
            switch below(6) {
            case 0: h.pageSize = Int(truncatingIfNeeded: hostile())
            case 1: h.vcpus = Int(truncatingIfNeeded: hostile())
            case 2: h.systemBytes = Int(truncatingIfNeeded: hostile())
            case 3: h.slots = Array(repeating: (UInt64(0), Int(truncatingIfNeeded: hostile())), count: 1 + below(40))
            case 4: h.guestName = String(repeating: "\u{1b}[2J\u{202e}", count: below(300))
            default: h.slots.removeAll()
            }
            return .hello(h)
        case .pages(var p):
            switch below(7) {
            case 0: p.slot = UInt32(truncatingIfNeeded: hostile())
            case 1: p.firstPage = hostile()
            case 2: p.count = Int(truncatingIfNeeded: hostile() % 100_000)
            case 3: p.zeroBits = p.zeroBits.map { ~$0 }
            case 4: if !p.hashes.isEmpty { p.hashes[below(p.hashes.count)] ^= 1 }
            case 5: p.data.removeLast(min(p.data.count, below(5000)))
            default: if !p.data.isEmpty { p.data[below(p.data.count)] ^= 0x80 }
            }
            return .pages(p)
        case .state(var st):
            switch below(4) {
            case 0: st.vcpu = Int(truncatingIfNeeded: hostile())
            case 1: st.parts = Array(st.parts.prefix(below(6)))
            case 2: st.msrs = Array(repeating: (0, 0), count: below(5000))
            default: if !st.parts.isEmpty { st.parts[below(st.parts.count)] = [UInt8](repeating: 0xff, count: below(70_000)) }
            }
            return .state(st)
        case .hashes(let slot, let pages, let hashes):
            switch below(5) {
            case 0: return .hashes(slot: UInt32(truncatingIfNeeded: hostile()), pages: pages, hashes: hashes)
            case 1: return .hashes(slot: slot, pages: pages.map { $0 &+ hostile() }, hashes: hashes)
            case 2: return .hashes(slot: slot, pages: pages.reversed(), hashes: hashes)
            case 3: return .hashes(slot: slot, pages: pages + pages, hashes: hashes + hashes)
            default: return .hashes(slot: slot, pages: pages, hashes: hashes.map { $0 ^ 0xdead })
            }
        case .verified, .resumed:
            return .abort("\u{7}\u{1b}]0;owned\u{7}")
        case .switchOver: return .switchOver(pages: hostile())
        default: return frame
        }
    }

    /// One forged stream's bytes.
    mutating func forge() -> [UInt8] {
        var frames = validFrames()
        for _ in 0..<(1 + below(3)) {
            let i = below(frames.count)
            switch below(5) {
            case 0: frames.remove(at: i)
            case 1: frames.insert(frames[i], at: below(frames.count))
            case 2: frames.swapAt(i, below(frames.count))
            default: frames[i] = mutate(frames[i])
            }
        }
        var bytes = MigrationWire.greeting(.source)
        if below(50) == 0 { bytes[8] = UInt8(truncatingIfNeeded: next()) }   // another version now and then
        for f in frames { bytes += MigrationWire.encode(f) }
        // A quarter also get byte-level damage: flips, a cut, a forged frame length.
        if below(4) == 0 {
            switch below(3) {
            case 0: for _ in 0..<(1 + below(8)) { bytes[below(bytes.count)] ^= UInt8(truncatingIfNeeded: next() | 1) }
            case 1: bytes.removeLast(below(bytes.count))
            default:
                let at = MigrationWire.greetingBytes + 4
                if at + 4 <= bytes.count { for k in 0..<4 { bytes[at + k] = 0xff } }
            }
        }
        return bytes
    }

    /// What the receiver does with a stream, over plain memory: the greeting, each frame's
    /// header (its length bounded before a byte of the payload is taken) and checks, the
    /// intake. Returns nil if it got to resume, else the refusal.
    func receive(_ bytes: [UInt8]) -> String? {
        var at = 0
        func take(_ n: Int) -> [UInt8]? {
            guard n >= 0, bytes.count - at >= n else { return nil }
            defer { at += n }
            return Array(bytes[at..<(at + n)])
        }
        guard let greeting = take(MigrationWire.greetingBytes) else { return "the stream ended in its greeting" }
        do { try MigrationWire.checkGreeting(greeting, expected: .source) } catch { return error.description }
        var layout: MigrationWire.Hello?
        var intake: MigrationIntake?
        do {
            while true {
                guard let header = take(MigrationWire.headerBytes) else { return "the stream ended between frames" }
                let h = try MigrationWire.header(header)
                guard let payload = take(h.length) else { return "the stream ended inside a frame" }
                let frame = try MigrationWire.decode(type: h.type, payload: payload, crc: h.crc, layout: layout)
                if intake == nil {
                    guard case .hello(let hello) = frame else { return "the source did not begin with its hello" }
                    // The receiver refuses layouts other than its own before building anything.
                    guard hello.pageSize == pageSize, hello.slots.count <= SessionLimits.maxSlots,
                          hello.systemBytes <= 64 * pageSize, hello.slots.allSatisfy({ $0.pages <= 1 << 16 }) else {
                        return "a layout this fuzzer's receiver would not build"
                    }
                    layout = hello
                    var memories: [GuestMemory] = []
                    for pages in hello.slots.map(\.pages) + [hello.systemBytes / pageSize] {
                        memories.append(try GuestMemory(bytes: pages * pageSize))
                    }
                    intake = MigrationIntake(hello: hello, memories: memories)
                    continue
                }
                if case .resume = try intake!.apply(frame) { return nil }
            }
        } catch let e as MigrationWire.WireError {
            return e.description
        } catch let e as MigrationError {
            return e.description
        } catch {
            return "\(error)"
        }
    }

    /// Runs `inputs` forged streams; `progress` every 10,000.
    public mutating func run(inputs: Int, progress: (String) -> Void = { _ in }) -> Report {
        var report = Report()
        let start = monotonicNanos()
        for i in 0..<inputs {
            let bytes = forge()
            let t = monotonicNanos()
            let refusal = receive(bytes)
            let took = monotonicNanos() - t
            report.inputs += 1
            report.slowestNanos = max(report.slowestNanos, took)
            if took > 1_000_000_000 { report.hangs += 1 }
            if let refusal {
                let key = refusal.split(separator: " ").prefix(4).joined(separator: " ")
                report.refusals[key, default: 0] += 1
            } else {
                report.resumed += 1
            }
            if (i + 1) % 10_000 == 0 { progress("  \(i + 1) inputs, \(report.resumed) resumed, slowest \(formatNanos(report.slowestNanos))") }
        }
        report.seconds = Double(monotonicNanos() - start) / 1e9
        return report
    }
}

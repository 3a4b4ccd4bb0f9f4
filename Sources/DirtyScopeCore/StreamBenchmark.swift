import DirtyScopeModel
import DirtyScopeRecording
import Foundation
import KVM
import Pages
#if canImport(Glibc)
import Glibc
#endif

/// `bench --suite stream`: the migration stream's throughput against a plain copy of the
/// same bytes through the same kind of socket, in the same run. The plain copy sends the
/// memory in 256 KiB writes and reads it into fresh memory of the same size (as a
/// destination must hold it, first touches and all); the stream sends every page as
/// the migration does (frames of up to 256 pages, a hash per page, zero pages as bits)
/// and the receiving side checks and stores each page as `dirtyscope receive` does.
public enum StreamBenchmark {
    public struct Result: Sendable {
        public var bytes: UInt64
        /// The plain copy into one 256 KiB buffer (socat to /dev/null), and into fresh memory.
        public var bufferNanos: [UInt64]
        public var plainNanos: [UInt64]
        public var streamNanos: [UInt64]
        public var address: String

        func rate(_ nanos: UInt64) -> Double { Double(bytes) / Double(max(1, nanos)) * 1e9 / 1_048_576 }
        public var text: String {
            let b = bufferNanos.map(rate), p = plainNanos.map(rate), s = streamNanos.map(rate)
            let bm = b.sorted()[b.count / 2], pm = p.sorted()[p.count / 2], sm = s.sorted()[s.count / 2]
            return "stream over \(address): \(formatBytes(bytes)) of non-zero pages, \(p.count) runs of each, alternating\n"
                + "  plain copy into a 256 KiB buffer  " + b.map { String(format: "%.0f", $0) }.joined(separator: " ") + String(format: " MiB/s (median %.0f)\n", bm)
                + "  plain copy into fresh memory      " + p.map { String(format: "%.0f", $0) }.joined(separator: " ") + String(format: " MiB/s (median %.0f)\n", pm)
                + "  migration stream                  " + s.map { String(format: "%.0f", $0) }.joined(separator: " ") + String(format: " MiB/s (median %.0f)\n", sm)
                + String(format: "  the stream at %.2f of the plain copy into fresh memory (%.2fx slower), %.2f of the copy into a buffer\n",
                         sm / pm, pm / sm, sm / bm)
        }
    }

    /// Copies `bytes` of random non-zero pages over a fresh connection to `address`, `runs`
    /// times each way, alternating.
    public static func run(bytes: Int = 256 << 20, runs: Int = 3, address: MigrationAddress = .tcp(host: "127.0.0.1", port: 0)) throws(MigrationError) -> Result {
        let page = PageSize.system
        let pages = bytes / page
        let memory: GuestMemory
        do { memory = try GuestMemory(bytes: pages * page) } catch { throw MigrationError("\(error)") }
        var seed: UInt64 = 0x1234_5678
        for p in 0..<pages {
            let words = memory.page(p).assumingMemoryBound(to: UInt64.self)
            for w in 0..<(page / 8) { seed = seed &* 6364136223846793005 &+ 1442695040888963407; words[w] = seed | 1 }
        }
        var result = Result(bytes: UInt64(pages * page), bufferNanos: [], plainNanos: [], streamNanos: [], address: "")
        for _ in 0..<runs {
            result.bufferNanos.append(try plain(memory, address: address, label: &result.address, intoBuffer: true))
            result.plainNanos.append(try plain(memory, address: address, label: &result.address, intoBuffer: false))
            result.streamNanos.append(try stream(memory, address: address))
        }
        return result
    }

    /// A listener on `address` (port 0: any free loopback port; a Unix path is made unique).
    private static func listener(_ address: MigrationAddress) throws(MigrationError) -> MigrationListener {
        switch address {
        case .tcp(let host, 0):
            for port in UInt16(41_000)...UInt16(41_999) {
                if let l = try? MigrationListener(.tcp(host: host, port: port)) { return l }
            }
            throw MigrationError("no free port on \(host) from 41000 to 41999")
        case .unix(let path):
            return try MigrationListener(.unix(path + ".\(getpid())"))
        default:
            return try MigrationListener(address)
        }
    }

    private static func plain(_ memory: GuestMemory, address: MigrationAddress, label: inout String, intoBuffer: Bool) throws(MigrationError) -> UInt64 {
        let l = try listener(address)
        label = "\(l.address)"
        let total = memory.byteCount
        nonisolated(unsafe) var failure: MigrationError?
        let done = DispatchSemaphore(value: 0)
        Thread {
            do throws(MigrationError) {
                guard let c = try l.accept(timeoutNanos: 10_000_000_000) else { throw MigrationError("no connection") }
                if intoBuffer {
                    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 256 << 10, alignment: 4096)
                    defer { buffer.deallocate() }
                    var got = 0
                    while got < total {
                        let n = min(256 << 10, total - got)
                        try c.receive(into: buffer, count: n, deadline: monotonicNanos() + 60_000_000_000)
                        got += n
                    }
                } else {
                    let target: GuestMemory
                    do { target = try GuestMemory(bytes: total) } catch { throw MigrationError("\(error)") }
                    try c.receive(into: target.base, count: total, deadline: monotonicNanos() + 60_000_000_000)
                }
                try c.send([1])
            } catch { failure = error }
            done.signal()
        }.start()
        let c = try MigrationChannel.connect(to: l.address)
        let t0 = monotonicNanos()
        var sent = 0
        let chunk = 256 << 10
        while sent < total {
            let n = min(chunk, total - sent)
            try c.send(Array(UnsafeRawBufferPointer(start: memory.base + sent, count: n)))
            sent += n
        }
        _ = try c.receive(1, deadline: monotonicNanos() + 30_000_000_000)
        let t1 = monotonicNanos()
        done.wait()
        if let failure { throw failure }
        return t1 - t0
    }

    private static func stream(_ memory: GuestMemory, address: MigrationAddress) throws(MigrationError) -> UInt64 {
        let l = try listener(address)
        let page = PageSize.system
        let hello = MigrationWire.Hello(pageSize: page, vcpus: 1, systemBytes: page, slots: [(1 << 30, memory.pageCount)],
                                        guestName: "stream", stamps: false)
        nonisolated(unsafe) var failure: MigrationError?
        let done = DispatchSemaphore(value: 0)
        Thread {
            do throws(MigrationError) {
                guard let c = try l.accept(timeoutNanos: 10_000_000_000) else { throw MigrationError("no connection") }
                try c.greet(as: .destination)
                guard case .hello(let h) = try c.receiveFrame(layout: nil) else { throw MigrationError("no hello") }
                let target: [GuestMemory]
                do { target = [try GuestMemory(bytes: h.slots[0].pages * page), try GuestMemory(bytes: page)] } catch { throw MigrationError("\(error)") }
                let intake = MigrationIntake(hello: h, memories: target)
                try c.send(.ready)
                while true {
                    if case .round = try c.receive(layout: h, { (incoming) throws(MigrationError) in try intake.apply(incoming) }) { break }
                }
                try c.send(.ready)
            } catch { failure = error }
            done.signal()
        }.start()
        let c = try MigrationChannel.connect(to: l.address)
        let sender = MigrationSender(channel: c, hello: hello, memories: [memory, memory], captureStates: { [] })
        let t0 = monotonicNanos()
        try sender.open()
        try sender.sendResident(slot: 0)
        try sender.endRound(1, falsePositives: 0)
        _ = try c.receiveFrame(layout: hello)
        let t1 = monotonicNanos()
        done.wait()
        if let failure { throw failure }
        return t1 - t0
    }
}

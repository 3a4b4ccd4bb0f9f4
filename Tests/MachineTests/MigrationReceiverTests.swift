@testable import DirtyScopeCore
import CKVM
import DirtyScopeModel
import DirtyScopeRecording
import Foundation
import KVM
import KVMTestSupport
import XCTest

/// The migration stream's destination, driven by a source that stops its guest and sends
/// everything at once (the switch-over alone): the guest goes on on the destination, a
/// page lost or changed on the way fails the switch-over, and forged streams get one line.
final class MigrationReceiverTests: XCTestCase {
    /// Runs a receiver on one end of a socket pair in a thread; `source` drives the other.
    private func receive(_ system: KVMSystem, timeout: UInt64 = 10_000_000_000,
                         _ source: (MigrationChannel) throws -> Void) throws -> Result<MigrationReceiver.Outcome, MigrationError> {
        let (a, b) = try MigrationChannel.pair()
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Result<MigrationReceiver.Outcome, MigrationError>!
        Thread {
            let receiver = MigrationReceiver(system: system, channel: b)
            do throws(MigrationError) { result = .success(try receiver.run(frameTimeoutNanos: timeout)) } catch { result = .failure(error) }
            b.close()
            done.signal()
        }.start()
        try? source(a)
        a.close()
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "the receiver ends")
        return result
    }

    private func runningSource(_ system: KVMSystem) throws -> GuestMachine {
        let m = try GuestMachine(system: system, config: MachineConfig(
            slotBytes: [4 << 20, 8 << 20], vcpus: 2, workload: WorkloadSettings(workload: .random, rate: 50_000)))
        m.start()
        usleep(200_000)
        m.pause()
        return m
    }

    func testAStoppedGuestMovesAndGoesOnOnTheDestination() throws {
        let system = try openKVM()
        let source = try runningSource(system)
        defer { source.stop() }
        let writes = source.guestWrites
        var verified: MigrationWire.Verified?
        let result = try receive(system) { channel in
            let sender = MigrationSender(channel: channel, machine: source)
            try sender.open()
            for s in 0..<source.dataSlots.count { try sender.sendResident(slot: UInt32(s)) }
            try sender.endRound(1, falsePositives: 0)
            try sender.sendResident(slot: MigrationWire.systemSlot)
            try sender.sendStates()
            verified = try sender.switchOver()
            _ = try sender.resume()
        }
        let outcome = try result.get()
        defer { outcome.machine.stop() }
        XCTAssertEqual(verified?.differingPages, 0)
        XCTAssertEqual(outcome.rounds, 1)
        XCTAssertGreaterThan(outcome.pages, 0)
        let machine = outcome.machine
        let deadline = monotonicNanos() + 10_000_000_000
        while machine.guestWrites < writes + 1000 && monotonicNanos() < deadline && machine.currentFault == nil { usleep(10_000) }
        XCTAssertNil(machine.currentFault)
        XCTAssertGreaterThanOrEqual(machine.guestWrites, writes + 1000, "the guest writes on from \(writes) on the destination")
    }

    func testAPageThatNeverArrivedFailsTheSwitchOver() throws {
        let system = try openKVM()
        let source = try runningSource(system)
        defer { source.stop() }
        var verified: MigrationWire.Verified?
        let result = try receive(system) { channel in
            let sender = MigrationSender(channel: channel, machine: source)
            try sender.open()
            try sender.sendResident(slot: 0)
            // A page of slot 1 the source counts as sent (its hash noted) that never reached the stream.
            sender.sent[1][7] = 0x1234_5678
            try sender.sendResident(slot: MigrationWire.systemSlot)
            try sender.sendStates()
            verified = try sender.switchOver()
        }
        XCTAssertEqual(verified?.differingPages, 1, "one page missing on the destination")
        XCTAssertEqual(verified?.blocks.first?.slot, 1)
        guard case .failure(let e) = result else { return XCTFail("the receiver resumed a guest with a page missing") }
        XCTAssertTrue(e.description.contains("1 pages differ between the two ends"), e.description)
    }

    func testForgedStreamsGetOneLineEach() throws {
        let system = try openKVM()
        let hello = MigrationWire.Hello(pageSize: PageSize.system, vcpus: 1, systemBytes: Int(DS_SYSTEM_BYTES),
                                        slots: [(DS_DATA_GPA, 1024)], guestName: "workload", stamps: true)
        func frame(type: UInt8, payload: [UInt8], length: UInt32? = nil, crc: UInt32? = nil) -> [UInt8] {
            var h = [type, 0, 0, 0]
            let n = length ?? UInt32(payload.count)
            h += (0..<4).map { UInt8(truncatingIfNeeded: n >> (8 * $0)) }
            let c = crc ?? MigrationWire.checksum(payload)
            h += (0..<4).map { UInt8(truncatingIfNeeded: c >> (8 * $0)) }
            return h + payload
        }
        let cases: [(String, [UInt8], String)] = [
            ("garbage", Array("GET / HTTP/1.1\r\n\r\n".utf8), "not a DirtyScope migration stream"),
            ("another version", Array("DSMIGRAT".utf8) + [9, 0, 1, 0], "protocol version 9"),
            ("the wrong role", Array("DSMIGRAT".utf8) + [2, 0, 2, 0], "not a migration source"),
            ("a forged length", MigrationWire.greeting(.source) + frame(type: 1, payload: [], length: 0xFFFF_FFFF), "claims 4294967295 bytes"),
            ("an unknown frame", MigrationWire.greeting(.source) + frame(type: 99, payload: []), "unknown frame type 99"),
            ("a bad checksum", MigrationWire.greeting(.source) + frame(type: 1, payload: [1, 2, 3], crc: 7), "checksum does not match"),
            ("a truncated frame", MigrationWire.greeting(.source) + Array(MigrationWire.encode(.hello(hello)).prefix(20)), "hung up inside a frame"),
            ("pages before the hello", MigrationWire.greeting(.source) + MigrationWire.encode(.pages(.init(
                slot: 0, firstPage: 0, count: 1, zeroBits: [1], hashes: [0], data: []))), "comes before the hello"),
            ("a slot out of range", MigrationWire.greeting(.source) + MigrationWire.encode(.hello(hello)) + MigrationWire.encode(.pages(.init(
                slot: 5, firstPage: 0, count: 1, zeroBits: [1], hashes: [MigrationWire.zeroHash(bytes: PageSize.system)], data: []))),
             "slot 5 is not in the hello's 1 slots"),
            ("pages past the slot", MigrationWire.greeting(.source) + MigrationWire.encode(.hello(hello)) + MigrationWire.encode(.pages(.init(
                slot: 0, firstPage: 1023, count: 2, zeroBits: [3], hashes: [1, 1], data: []))), "pages 1023+2 of slot 0"),
            ("a silent peer", MigrationWire.greeting(.source), "sent nothing for too long"),
        ]
        for (what, bytes, expected) in cases {
            let result = try receive(system, timeout: 500_000_000) { channel in
                try channel.send(bytes)
                // Read the destination's greeting, then wait for it to hang up or time out; a
                // truncated frame's source hangs up at once, in the middle of its frame.
                _ = try? channel.receive(MigrationWire.greetingBytes, deadline: monotonicNanos() + 2_000_000_000)
                if what == "a truncated frame" { return }
                _ = try? channel.receive(1, deadline: monotonicNanos() + 3_000_000_000)
            }
            guard case .failure(let e) = result else { XCTFail("\(what): the receiver went on"); continue }
            XCTAssertTrue(e.description.contains(expected), "\(what): \(e.description)")
            XCTAssertFalse(e.description.contains("\n"), "\(what): one line")
        }
    }
}


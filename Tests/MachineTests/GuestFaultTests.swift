import CKVM
import DirtyScopeCore
import DirtyScopeModel
import Foundation
import KVM
import KVMTestSupport
import XCTest

/// A user's guest that faults is reported (vCPU, reason, registers), never a crash; guest
/// files outside the size limits are refused with words naming the limit.
final class GuestFaultTests: XCTestCase {
    private func config(_ path: String, vcpus: Int = 1) -> MachineConfig {
        MachineConfig(slotBytes: [2 << 20], vcpus: vcpus, guest: .file(path), workload: noWrites)
    }

    /// `ud2` with no IDT: #UD cannot be delivered, which escalates to a triple fault.
    func testUndefinedInstructionIsReportedAsAFault() throws {
        let system = try openKVM()
        let path = try temporaryFile([0x0f, 0x0b], name: "ud2")
        defer { unlink(path) }
        let machine = try GuestMachine(system: system, config: config(path))
        defer { machine.stop() }
        XCTAssertFalse(machine.guestStamps, "a user's guest is not assumed to stamp")
        XCTAssertEqual(machine.guestName, (path as NSString).lastPathComponent)
        let reported = Locked<[GuestFault]>([])
        machine.onFault = { f in reported.withLock { $0.append(f) } }
        machine.start()
        XCTAssertTrue(eventually { machine.currentFault != nil }, "the fault is reported")
        guard let fault = machine.currentFault else { return }
        XCTAssertEqual(fault.vcpu, 0)
        XCTAssertFalse(fault.reason.isEmpty)
        XCTAssertTrue(fault.reason.contains("SHUTDOWN") || fault.reason.contains("INTERNAL_ERROR"), fault.reason)
        XCTAssertEqual(fault.rip, DS_LOAD_GPA, "rip points at the ud2")
        XCTAssertEqual(fault.rsp, DS_STACK_GPA + DS_STACK_BYTES - 8)
        XCTAssertEqual(fault.cr3, DS_PAGETABLE_GPA)
        XCTAssertTrue(fault.description.contains("rip=0x200000"), fault.description)
        XCTAssertTrue(eventually { reported.withLock { $0 } == [fault] }, "onFault saw it once")
        // The world can still be paused and stopped with the faulted vCPU gone.
        machine.pause()
        machine.resume()
    }

    /// Two vCPUs fault; the first fault is kept and both threads end.
    func testEveryVCPUFaultingStillStops() throws {
        let system = try openKVM()
        let path = try temporaryFile([0x0f, 0x0b], name: "ud2x2")
        defer { unlink(path) }
        let machine = try GuestMachine(system: system, config: config(path, vcpus: 2))
        machine.start()
        XCTAssertTrue(eventually { machine.currentFault != nil })
        machine.stop()
        XCTAssertNotNil(machine.currentFault)
    }

    /// HLT with interrupts off also ends the guest, as a reported fault.
    func testHaltIsReported() throws {
        let system = try openKVM()
        let path = try temporaryFile([0xf4], name: "hlt")
        defer { unlink(path) }
        let machine = try GuestMachine(system: system, config: config(path))
        defer { machine.stop() }
        machine.start()
        XCTAssertTrue(eventually { machine.currentFault != nil })
        XCTAssertTrue(machine.currentFault?.reason.contains("HLT") ?? false, "\(String(describing: machine.currentFault))")
    }

    func testEmptyGuestFileIsRefused() throws {
        let system = try openKVM()
        let path = try temporaryFile([], name: "empty")
        defer { unlink(path) }
        let error = sessionError { _ = try GuestMachine(system: system, config: config(path)) }
        guard case .invalidArgument(let message)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertTrue(message.contains(path) && message.contains("empty"), message)
        XCTAssertEqual(error?.exitCode, 2)
    }

    func testOversizedGuestFileIsRefusedNamingTheLimit() throws {
        let system = try openKVM()
        let limit = Int(DS_MAX_GUEST_BYTES)
        let path = try temporaryFile([UInt8](repeating: 0x90, count: limit + 1), name: "big")
        defer { unlink(path) }
        let error = sessionError { _ = try GuestMachine(system: system, config: config(path)) }
        guard case .invalidArgument(let message)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertTrue(message.contains("\(limit)") && message.contains("limit"), message)
        XCTAssertEqual(error?.exitCode, 2)

        // Exactly at the limit is fine.
        let fits = try temporaryFile([UInt8](repeating: 0x90, count: limit), name: "fits")
        defer { unlink(fits) }
        XCTAssertNoThrow(try GuestMachine(system: system, config: config(fits)))
    }

    func testMissingGuestFileIsRefused() throws {
        let system = try openKVM()
        let error = sessionError { _ = try GuestMachine(system: system, config: config("/nonexistent/guest.bin")) }
        guard case .invalidArgument(let message)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertTrue(message.contains("/nonexistent/guest.bin"), message)
    }

    func testUnknownBuiltinGuestIsRefused() throws {
        let system = try openKVM()
        let config = MachineConfig(slotBytes: [2 << 20], vcpus: 1, guest: .builtin("no-such-guest"), workload: noWrites)
        let error = sessionError { _ = try GuestMachine(system: system, config: config) }
        guard case .invalidArgument(let message)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertTrue(message.contains("no-such-guest") && message.contains("workload"), message)
    }
}

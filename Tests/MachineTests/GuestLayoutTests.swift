import CKVM
import DirtyScopeCore
import DirtyScopeModel
import KVM
import KVMTestSupport
import XCTest

/// Where data memory lies (never in the APIC/IOAPIC hole below 4 GiB) and what one pass of
/// the built-in guest leaves behind: every page of the share stamped, stamps unique, in
/// order per vCPU, and no host call but the pass end when no rate is set.
final class GuestLayoutTests: XCTestCase {
    private let gib = 1 << 30, mib = 1 << 20

    /// The local APIC's and IOAPIC's default pages.
    private let apicPages: [UInt64] = [0xfec0_0000, 0xfee0_0000]

    func testHoleHoldsTheAPICAndIOAPIC() {
        for p in apicPages {
            XCTAssertTrue(DS_MMIO_HOLE_GPA <= p && p + 0x1000 <= DS_MMIO_HOLE_END, "0x\(String(p, radix: 16)) is in the hole")
        }
        XCTAssertEqual(DS_MMIO_HOLE_END, 1 << 32, "the hole ends at 4 GiB")
        XCTAssertLessThan(DS_DATA_GPA, DS_MMIO_HOLE_GPA)
    }

    func testDataSlotsSkipTheHole() {
        func check(_ bytes: [Int], _ expected: [UInt64], end: UInt64, file: StaticString = #filePath, line: UInt = #line) {
            let placed = GuestMachine.placeDataSlots(bytes)
            XCTAssertEqual(placed.addresses, expected, file: file, line: line)
            XCTAssertEqual(placed.end, end, file: file, line: line)
            for (gpa, size) in zip(placed.addresses, bytes) {
                XCTAssertEqual(gpa % UInt64(2 * mib), 0, "2 MiB aligned", file: file, line: line)
                XCTAssertTrue(gpa + UInt64(size) <= DS_MMIO_HOLE_GPA || gpa >= DS_MMIO_HOLE_END,
                              "slot at 0x\(String(gpa, radix: 16)) overlaps the hole", file: file, line: line)
            }
        }
        let g = UInt64(gib)
        // Fits below the hole exactly: [1 GiB, 3 GiB).
        check([2 * gib], [g], end: 3 * g)
        // One byte-page more and the whole slot moves above 4 GiB (the `--mem 4G` case too).
        check([2 * gib + 4096], [4 * g], end: 6 * g + UInt64(2 * mib))
        check([4 * gib], [4 * g], end: 8 * g)
        // Slots before the hole stay; the first one that would cross it moves up.
        check([gib, 2 * gib, gib], [g, 4 * g, 6 * g], end: 7 * g)
        check([gib, gib, gib], [g, 2 * g, 4 * g], end: 5 * g)
        check([4096, 4096], [g, g + UInt64(2 * mib)], end: g + UInt64(4 * mib))
    }

    /// One sweep pass over a layout whose second slot would have covered 0xfee00000 had it
    /// followed the first (data from 1 GiB, 3 GiB in all): every page is written, with no
    /// fault, and the stamps are one per page, unique, ascending along each vCPU's share.
    func testEveryPageOfALayoutCrossing4GiBIsWritten() throws {
        let system = try openKVM()
        let machine = try GuestMachine(system: system, config: MachineConfig(
            slotBytes: [gib, 2 * gib], vcpus: 2, workload: WorkloadSettings(workload: .sweep, rate: 0), lockstep: true))
        defer { machine.stop() }
        XCTAssertEqual(machine.dataSlots.map(\.guestPhysicalAddress), [DS_DATA_GPA, DS_MMIO_HOLE_END])
        machine.start()
        machine.waitForPass()
        XCTAssertNil(machine.currentFault)
        XCTAssertEqual(machine.paceCalls, 0, "no rate: no pacing calls")

        let share = machine.totalPages / 2
        var last: [UInt64] = [0, 0]
        var unstamped = 0, outOfOrder = 0, wrongVCPU = 0
        for linear in 0..<machine.totalPages {
            let (slot, page) = machine.locate(linearPage: linear)
            let stamp = machine.stamp(slot: slot, page: page)
            let vcpu = linear / share
            if stamp == 0 { unstamped += 1; continue }
            if stamp & 0xff != UInt64(vcpu) { wrongVCPU += 1 }
            if stamp <= last[vcpu] { outOfOrder += 1 }
            last[vcpu] = stamp
        }
        XCTAssertEqual(unstamped, 0, "pages the pass did not write")
        XCTAssertEqual(wrongVCPU, 0, "stamps without their writer's vCPU in the low bits")
        XCTAssertEqual(outOfOrder, 0, "stamps not ascending along a vCPU's sweep")
    }

    /// With a rate, the guest calls DS_PORT_PACE once per `batch` writes; without, never.
    func testPacingCallsOnlyWithARate() throws {
        let system = try openKVM()
        for (rate, paced) in [(UInt64(0), false), (UInt64(200_000), true)] {
            let machine = try GuestMachine(system: system, config: MachineConfig(
                slotBytes: [4 * mib], vcpus: 1, workload: WorkloadSettings(workload: .sweep, rate: rate), lockstep: true))
            defer { machine.stop() }
            machine.start()
            machine.waitForPass()
            XCTAssertNil(machine.currentFault)
            XCTAssertEqual(machine.guestWrites, UInt64(machine.totalPages), "one pass writes the share once")
            // 1024 pages at batch rate/500 = 400: three calls, the last with the pass end.
            XCTAssertEqual(machine.paceCalls, paced ? 3 : 0, "rate \(rate)")
        }
    }

    /// Waiting by spinning ends where a sleeping wait does: after every vCPU has finished
    /// the iteration's pass, never before (the writes are counted before the pass call).
    func testSpinningWaitEndsWithEveryPassDone() throws {
        let system = try openKVM()
        for wait in PassWait.allCases {
            let machine = try GuestMachine(system: system, config: MachineConfig(
                slotBytes: [8 * mib], vcpus: 2, workload: WorkloadSettings(workload: .sweep, rate: 0), lockstep: true))
            defer { machine.stop() }
            machine.start()
            for iteration in 1...4 {
                if iteration > 1 { machine.startNextIteration() }
                machine.waitForPass(wait)
                XCTAssertNil(machine.currentFault)
                XCTAssertEqual(machine.guestWrites, UInt64(iteration * machine.totalPages), "\(wait), iteration \(iteration)")
            }
        }
    }

    /// Switching workloads while the guest runs keeps its position in range: a sweep left
    /// 1024 pages into a share, then stripes of 64 (25 lanes), must not write past the share.
    func testSwitchingWorkloadsKeepsWritesInTheShare() throws {
        let system = try openKVM()
        let machine = try makeMachine(system, vcpus: 2, workload: WorkloadSettings(workload: .sweep, rate: 0))
        defer { machine.stop() }
        machine.start()
        for round in 0..<10 {
            let before = machine.guestWrites
            machine.setWorkload(WorkloadSettings(workload: round % 2 == 0 ? .stripes : .sweep, rate: 0, param0: 64))
            let deadline = Date().addingTimeInterval(10)
            while machine.guestWrites < before + 4096 && machine.currentFault == nil && Date() < deadline { usleep(1000) }
            XCTAssertNil(machine.currentFault, "round \(round)")
            XCTAssertGreaterThanOrEqual(machine.guestWrites, before + 4096, "round \(round): the guest stopped writing")
        }
        machine.pause()
        let share = machine.totalPages / 2
        var foreign = 0
        for linear in 0..<machine.totalPages {
            let (slot, page) = machine.locate(linearPage: linear)
            let stamp = machine.stamp(slot: slot, page: page)
            if stamp != 0 && Int(stamp & 0xff) != min(linear / share, 1) { foreign += 1 }
        }
        XCTAssertEqual(foreign, 0, "pages written by a vCPU they do not belong to")
    }
}

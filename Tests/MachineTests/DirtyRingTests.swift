import CKVM
import DirtyScopeCore
import DirtyScopeModel
import Foundation
import KVM
import KVMTestSupport
import XCTest

/// Dirty rings (api.rst 8.29) with the built-in guest. Rings here hold 4096 entries and
/// see a few hundred writes between harvests: on nested hosts a ring that fills can lose
/// entries, so these tests keep far from full and check that nothing else is lost.
final class DirtyRingTests: XCTestCase {
    private let ringEntries = 4096

    private func ringSystem() throws -> KVMSystem {
        let system = try openKVM()
        guard system.maxDirtyRingBytes >= ringEntries * Int(CKVM_SIZEOF_DIRTY_GFN) else {
            throw XCTSkip("this host's KVM offers no dirty ring of \(ringEntries) entries (largest \(system.maxDirtyRingBytes) bytes)")
        }
        return system
    }

    /// Harvests every ring (vCPUs parked), resets them, and returns the pages per data slot;
    /// fails unless KVM_RESET_DIRTY_RINGS resets exactly as many entries as were harvested.
    private func harvest(_ machine: GuestMachine, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws -> [DirtyBitmap] {
        var pages = emptyBitmaps(machine)
        var harvested = 0
        var fullest = 0
        var foreign: [String] = []
        for ring in machine.rings {
            let n = ring.harvest { slot, offset in
                let id = slot & 0xffff
                if let s = machine.dataSlots.firstIndex(where: { $0.id == id }), slot >> 16 == 0, Int(offset) < pages[s].pageCount {
                    pages[s][Int(offset)] = true
                } else {
                    foreign.append("slot 0x\(String(slot, radix: 16)) offset \(offset)")
                }
            }
            harvested += n
            fullest = max(fullest, n)
        }
        let reset = try machine.vm.resetDirtyRings()
        machine.ringsWereReset()
        XCTAssertEqual(reset, harvested, "\(what): KVM_RESET_DIRTY_RINGS reset \(reset) entries, \(harvested) were harvested",
                       file: file, line: line)
        XCTAssertTrue(foreign.isEmpty, "\(what): entries outside the data slots: \(foreign.prefix(4))", file: file, line: line)
        XCTAssertLessThan(fullest, ringEntries / 2, "\(what): a ring got \(fullest) of \(ringEntries) entries, near full "
                          + "(a loaded host?); the test's premise is broken", file: file, line: line)
        return pages
    }

    func testRingsReportEveryWrittenPage() throws {
        let system = try ringSystem()
        let machine = try makeMachine(system, workload: WorkloadSettings(workload: .random, rate: 1000, seed: 21), ringEntries: ringEntries)
        defer { machine.stop() }
        XCTAssertEqual(machine.rings.count, 2)
        XCTAssertEqual(machine.rings.map(\.entries), [ringEntries, ringEntries])
        XCTAssertEqual(machine.vm.dirtyRingBytes, ringEntries * Int(CKVM_SIZEOF_DIRTY_GFN))
        assertSamePages(try harvest(machine, "before the guest ran"), emptyBitmaps(machine), "before the guest ran")
        var truth = StampTruth(machine)
        machine.start()
        for i in 0..<8 {
            runBriefly(machine, micros: 40_000)
            truth.check(machine, reported: try harvest(machine, "iteration \(i)"), "iteration \(i)")
            assertSamePages(try harvest(machine, "iteration \(i), again"), emptyBitmaps(machine), "iteration \(i), second harvest")
        }
        XCTAssertGreaterThan(truth.writtenPages, 25)
        XCTAssertEqual(machine.ringFullExits, 0)
        XCTAssertEqual(machine.rings.reduce(0) { $0 + $1.harvested }, machine.rings.reduce(0) { $0 + $1.fetchIndex })
        XCTAssertNil(machine.currentFault)
    }

    /// Host-driven writes: each lands in the ring of the vCPU that made it, once per reset.
    func testRingsWithHostDrivenWrites() throws {
        let system = try ringSystem()
        let machine = try makeMachine(system, workload: noWrites, ringEntries: ringEntries)
        defer { machine.stop() }
        machine.start()
        machine.enterCommandMode()
        let slot1 = machine.dataSlots[0].pageCount
        let writes: [(vcpu: Int, page: Int)] = [(0, 0), (0, 1), (1, 64), (1, slot1), (0, machine.totalPages - 1)]
        for w in writes { XCTAssertTrue(machine.commandWrite(vcpu: w.vcpu, linearPage: w.page)) }
        machine.pause()
        var perVCPU: [[UInt64]] = [[], []]
        for ring in machine.rings {
            ring.harvest { slot, offset in
                perVCPU[ring.vcpu].append(UInt64(slot) << 32 | offset)
            }
        }
        XCTAssertEqual(try machine.vm.resetDirtyRings(), perVCPU.joined().count)
        machine.ringsWereReset()
        // KVM may push a page more than once before its entry is reset (on nested hosts
        // every store of a stamp can fault): compare runs of the same page, in order.
        let s = machine.dataSlots.map { UInt64($0.id) << 32 }
        XCTAssertEqual(collapsingRuns(perVCPU[0]), [s[0] | 0, s[0] | 1, s[1] | UInt64(machine.dataSlots[1].pageCount - 1)],
                       "vCPU 0's ring, in order")
        XCTAssertEqual(collapsingRuns(perVCPU[1]), [s[0] | 64, s[1] | 0], "vCPU 1's ring, in order")

        // Written again after the reset: reported again, by the vCPU that wrote it.
        machine.resume()
        XCTAssertTrue(machine.commandWrite(vcpu: 1, linearPage: 0))
        XCTAssertTrue(machine.commandWrite(vcpu: 1, linearPage: 0))
        machine.pause()
        var again: [[UInt64]] = [[], []]
        for ring in machine.rings { ring.harvest { slot, offset in again[ring.vcpu].append(UInt64(slot) << 32 | offset) } }
        XCTAssertEqual(again[0], [])
        XCTAssertEqual(collapsingRuns(again[1]), [s[0] | 0])
        XCTAssertEqual(try machine.vm.resetDirtyRings(), again[1].count)
        machine.ringsWereReset()
        XCTAssertNil(machine.currentFault)
    }

    func testGetDirtyLogIsRefusedWhileRingsAreOn() throws {
        let system = try ringSystem()
        let machine = try makeMachine(system, workload: noWrites, ringEntries: ringEntries)
        defer { machine.stop() }
        let error = kvmError { _ = try getDirtyLogs(machine) }
        guard case .ioctl(let call, _, let e)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertEqual(call, "KVM_GET_DIRTY_LOG")
        XCTAssertEqual(e, ENXIO)
    }
}

/// `values` with each run of equal neighbours kept once.
private func collapsingRuns(_ values: [UInt64]) -> [UInt64] {
    values.enumerated().filter { $0.offset == 0 || values[$0.offset - 1] != $0.element }.map(\.element)
}

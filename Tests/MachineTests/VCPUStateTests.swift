import DirtyScopeCore
import DirtyScopeModel
import Foundation
import KVM
import KVMTestSupport
import XCTest

/// A guest stopped on one VM goes on on another: its memory copied, its vCPUs' state
/// captured and restored. The second guest's counters advance from where the first's
/// stopped, its stamps go on from the first's, and its clock (the TSC) goes on too.
final class VCPUStateTests: XCTestCase {
    func testAGuestGoesOnOnASecondMachine() throws {
        let system = try openKVM()
        let config = MachineConfig(slotBytes: [4 << 20, 8 << 20], vcpus: 2, workload: WorkloadSettings(workload: .random, rate: 50_000))
        let source = try GuestMachine(system: system, config: config)
        defer { source.stop() }
        source.start()
        usleep(300_000)
        source.pause()
        let writes = source.guestWrites
        XCTAssertGreaterThan(writes, 0)
        let states = try source.captureVCPUStates()
        XCTAssertEqual(states.count, 2)
        XCTAssertTrue(states.allSatisfy { $0.problem == nil })
        XCTAssertTrue(states.allSatisfy { s in s.msrs.contains { $0.index == 0x10 } }, "the TSC travels with the state")

        let destination = try GuestMachine(system: system, config: config)
        defer { destination.stop() }
        func copy(_ from: GuestMemory, _ to: GuestMemory) {
            from.residentPages().forEachSetPage { memcpy(to.page($0), from.page($0), PageSize.system) }
        }
        copy(source.systemSlotMemory, destination.systemSlotMemory)
        for (a, b) in zip(source.dataSlots, destination.dataSlots) { copy(a.memory, b.memory) }
        let refused = try destination.restoreVCPUStates(states)
        // An MSR KVM refuses at its value 0 is at its reset value already (here the async page
        // fault vector, which the guest never enabled); one holding anything else would matter.
        for (state, indices) in zip(states, refused) {
            let lost = state.msrs.filter { indices.contains($0.index) && $0.value != 0 }
            XCTAssertEqual(lost, [], "MSRs KVM would not take back")
        }
        let stamps = (0..<destination.dataSlots[0].pageCount).map { destination.stamp(slot: 0, page: $0) }.max() ?? 0
        destination.start()
        let deadline = monotonicNanos() + 10_000_000_000
        while destination.guestWrites < writes + 1000 && monotonicNanos() < deadline && destination.currentFault == nil { usleep(10_000) }
        XCTAssertNil(destination.currentFault, "the guest went on without a fault")
        XCTAssertGreaterThanOrEqual(destination.guestWrites, writes + 1000, "its write counter went on from \(writes)")
        destination.pause()
        let after = (0..<destination.dataSlots[0].pageCount).map { destination.stamp(slot: 0, page: $0) }.max() ?? 0
        XCTAssertGreaterThan(after, stamps, "new stamps follow the old ones")
        XCTAssertThrowsError(try destination.restoreVCPUStates(Array(states.prefix(1)))) { XCTAssertTrue("\($0)".contains("1 vCPU states")) }
        var broken = states[0]
        broken.regs.removeLast()
        XCTAssertNotNil(broken.problem)
    }
}

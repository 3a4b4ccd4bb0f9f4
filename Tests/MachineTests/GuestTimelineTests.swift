import DirtyScopeCore
import DirtyScopeModel
import Foundation
import KVM
import KVMTestSupport
import XCTest

/// The guest's side of dirty tracking on the real /dev/kvm: the built-in guest's timeline
/// (ABI 3) read back by the host, the clock exchanges, steal time, what a stop of the
/// world costs the guest, and the untracked baseline mode.
final class GuestTimelineTests: XCTestCase {
    /// Every write the guest counts is in its timeline, exactly: the host reads the ring
    /// back round by round (lockstep passes, so the vCPUs are quiet when the counts are
    /// compared), nothing is lost, and the clock is anchored by the exchanges.
    func testTheTimelineTimesEveryWriteTheGuestCounts() throws {
        let system = try openKVM()
        let machine = try GuestMachine(system: system, config: MachineConfig(
            slotBytes: [16 << 20], vcpus: 2, workload: WorkloadSettings(workload: .sweep, rate: 0),
            lockstep: true, passWrites: 5_000))
        defer { machine.stop() }
        let harvester = try Harvester(machine: machine, mode: .legacy, clearChunk: .pages(64), method: .stamp, bandwidth: 0)
        machine.start()
        var timed: UInt64 = 0, lost: UInt64 = 0, work: UInt64 = 0
        var vcpuWrites = [UInt64](repeating: 0, count: 2)
        for _ in 0..<4 {
            machine.waitForPass()
            let round = try harvester.harvestRound()
            timed += round[.guestTimedWrites]
            lost += round[.guestTimelineLost]
            work += round[.guestWorkNanos]
            for v in round.vcpus { vcpuWrites[v.vcpu] += v.writes }
            machine.startNextIteration()
        }
        machine.waitForPass()
        machine.pause()
        let last = try harvester.harvestRound()
        timed += last[.guestTimedWrites]
        for v in last.vcpus { vcpuWrites[v.vcpu] += v.writes }
        XCTAssertEqual(lost, 0)
        XCTAssertEqual(timed, machine.guestWrites, "every write the guest counted is in a timed interval")
        XCTAssertEqual(machine.guestWrites, 5 * 2 * 5_000, "five passes of 5,000 writes on each of two vCPUs")
        XCTAssertEqual(vcpuWrites, [25_000, 25_000], "each vCPU's share")
        XCTAssertGreaterThan(work, 0, "the writes took time on the host's clock")
    }

    /// A verification point stops the vCPUs: the guest's timeline shows the stop as a
    /// stall counted under verify, no longer than the stops the host made.
    func testAStopOfTheWorldIsAGuestStall() throws {
        let system = try openKVM()
        let machine = try GuestMachine(system: system, config: MachineConfig(
            slotBytes: [64 << 20], vcpus: 1, workload: WorkloadSettings(workload: .sweep, rate: 0)))
        defer { machine.stop() }
        let harvester = try Harvester(machine: machine, mode: .manual, clearChunk: .pages(64), method: .stamp, bandwidth: 0)
        machine.start()
        // Enough work for the vCPU's usual cost per write to be known.
        var total = MetricValues()
        for _ in 0..<10 {
            usleep(20_000)
            total.add(try harvester.harvestRound().values)
        }
        XCTAssertGreaterThan(total[.guestTimedWrites], 0, "the guest logs its timeline")
        var stops: [UInt64] = []
        for _ in 0..<3 {
            let t = monotonicNanos()
            machine.pause(reason: .verification)
            usleep(30_000)
            machine.resume()
            stops.append(monotonicNanos() - t)
            usleep(20_000)
            total.add(try harvester.harvestRound().values)
        }
        for _ in 0..<3 {
            usleep(20_000)
            total.add(try harvester.harvestRound().values)
        }
        let verify = total[.guestStallVerify]
        // Each stop lands in a work interval unless it hits a host call (a pass end, a clock
        // exchange): at least one of three does; none is counted for more than it lasted.
        XCTAssertGreaterThanOrEqual(verify, 25_000_000, "a 30 ms stop of the world, seen from the guest: \(verify) ns")
        // A stall is a work interval's excess over its writes' baseline time, so beside the
        // stop it can hold at most that interval's own slowness: a chunk (about 2 ms) each.
        XCTAssertLessThanOrEqual(verify, stops.reduce(0, +) + 3 * 2_000_000)
        XCTAssertGreaterThanOrEqual(total.guestStall.maxNanos, 25_000_000)
    }

    /// Untracked mode: the data slots log nothing (GET is refused by KVM), nothing is
    /// copied, and the guest's throughput is timed. Back to legacy, the pages written
    /// meanwhile are resynchronised, so a verification point finds nothing missed.
    func testUntrackedModeTracksNothingAndComesBackWhole() throws {
        let system = try openKVM()
        let machine = try GuestMachine(system: system, config: MachineConfig(
            slotBytes: [4 << 20, 8 << 20], vcpus: 2, workload: WorkloadSettings(workload: .random, rate: 20_000),
            trackDirtyPages: false))
        defer { machine.stop() }
        let harvester = try Harvester(machine: machine, mode: .untracked, clearChunk: .pages(64), method: .stamp, bandwidth: 0)
        machine.start()
        var untracked = MetricValues()
        for _ in 0..<5 {
            usleep(30_000)
            untracked.add(try harvester.harvestRound().values)
        }
        XCTAssertEqual(untracked[.reportedPages], 0)
        XCTAssertEqual(untracked[.copiedPages], 0)
        XCTAssertEqual(untracked.getDirtyLog.count, 0)
        XCTAssertGreaterThan(untracked[.guestWrites], 0)
        XCTAssertGreaterThan(untracked.guestThroughput, 0, "the guest's throughput is timed without tracking")
        var log = DirtyBitmap(pageCount: machine.dataSlots[0].pageCount)
        let refused = kvmError { try machine.vm.getDirtyLog(slot: machine.dataSlots[0].id, into: &log) }
        XCTAssertEqual(refused?.errno, ENOENT, "a slot without KVM_MEM_LOG_DIRTY_PAGES has no log")

        machine.pause()
        let resynced = try harvester.setMode(.legacy)
        machine.resume()
        XCTAssertGreaterThan(resynced ?? 0, 0, "the pages written while untracked are copied")
        for _ in 0..<3 {
            usleep(30_000)
            _ = try harvester.harvestRound()
        }
        machine.pause()
        let verified = try harvester.harvestRound(verify: true)
        XCTAssertEqual(verified.metrics.verification?.missed, 0, "nothing written while untracked is missing after the resync")
        XCTAssertGreaterThan(verified.metrics.verification?.comparedPages ?? 0, 0, "the pages the guest wrote are compared")
    }

    /// Steal time: with twice as many busy host threads as CPUs, the vCPU's thread waits
    /// for a CPU much of the time, and the guest's timeline says so (KVM's steal-time record).
    func testStealTimeShowsHostThreadsTakingTheVCPUsCPU() throws {
        let system = try openKVM()
        let machine = try GuestMachine(system: system, config: MachineConfig(
            slotBytes: [16 << 20], vcpus: 1, workload: WorkloadSettings(workload: .sweep, rate: 0)))
        defer { machine.stop() }
        guard machine.stealTime else { throw XCTSkip("this host's KVM refused MSR_KVM_STEAL_TIME") }
        let harvester = try Harvester(machine: machine, mode: .legacy, clearChunk: .pages(64), method: .stamp, bandwidth: 0)
        let done = ManagedAtomicFlag()
        defer { done.set() }
        machine.start()
        for _ in 0..<(2 * ProcessInfo.processInfo.activeProcessorCount) {
            Thread { while !done.isSet { } }.start()
        }
        var total = MetricValues()
        for _ in 0..<15 {
            usleep(40_000)
            total.add(try harvester.harvestRound().values)
        }
        done.set()
        XCTAssertGreaterThan(total[.guestWorkNanos], 0)
        XCTAssertGreaterThan(total[.guestCPUWaitNanos], total[.guestWorkNanos] / 10,
                             "more busy threads than CPUs: the vCPU's thread waited for one a good part of the time")
        XCTAssertLessThanOrEqual(total[.guestCPUWaitNanos], total[.guestWorkNanos])
    }
}

/// A flag one thread sets and another polls.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}

import DirtyScopeCore
import DirtyScopeModel
import Foundation
import XCTest

/// Once a session stops harvesting (its round limit reached, paused) or its guest has
/// faulted, no thread spins. Each test measures the process's CPU over a second and
/// fails only far from idle: a spinning thread uses all of a core, the bound is a quarter
/// of one, which tells the two apart on a loaded machine too. The figures are printed.
final class IdleTests: XCTestCase {
    /// CPU time (user + system) this process has used, in seconds.
    private func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// Waits up to 20 s until `queue` has delivered `count` records matching `match`;
    /// returns how many it saw.
    private func delivered(_ count: Int, by queue: RecordQueue, where match: (SessionRecord) -> Bool) -> Int {
        var seen = 0
        let deadline = Date().addingTimeInterval(20)
        while seen < count && Date() < deadline {
            usleep(20_000)
            seen += queue.drain().filter(match).count
        }
        return seen
    }

    private static func isRound(_ record: SessionRecord) -> Bool { if case .round = record { true } else { false } }

    /// Measures the process's CPU over a second after a settling pause, prints it, and
    /// fails when it is a quarter of a core or more.
    private func assertIdle(_ what: String, file: StaticString = #filePath, line: UInt = #line) {
        usleep(300_000)
        let before = cpuSeconds()
        let wallBefore = Date()
        usleep(1_000_000)
        let used = cpuSeconds() - before
        let wall = Date().timeIntervalSince(wallBefore)
        print("\(what): \(String(format: "%.1f", 100 * used / wall))% of a core over \(String(format: "%.2f", wall)) s")
        XCTAssertLessThan(used, 0.25 * wall, "\(what): the process used \(used) s of CPU in \(wall) s", file: file, line: line)
    }

    /// After `--rounds 3` the harvest thread waits and the vCPUs are parked.
    func testRoundLimitReachedLeavesNoThreadSpinning() throws {
        let system = try kvmOrSkip()
        let (session, queue) = try smallSession(system) { config in
            config.roundLimit = 3
            config.verifyEvery = 0
        }
        session.start()
        defer { session.stop() }
        XCTAssertEqual(delivered(3, by: queue, where: Self.isRound), 3)
        assertIdle("after the round limit")
        XCTAssertTrue(queue.drain().allSatisfy { !Self.isRound($0) }, "no round past the limit")
    }

    /// Paused, the vCPUs are parked and the harvest thread waits for a command.
    func testPausedSessionLeavesNoThreadSpinning() throws {
        let system = try kvmOrSkip()
        let (session, queue) = try smallSession(system) { $0.verifyEvery = 0 }
        session.start()
        defer { session.stop() }
        XCTAssertGreaterThanOrEqual(delivered(2, by: queue, where: Self.isRound), 2)
        session.send(.pause)
        let paused = delivered(1, by: queue) { if case .event(let e) = $0, case .paused = e.event { true } else { false } }
        XCTAssertEqual(paused, 1)
        assertIdle("paused")
        XCTAssertTrue(queue.drain().allSatisfy { !Self.isRound($0) }, "no round while paused")
    }

    /// A guest that halts (HLT with interrupts off never wakes): its vCPU thread ends with
    /// the fault instead of re-entering KVM_RUN, and the session harvests at its interval.
    func testGuestFaultLeavesNoThreadSpinning() throws {
        let system = try kvmOrSkip()
        let guest = FileManager.default.temporaryDirectory.appendingPathComponent("dirtyscope-idle-hlt-\(UUID().uuidString).bin").path
        FileManager.default.createFile(atPath: guest, contents: Data([0xf4]))   // hlt
        defer { unlink(guest) }
        let (session, queue) = try smallSession(system) { config in
            config.vcpus = 1
            config.guest = .file(guest)
            config.verifyEvery = 0
        }
        session.start()
        defer { session.stop() }
        let faults = delivered(1, by: queue) { if case .event(let e) = $0, case .guestFault = e.event { true } else { false } }
        XCTAssertEqual(faults, 1)
        assertIdle("after a guest fault")
    }
}

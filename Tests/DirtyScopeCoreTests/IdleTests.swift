import DirtyScopeCore
import DirtyScopeModel
import Foundation
import XCTest

/// Once a session stops harvesting, no thread spins.
final class IdleTests: XCTestCase {
    /// CPU time (user + system) this process has used, in seconds.
    private func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// After `--rounds 3` the harvest thread waits and the vCPUs are parked: over a second
    /// the whole process uses a small part of a core. (A spinning thread uses all of one:
    /// the bound tells the two apart with a wide margin, on a loaded machine too.)
    func testRoundLimitReachedLeavesNoThreadSpinning() throws {
        let system = try kvmOrSkip()
        let (session, queue) = try smallSession(system) { config in
            config.roundLimit = 3
            config.verifyEvery = 0
        }
        session.start()
        defer { session.stop() }
        var rounds = 0
        let deadline = Date().addingTimeInterval(20)
        while rounds < 3 && Date() < deadline {
            usleep(20_000)
            rounds += queue.drain().filter { if case .round = $0 { true } else { false } }.count
        }
        XCTAssertEqual(rounds, 3)
        usleep(300_000)
        let before = cpuSeconds()
        let wallBefore = Date()
        usleep(1_000_000)
        let used = cpuSeconds() - before
        let wall = Date().timeIntervalSince(wallBefore)
        XCTAssertLessThan(used, 0.25 * wall, "the process used \(used) s of CPU in \(wall) s after its last round")
        XCTAssertTrue(queue.drain().allSatisfy { if case .round = $0 { false } else { true } }, "no round past the limit")
    }
}

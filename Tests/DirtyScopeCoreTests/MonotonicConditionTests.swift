@testable import DirtyScopeCore
import XCTest
import DirtyScopeModel

/// Timed waits run on CLOCK_MONOTONIC: a deadline taken from `monotonicNanos()` is never
/// reached early. (On CLOCK_REALTIME such a deadline, decades before now, would return at once.)
final class MonotonicConditionTests: XCTestCase {
    func testTimedWaitEndsAtItsMonotonicDeadline() {
        let c = MonotonicCondition()
        c.lock()
        let deadline = monotonicNanos() + 30_000_000
        let signalled = c.wait(untilNanos: deadline)  // one wait: a loop would hide an early return
        let woke = monotonicNanos()
        c.unlock()
        XCTAssertFalse(signalled, "nobody broadcast")
        XCTAssertGreaterThanOrEqual(woke, deadline, "returned before its deadline")
    }

    func testBroadcastWakesAWaiter() {
        let c = MonotonicCondition()
        let done = expectation(description: "woken")
        let flag = LockedFlag()
        Thread.detachNewThread {
            c.lock()
            while !flag.value { c.wait(nanos: 5_000_000_000) }
            c.unlock()
            done.fulfill()
        }
        usleep(20_000)
        c.lock(); flag.value = true; c.broadcast(); c.unlock()
        wait(for: [done], timeout: 10)
    }
}

private final class LockedFlag: @unchecked Sendable { var value = false }

import DirtyScopeCore
import DirtyScopeModel
import Foundation
import XCTest

/// Commands act while a round is still copying, not when it ends. Each test makes the
/// rounds long on purpose: manual mode under the hand policy re-reports every page ever
/// written, the guest sweeps its 8 MiB slot as fast as it can, and the consumer copies at
/// 1 MiB/s, so once a round has copied a MiB every later round copies at least as much
/// and takes at least a second. The assertions are about order (an event before the round
/// it arrived during) and about each round's own bytes and time, never the test's clock;
/// the waits are hang guards.
final class MidRoundCommandTests: XCTestCase {
    private static let bandwidth: UInt64 = 1 << 20

    /// A started session whose next round copies for at least a second, and its queue,
    /// drained up to the round that proves it.
    private func sessionInALongRound() throws -> (Session, Feed) {
        let system = try kvmOrSkip()
        let (session, queue) = try smallSession(system) { config in
            config.slotBytes = [8 << 20]
            config.vcpus = 1
            config.workload = WorkloadSettings(workload: .sweep, rate: 0)
            config.mode = .manual
            config.clearPolicy = .hand
            config.bandwidth = Self.bandwidth
            config.verifyEvery = 0
        }
        session.start()
        let feed = Feed(queue)
        let long = next(from: feed, timeout: 60) { record in
            if case .round(let r) = record { r[.copiedBytes] >= Self.bandwidth } else { false }
        }
        guard long != nil else {
            session.stop()
            XCTFail("no round copied a MiB within a minute")
            throw XCTSkip("no long round")
        }
        return (session, feed)
    }

    /// Records from `feed` up to and including the first that matches (nil after `timeout` seconds).
    private func next(from feed: Feed, timeout: TimeInterval, seen: inout [SessionRecord],
                      where match: (SessionRecord) -> Bool) -> SessionRecord? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            while let record = feed.take() {
                seen.append(record)
                if match(record) { return record }
            }
            usleep(5_000)
        }
        return nil
    }

    private func next(from feed: Feed, timeout: TimeInterval, where match: (SessionRecord) -> Bool) -> SessionRecord? {
        var seen: [SessionRecord] = []
        return next(from: feed, timeout: timeout, seen: &seen, where: match)
    }

    /// A queue read one record at a time: what a drain brought beyond the match waits for the next look.
    final class Feed {
        let queue: RecordQueue
        private var buffered: [SessionRecord] = []
        init(_ queue: RecordQueue) { self.queue = queue }
        func take() -> SessionRecord? {
            if buffered.isEmpty { buffered = queue.drain() }
            return buffered.isEmpty ? nil : buffered.removeFirst()
        }
    }

    private static func isRound(_ r: SessionRecord) -> Bool { if case .round = r { true } else { false } }
    private static func event(_ r: SessionRecord) -> SessionEvent? { if case .event(let e) = r { e.event } else { nil } }

    /// `p n n p` in the middle of a long copy: pause and resume both take effect before
    /// the round ends, the steps are taken while paused, and the session runs afterwards.
    func testPauseStepAndResumeActBeforeTheRoundEnds() throws {
        let (session, queue) = try sessionInALongRound()
        defer { session.stop() }
        let sent = Date()
        session.send(.pause)
        var seen: [SessionRecord] = []
        let paused = next(from: queue, timeout: 30, seen: &seen) { Self.event($0) == .paused }
        print("pause took effect \(String(format: "%.1f", Date().timeIntervalSince(sent) * 1000)) ms after it was sent")
        XCTAssertNotNil(paused)
        XCTAssertFalse(seen.contains(where: Self.isRound), "paused while the round copied, not after it")
        session.send(.step)
        session.send(.step)
        session.send(.resume)
        seen.removeAll()
        XCTAssertNotNil(next(from: queue, timeout: 30, seen: &seen) { Self.event($0) == .resumed })
        XCTAssertFalse(seen.contains(where: Self.isRound), "resumed while the same round copied")
        XCTAssertFalse(seen.contains { if case .note(let t) = Self.event($0) { t.contains("press p first") } else { false } },
                       "the steps came while paused")
        // Running again: rounds keep coming (the one in progress, then the next).
        XCTAssertNotNil(next(from: queue, timeout: 60, where: Self.isRound))
        XCTAssertNotNil(next(from: queue, timeout: 60, where: Self.isRound))
    }

    /// A new bandwidth paces the rest of the copy in progress: the round copies its bytes
    /// in less time than the old bandwidth needs for them.
    func testBandwidthChangesTheCopyInProgress() throws {
        let (session, queue) = try sessionInALongRound()
        defer { session.stop() }
        session.send(.setBandwidth(1 << 30))
        var seen: [SessionRecord] = []
        guard case .round(let round)? = next(from: queue, timeout: 60, seen: &seen, where: Self.isRound) else {
            return XCTFail("no round after the bandwidth change")
        }
        XCTAssertTrue(seen.contains { Self.event($0) == .bandwidthChanged(bytesPerSecond: 1 << 30) },
                      "the change is announced before the round it sped up")
        let atOldBandwidth = Double(round[.copiedBytes]) / Double(Self.bandwidth) * 1e9
        XCTAssertGreaterThanOrEqual(round[.copiedBytes], Self.bandwidth)
        XCTAssertLessThan(Double(round[.durationNanos]), atOldBandwidth,
                          "\(round[.copiedBytes]) bytes in \(round[.durationNanos]) ns: paced at the old bandwidth throughout")
    }

    /// What would change the round being counted (a mode switch) waits for its end, says
    /// so at once, and then happens before the next round.
    func testModeSwitchWaitsForTheRoundAndSaysSo() throws {
        let (session, queue) = try sessionInALongRound()
        defer { session.stop() }
        session.send(.setMode(.legacy))
        var seen: [SessionRecord] = []
        let note = next(from: queue, timeout: 30, seen: &seen) {
            if case .note(let t) = Self.event($0) { t.contains("waits for this round to end") } else { false }
        }
        XCTAssertNotNil(note)
        XCTAssertFalse(seen.contains(where: Self.isRound), "said while the round copied")
        seen.removeAll()
        guard case .round(let current)? = next(from: queue, timeout: 60, seen: &seen, where: Self.isRound) else {
            return XCTFail("the round did not end")
        }
        XCTAssertEqual(current.mode, .manual, "the round in progress stays manual")
        XCTAssertFalse(seen.contains { if case .modeChanged = Self.event($0) { true } else { false } })
        seen.removeAll()
        guard case .round(let following)? = next(from: queue, timeout: 60, seen: &seen, where: Self.isRound) else {
            return XCTFail("no round after the switch")
        }
        XCTAssertEqual(following.mode, .legacy)
        XCTAssertTrue(seen.contains { Self.event($0) == .modeChanged(.legacy, .pages(64)) }, "\(seen.compactMap(Self.event))")
    }
}

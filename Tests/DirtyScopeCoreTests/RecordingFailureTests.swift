import DirtyScopeCore
import DirtyScopeModel
import Foundation
import XCTest

/// A recording whose writes fail (a full disk) stops cleanly: the session says why, says
/// the recording stopped (so the UI drops its REC mark), and can start another.
final class RecordingFailureTests: XCTestCase {
    /// Accepts the first `accepted` records, then fails as write(2) does on a full disk.
    final class FullDisk: RecordSink, @unchecked Sendable {
        private let lock = NSLock()
        private var left: Int
        private(set) var finished = false
        init(accepted: Int) { left = accepted }
        func append(_ record: SessionRecord) throws {
            lock.lock(); defer { lock.unlock() }
            guard left > 0 else { throw POSIXError(.ENOSPC) }
            left -= 1
        }
        func flushIfDue() throws {}
        func finish() throws { lock.lock(); finished = true; lock.unlock() }
    }

    func testFailedWriteStopsTheRecordingAndAnotherCanStart() throws {
        let system = try kvmOrSkip()
        let (session, queue) = try smallSession(system)
        let full = FullDisk(accepted: 3)
        session.attachRecorder(full, path: "/full/disk.dsrec")
        let second = FullDisk(accepted: .max)
        session.recorderFactory = { _, _ in second }
        session.start()
        defer { session.stop() }
        var events: [SessionEvent] = []
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && !events.contains(.recordingStopped(path: "/full/disk.dsrec")) {
            usleep(20_000)
            for case .event(let e) in queue.drain() { events.append(e.event) }
        }
        XCTAssertTrue(events.contains { if case .note(let n) = $0 { n.hasPrefix("recording stopped: ") } else { false } }, "\(events)")
        XCTAssertTrue(events.contains(.recordingStopped(path: "/full/disk.dsrec")), "\(events)")
        XCTAssertTrue(full.finished)

        session.send(.startRecording(path: "/elsewhere.dsrec"))
        let started = Date().addingTimeInterval(10)
        var restarted = false
        while Date() < started && !restarted {
            usleep(20_000)
            for case .event(let e) in queue.drain() where e.event == .recordingStarted(path: "/elsewhere.dsrec") { restarted = true }
        }
        XCTAssertTrue(restarted, "a new recording could not start after the failed one")
    }
}

import DirtyScopeCore
import DirtyScopeModel
import DirtyScopeRecording
import Foundation
import KVM
import XCTest

/// A replay shows exactly what was shown live: a headless recording's rounds and events,
/// read back from the file, equal what the session handed its live subscribers.
final class FidelityTests: XCTestCase {
    func testRecordedRoundsEqualWhatTheSessionProduced() throws {
        let system = try kvmOrSkip()
        let path = NSTemporaryDirectory() + "dirtyscope-fidelity-\(getpid()).dsrec"
        defer { unlink(path) }
        var config = SessionConfig()
        config.slotBytes = [8 << 20, 4 << 20]
        config.intervalNanos = 20_000_000
        config.verifyEvery = 5
        let session = try Session(config: config, system: system)
        let live = RecordQueue()
        session.subscribe(live)
        session.attachRecorder(try RecordingWriter(path: path, info: session.info), path: path)
        session.start()
        var records: [SessionRecord] = []
        var modeSwitched = false
        let deadline = Date().addingTimeInterval(30)
        while records.filter({ if case .round = $0 { return true } else { return false } }).count < 24 && Date() < deadline {
            usleep(20_000)
            records += live.drain()
            if !modeSwitched && records.count > 8 {
                session.send(.setMode(.manual))
                session.send(.clearBlocks(slot: 0, blocks: [0, 1, 5]))
                modeSwitched = true
            }
        }
        session.stop()
        records += live.drain()

        let reader = try RecordingReader(path: path)
        XCTAssertEqual(reader.warnings, [])
        XCTAssertEqual(reader.info, session.info)
        let liveRounds = records.compactMap { if case .round(let r) = $0 { return r } else { return nil } }
        XCTAssertGreaterThanOrEqual(liveRounds.count, 24)
        XCTAssertEqual(reader.roundCount, liveRounds.count)
        var readEvents: [TimedEvent] = []
        var totals = MetricValues()
        for i in 0..<reader.roundCount {
            let entry = try reader.entry(at: i)
            XCTAssertEqual(entry.round, liveRounds[i], "round \(i) differs after the round trip")
            readEvents += entry.events
            totals.add(liveRounds[i].values)
            XCTAssertEqual(reader.totals(through: i), totals, "totals through round \(i)")
        }
        readEvents += reader.trailingEvents
        let liveEvents = records.compactMap { if case .event(let e) = $0 { return e } else { return nil } }
        XCTAssertEqual(readEvents, liveEvents)
        XCTAssertTrue(liveEvents.contains { if case .blocksCleared = $0.event { return true } else { return false } })
        XCTAssertTrue(liveRounds.contains { $0.mode == .manual } && liveRounds.contains { $0.mode == .legacy })
        XCTAssertTrue(liveRounds.contains { $0.verification != nil })
    }
}

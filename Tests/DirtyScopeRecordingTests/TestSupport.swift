import DirtyScopeModel
@testable import DirtyScopeRecording
import Foundation
import Pages

/// One instance of every `SessionEvent` case (`everyEventCoversEveryCase` keeps it complete).
let everyEvent: [SessionEvent] = [
    .modeChanged(.manual, .pages(4096)),
    .modeChanged(.ring, .wholeSlot),
    .workloadChanged(WorkloadSettings(workload: .stripes, rate: 0, param0: 16, seed: .max)),
    .intervalChanged(nanos: .max),
    .bandwidthChanged(bytesPerSecond: 123_456_789),
    .paused,
    .resumed,
    .blocksCleared(BlockClear(slot: 1, blocks: [1, 2, 3, 900], calls: 2, pagesCleared: 10, pagesCopied: 9, clearNanos: 1234)),
    .clearPolicyChanged(.afterCopy),
    .blocksCleared(BlockClear(slot: 0, blocks: [4, 5], calls: 1, pagesCleared: nil, maskPages: 128, pagesCopied: 128,
                              clearNanos: 99, mode: .legacy, policy: .auto)),
    .clearedBlocksDropped(slot: 1),
    .verified(Verification(missedPerSlot: [0, 2], comparedPages: 100)),
    .guestFault("triple fault: ünïcode ✓ \u{0}"),
    .restarted("user pressed R"),
    .ringFull(vcpu: 3),
    .recordingStarted(path: "/tmp/a b,c.dsrec"),
    .recordingStopped(path: "/tmp/a b,c.dsrec"),
    .note("hello\nworld \"quoted\""),
]

/// A fresh path in the temporary directory.
func temporaryPath(_ name: String = "test") -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("dirtyscope-\(name)-\(UUID().uuidString).dsrec").path
}

/// Rounds cycling through every shape (three rounds each), some without slot 0, so
/// keyframes, deltas, empty bitmaps and absent slots all alternate.
func mixedRounds(_ info: SessionInfo, count: Int, seed: UInt64 = 7) -> [Round] {
    var generators = SyntheticShape.allCases.enumerated().map { SyntheticRounds(shape: $1, info: info, seed: seed &+ UInt64($0)) }
    return (0..<count).map { k in
        var round = generators[(k / 3) % generators.count].nextRound()
        round.metrics.index = UInt64(k + 1)
        if k % 7 == 3 {
            round.metrics.slots.removeFirst()
            round.bitmaps.removeFirst()
        }
        return round
    }
}

/// Records in session order: an event before every `eventsEvery`-th round (cycling
/// through every case), the rounds, and two trailing events.
func sessionRecords(_ rounds: [Round], eventsEvery: Int = 4) -> [SessionRecord] {
    var records: [SessionRecord] = []
    var e = 0
    for (k, round) in rounds.enumerated() {
        if k % eventsEvery == 0 {
            records.append(.event(TimedEvent(nanos: round.startNanos &- 1, event: everyEvent[e % everyEvent.count])))
            e += 1
        }
        records.append(.round(round))
    }
    records.append(.event(TimedEvent(nanos: .max, event: .paused)))
    records.append(.event(TimedEvent(nanos: .max, event: .recordingStopped(path: "x"))))
    return records
}

/// What `entry(at:)` should return for each round, and the trailing events.
func expectedEntries(_ records: [SessionRecord]) -> (entries: [(events: [TimedEvent], round: Round)], trailing: [TimedEvent]) {
    var entries: [(events: [TimedEvent], round: Round)] = []
    var pending: [TimedEvent] = []
    for record in records {
        switch record {
        case .event(let e): pending.append(e)
        case .round(let r):
            entries.append((pending, r))
            pending = []
        }
    }
    return (entries, pending)
}

/// Writes `records` to a new file and returns its path.
@discardableResult
func writeRecording(_ info: SessionInfo, _ records: [SessionRecord], path: String = temporaryPath(),
                    keyframeInterval: Int = 8, finish: Bool = true) throws -> String {
    let writer = try RecordingWriter(path: path, info: info, keyframeInterval: keyframeInterval)
    for record in records { try writer.append(record) }
    if finish { try writer.finish() }
    return path
}

func fileBytes(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

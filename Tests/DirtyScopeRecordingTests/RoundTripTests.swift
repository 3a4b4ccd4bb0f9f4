import DirtyScopeModel
@testable import DirtyScopeRecording
import Foundation
import Pages
import Testing

@Suite struct RoundTripTests {
    @Test(arguments: SyntheticShape.allCases)
    func shapeReadsBackEqual(_ shape: SyntheticShape) throws {
        let info = SyntheticRounds.sessionInfo(slots: 2, pagesPerSlot: 20_000)
        var generator = SyntheticRounds(shape: shape, info: info, seed: 3)
        let rounds = (0..<40).map { _ in generator.nextRound() }
        let records = sessionRecords(rounds)
        let path = try writeRecording(info, records)
        defer { unlink(path) }
        let reader = try RecordingReader(path: path)
        let expected = expectedEntries(records)
        #expect(reader.info == info)
        #expect(reader.warnings.isEmpty)
        #expect(reader.isFinished)
        #expect(reader.roundCount == rounds.count)
        for (i, e) in expected.entries.enumerated() {
            let got = try reader.entry(at: i)
            #expect(got.round == e.round, "round \(i)")
            #expect(got.events == e.events, "events before round \(i)")
        }
        #expect(reader.trailingEvents == expected.trailing)
    }

    @Test func mixedShapesSeekAnywhere() throws {
        // 1000 pages: the last word of each slot is partial.
        let info = SyntheticRounds.sessionInfo(slots: 3, pagesPerSlot: 1000)
        let rounds = mixedRounds(info, count: 100)
        let records = sessionRecords(rounds, eventsEvery: 3)
        let path = try writeRecording(info, records, keyframeInterval: 8)
        defer { unlink(path) }
        let reader = try RecordingReader(path: path)
        #expect(reader.warnings.isEmpty)
        #expect(reader.roundCount == rounds.count)
        let keyframes = reader.index.rounds.filter(\.keyframe).count
        #expect(keyframes >= rounds.count / 8 && keyframes < rounds.count, "keyframes \(keyframes)")

        let expected = expectedEntries(records).entries
        var random = SplitMix64(seed: 11)
        let order = Array((0..<rounds.count).reversed()) + [0, 99, 50, 7, 8, 9, 63, 64, 65, 15, 16, 17, 3, 2, 1]
            + (0..<200).map { _ in Int(random.next() % UInt64(rounds.count)) }
        for i in order {
            let got = try reader.entry(at: i)
            #expect(got.round == expected[i].round, "round \(i)")
            #expect(got.events == expected[i].events, "events before round \(i)")
        }
    }

    @Test func keyframeEveryIntervalAndWhenDeltaIsLarger() throws {
        let info = SyntheticRounds.sessionInfo(slots: 1, pagesPerSlot: 50_000)
        var stripes = SyntheticRounds(shape: .stripes, info: info, seed: 1)
        var sweep = SyntheticRounds(shape: .sweep, info: info, seed: 1)
        let rounds = (0..<20).map { _ in stripes.nextRound() } + (0..<5).map { _ in sweep.nextRound() }
        let path = try writeRecording(info, rounds.map { .round($0) }, keyframeInterval: 8)
        defer { unlink(path) }
        let reader = try RecordingReader(path: path)
        let kinds = reader.index.rounds.map(\.keyframe)
        // Stripes: a keyframe every 8 rounds (they barely change). Sweep: its run moves,
        // so its delta (old run + new run) is larger than the run itself: all keyframes.
        #expect(kinds[0..<20].enumerated().allSatisfy { $0.element == ($0.offset % 8 == 0) })
        #expect(kinds[20...].allSatisfy { $0 })
    }

    @Test func totalsAndMetricsMatchTheRounds() throws {
        let info = SyntheticRounds.sessionInfo(slots: 2, pagesPerSlot: 3000)
        let rounds = mixedRounds(info, count: 150)
        let path = try writeRecording(info, rounds.map { .round($0) })
        defer { unlink(path) }
        let reader = try RecordingReader(path: path)
        #expect(reader.totals(through: -1) == MetricValues())
        var totals = MetricValues()
        for (i, round) in rounds.enumerated() {
            totals.add(round.values)
            #expect(try reader.metrics(at: i) == round.metrics)
            if i % 13 == 0 || i == 63 || i == 64 || i == 127 || i == 128 || i == rounds.count - 1 {
                #expect(reader.totals(through: i) == totals, "totals through \(i)")
            }
        }
        #expect(reader.totals(through: 10_000) == totals)
    }

    /// The largest values a round may hold: unbounded times and counters, and counts at
    /// the limits a real session has (`SessionLimits`).
    @Test func extremeValuesRoundTrip() throws {
        let info = SyntheticRounds.sessionInfo(slots: 2, pagesPerSlot: 130)
        var reported = DirtyBitmap(pageCount: 130)
        reported.setAll()
        var latency = LatencyStats()
        for nanos: UInt64 in [0, 1, 2, 1 << 62, .max] { latency.record(nanos) }
        var emptyHistogram = LatencyStats()
        emptyHistogram.count = 5
        var m = RoundMetrics(mode: .ring, clearChunk: .pages(SessionLimits.maxTotalPages))
        m.index = .max
        m.startNanos = .max
        for metric in Metric.roundFields where !RoundField.late.contains(metric) { m[metric] = .max }
        for metric in RoundField.late { m[metric] = 260 }  // page counts: at most the header's pages
        m.getDirtyLog = latency
        m.clearDirtyLog = emptyHistogram
        m.origins = FalsePositiveOrigins(byWindow: (0..<FalsePositiveOrigins.bucketCount).map { _ in 130 }, neverCleared: 260)
        m.slots = [SlotMetrics(slot: 1, [.initialPages: 130, .copiedPages: 130, .missedPages: 0]), SlotMetrics(slot: 0)]
        m.verification = Verification(missedPerSlot: [0, 0, 5], comparedPages: SessionLimits.maxTotalPages)
        let round = Round(counting: m, bitmaps: [SlotBitmaps(reported: reported, falsePositives: reported), SlotBitmaps(pages: 130)])
        #expect(round.count(.reportedPages) == 130 && round.count(.falsePositivePages) == 130)
        let path = try writeRecording(info, [.round(round), .event(TimedEvent(nanos: .max, event: .intervalChanged(nanos: .max)))])
        defer { unlink(path) }
        let reader = try RecordingReader(path: path)
        #expect(try reader.entry(at: 0).round == round)
        #expect(reader.trailingEvents == [TimedEvent(nanos: .max, event: .intervalChanged(nanos: .max))])
    }

    /// The guest's cost and the untracked mode: every field back as written, in each mode.
    @Test func guestCostRoundTrips() throws {
        let info = SyntheticRounds.sessionInfo(slots: 1, pagesPerSlot: 640)
        var rounds: [Round] = []
        for (k, (mode, policy)) in [(HarvestMode.untracked, ClearPolicy.auto), (.legacy, .auto), (.manual, .hand), (.ring, .auto),
                                    (.untracked, .hand), (.manual, .auto)].enumerated() {
            var m = RoundMetrics(mode: mode, clearChunk: k % 2 == 0 ? .wholeSlot : .pages(4096), clearPolicy: policy)
            m.index = UInt64(k + 1)
            m.slots = [SlotMetrics(slot: 0)]
            for nanos: UInt64 in [30_000, 2_000_000, UInt64(k) << 40] { m.guestStall.record(nanos) }
            for (i, cause) in GuestStallCause.allCases.enumerated() { m[cause.metric] = UInt64(1000 * (i + 1) + k) }
            m[.guestStallCPUWait] = 77
            m[.guestWorkNanos] = .max
            m[.guestTimedWrites] = 123_456
            m[.guestCPUWaitNanos] = 9
            m[.guestTimelineLost] = UInt64(k)
            m.vcpus = [VCPUCost(vcpu: 63, writes: 5, workNanos: 6, stallNanos: 7, cpuWaitNanos: 8, mainCause: GuestStallCause.allCases[k]),
                       VCPUCost(vcpu: 0, writes: .max)]
            rounds.append(Round(counting: m, bitmaps: [SlotBitmaps(pages: 640)]))
        }
        let path = try writeRecording(info, rounds.map { .round($0) })
        defer { unlink(path) }
        let reader = try RecordingReader(path: path)
        #expect(reader.warnings.isEmpty)
        for (i, round) in rounds.enumerated() {
            #expect(try reader.entry(at: i).round == round, "round \(i) in \(round.metrics.setting)")
        }
        #expect(try reader.metrics(at: 0).setting.description == "untracked")
        #expect(try reader.metrics(at: 4).clearPolicy == .auto, "no clear policy outside manual mode")
    }

    @Test func everyEventCoversEveryCase() {
        #expect(Set(everyEvent.map { RecordingSummary.kind(of: $0) }).count == 16)
    }
}

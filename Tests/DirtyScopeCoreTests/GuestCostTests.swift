@testable import DirtyScopeCore
import DirtyScopeModel
import XCTest

/// The guest's side of dirty tracking, on constructed timelines: the ring reader, the
/// clock alignment, the span sums and the stall attribution. No KVM: every input is built
/// here, so each expected number is worked out by hand.
final class GuestCostTests: XCTestCase {
    // MARK: The timeline ring

    /// A ring of `capacity` records in host memory, written as the guest writes it.
    private final class FakeRing {
        let capacity: Int
        let memory: UnsafeMutableRawPointer
        var head: UInt64 = 0

        init(capacity: Int) {
            self.capacity = capacity
            memory = .allocate(byteCount: capacity * 32, alignment: 8)
            memory.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * 32)
        }
        deinit { memory.deallocate() }

        func write(tsc: UInt64, writes: UInt32, kind: UInt32 = 1, seq: UInt64? = nil) {
            // struct ds_tick: tsc, steal, writes, kind, seq at 0, 8, 16, 20, 24 (ABITests pins them).
            let slot = memory + Int(head % UInt64(capacity)) * 32
            slot.storeBytes(of: tsc, toByteOffset: 0, as: UInt64.self)
            slot.storeBytes(of: UInt64(0), toByteOffset: 8, as: UInt64.self)
            slot.storeBytes(of: writes, toByteOffset: 16, as: UInt32.self)
            slot.storeBytes(of: kind, toByteOffset: 20, as: UInt32.self)
            slot.storeBytes(of: seq ?? head, toByteOffset: 24, as: UInt64.self)
            head += 1
        }

        func reader(tail: UInt64 = 0) -> TimelineRing { TimelineRing(records: UnsafeRawPointer(memory), capacity: UInt64(capacity), tail: tail) }
    }

    private func read(_ ring: inout TimelineRing, _ fake: FakeRing) -> [TimelineRecord?] {
        var out: [TimelineRecord?] = []
        ring.read(head: { fake.head }) { out.append($0) }
        return out
    }

    func testRingReadsEachRecordOnceInOrder() {
        let fake = FakeRing(capacity: 8)
        var ring = fake.reader()
        for i in 0..<5 { fake.write(tsc: UInt64(100 + i), writes: UInt32(i)) }
        XCTAssertEqual(read(&ring, fake).map { $0?.tsc }, [100, 101, 102, 103, 104])
        XCTAssertEqual(read(&ring, fake).count, 0, "nothing new: nothing read")
        fake.write(tsc: 105, writes: 9)
        XCTAssertEqual(read(&ring, fake).map { $0?.writes }, [9])
        XCTAssertEqual(ring.lost, 0)
        XCTAssertEqual(ring.invalid, 0)
    }

    func testRingCountsOverwrittenRecordsAsLostAndBreaksTheRun() {
        let fake = FakeRing(capacity: 8)
        var ring = fake.reader()
        for i in 0..<13 { fake.write(tsc: UInt64(i), writes: 1) }
        let got = read(&ring, fake)
        // 13 written into 8 slots: the first 5 were overwritten, and record 5 sits in the
        // slot the guest writes next (record 13), so it cannot be trusted either.
        XCTAssertEqual(ring.lost, 6)
        XCTAssertNil(got.first!, "the run breaks where records are missing")
        XCTAssertEqual(got.dropFirst().map { $0?.tsc }, [6, 7, 8, 9, 10, 11, 12])
    }

    func testRingRefusesRecordsWhoseIndexDoesNotMatch() {
        let fake = FakeRing(capacity: 8)
        var ring = fake.reader()
        fake.write(tsc: 1, writes: 1)
        fake.write(tsc: 2, writes: 1, seq: 77)    // a scribbler
        fake.write(tsc: 3, writes: 1, kind: 9)    // an unknown kind
        fake.write(tsc: 4, writes: 1)
        let got = read(&ring, fake)
        XCTAssertEqual(ring.invalid, 2)
        XCTAssertEqual(got.map { $0?.tsc }, [1, nil, 4], "the bad records break the run and are not used")
    }

    func testRingSurvivesAHeadThatStepsBackOrJumps() {
        let fake = FakeRing(capacity: 8)
        var ring = fake.reader()
        for i in 0..<3 { fake.write(tsc: UInt64(i), writes: 1) }
        _ = read(&ring, fake)
        fake.head = 1   // stepped back
        XCTAssertEqual(read(&ring, fake).map { $0 == nil }, [true])
        XCTAssertEqual(ring.invalid, 1)
        fake.head = .max   // a head no guest could reach: lost counted, nothing read out of the ring
        var count = 0
        ring.read(head: { fake.head }) { _ in count += 1 }
        XCTAssertLessThanOrEqual(count, 1 + 8, "a read copies at most the ring")
    }

    // MARK: The clock

    /// A guest TSC at 2.5 GHz, 1 ms of host time ahead of its origin: ns = 1e6 + tsc / 2.5.
    private func host(_ tsc: UInt64) -> UInt64 { 1_000_000 + tsc * 2 / 5 }

    func testClockMapsGuestTimeWithinHalfTheRoundTrip() {
        var clock = GuestClock(ticksPerSecond: 2_500_000_000)
        XCTAssertFalse(clock.isCalibrated)
        XCTAssertEqual(clock.hostNanos(tsc: 1_000), 0, "nothing is placed before the first exchange")
        // The host read its clock 10 µs into a 50 µs round trip (125,000 ticks).
        let before: UInt64 = 10_000_000
        clock.add(ClockSample(before: before, host: host(before) + 10_000, after: before + 125_000))
        XCTAssertEqual(clock.alignmentBound, 25_000)
        for tsc: UInt64 in [before, before + 62_500, 2_000_000_000] {
            let error = Int64(bitPattern: clock.hostNanos(tsc: tsc)) - Int64(bitPattern: host(tsc))
            XCTAssertLessThanOrEqual(abs(error), 25_000 + 1, "tsc \(tsc): off by \(error) ns, more than half the round trip")
        }
    }

    func testClockMeasuresItsPredictionErrorAndLearnsTheRate() {
        // KVM says 2.5 GHz, the clock really runs 0.1% faster: the exchanges find it.
        var clock = GuestClock(ticksPerSecond: 2_500_000_000)
        let real: (UInt64) -> UInt64 = { UInt64(Double($0) / 2.5025) }
        let rtt: UInt64 = 2_500   // 1 µs
        clock.add(ClockSample(before: 0, host: real(rtt / 2), after: rtt))
        XCTAssertNil(clock.worstPredictionError)
        let later: UInt64 = 5_005_000_000   // 2 s later
        clock.add(ClockSample(before: later, host: real(later + rtt / 2), after: later + rtt))
        // Predicted with KVM's rate, 2 s on: 0.1% of 2 s off.
        let predicted = clock.lastPredictionError!
        XCTAssertGreaterThan(predicted, 1_500_000)
        XCTAssertLessThan(predicted, 2_500_000)
        // Since then the rate comes from the exchanges.
        let t: UInt64 = 10_010_000_000
        XCTAssertLessThan(abs(Int64(bitPattern: clock.hostNanos(tsc: t)) - Int64(bitPattern: real(t))), 2_000)
        clock.add(ClockSample(before: t, host: real(t + rtt / 2), after: t + rtt))
        XCTAssertLessThan(clock.lastPredictionError!, 2_000)
    }

    func testClockRefusesImpossibleExchanges() {
        var clock = GuestClock(ticksPerSecond: 1_000_000_000)
        XCTAssertFalse(clock.add(ClockSample(before: 100, host: 5, after: 50)), "after before before")
        XCTAssertFalse(clock.add(ClockSample(before: 100, host: 5, after: 100)))
        XCTAssertTrue(clock.add(ClockSample(before: 0, host: 1_000, after: 10)))
        // A second exchange 2 s on that says the clock runs at half the rate KVM gave.
        XCTAssertFalse(clock.add(ClockSample(before: 1_000_000_000, host: 4_000_001_000, after: 1_000_000_010)))
        XCTAssertEqual(clock.refused, 3)
        XCTAssertGreaterThan(clock.hostNanos(tsc: .max), 0, "a TSC at its limit maps without trapping")
        XCTAssertEqual(clock.hostNanos(tsc: 0), 995)
    }

    // MARK: Host spans

    func testSpanOverlapMatchesAStepByStepSum() {
        var list = SpanList()
        var spans: [(UInt64, UInt64)] = []
        var t: UInt64 = 0
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            t += UInt64.random(in: 0...50, using: &rng)
            let end = t + UInt64.random(in: 1...40, using: &rng)
            list.append(t, end)
            spans.append((t, end))
            t = end
        }
        for _ in 0..<2000 {
            let a = UInt64.random(in: 0...t, using: &rng), b = a + UInt64.random(in: 0...400, using: &rng)
            let expected = spans.reduce(UInt64(0)) { sum, s in sum + (min(s.1, b) > max(s.0, a) ? min(s.1, b) - max(s.0, a) : 0) }
            XCTAssertEqual(list.overlap(a, b), expected, "[\(a), \(b))")
        }
        list.drop(endingBefore: t / 2)
        let a = t / 2, b = t
        let expected = spans.reduce(UInt64(0)) { sum, s in sum + (min(s.1, b) > max(s.0, a) ? min(s.1, b) - max(s.0, a) : 0) }
        XCTAssertEqual(list.overlap(a, b), expected, "after dropping the spans that ended before \(a)")
    }

    func testOverlappingSpansAreCutNotCountedTwice() {
        var list = SpanList()
        list.append(0, 100)
        list.append(50, 150)   // starts before the last ended: cut to [100, 150)
        XCTAssertEqual(list.overlap(0, 200), 150)
        XCTAssertEqual(list.totalNanos, 150)
    }

    // MARK: Attribution

    /// An analyzer whose vCPU 0 writes 1,000 pages in 1 ms (1 µs a page): its baseline is
    /// learned from eight clean intervals ending at `start`.
    private func trained(start: UInt64 = 10_000_000) -> (GuestCostAnalyzer, GuestCost) {
        let a = GuestCostAnalyzer(vcpus: 1)
        var cost = GuestCost(vcpus: 1)
        var t = start - 8 * 1_000_000
        for _ in 0..<8 {
            a.interval(vcpu: 0, from: t, to: t + 1_000_000, writes: 1_000, steal: 0, into: &cost)
            t += 1_000_000
        }
        XCTAssertEqual(a.baseline(vcpu: 0), 1_000)
        XCTAssertEqual(cost.stalls.count, 0, "clean intervals are no stalls")
        return (a, GuestCost(vcpus: 1))
    }

    func testAStallInsideAGetIsTheGets() {
        var (a, cost) = trained()
        // GET from 10.2 to 10.7 ms; the interval 10 to 11.5 ms did 1 ms of work: 0.5 ms stalled.
        a.record(.get, start: 10_200_000, end: 10_700_000)
        a.interval(vcpu: 0, from: 10_000_000, to: 11_500_000, writes: 1_000, steal: 0, into: &cost)
        XCTAssertEqual(cost.stalls.count, 1)
        XCTAssertEqual(cost.stalls.totalNanos, 500_000)
        XCTAssertEqual(cost.byCause[GuestStallCause.get.rawValue], 500_000)
        XCTAssertEqual(cost.byCause[GuestStallCause.other.rawValue], 0)
        XCTAssertEqual(cost.vcpus[0].stallNanos, 500_000)
        XCTAssertEqual(cost.workNanos, 1_500_000)
        XCTAssertEqual(cost.timedWrites, 1_000)
    }

    func testAStallOutsideEverySpanIsNobodys() {
        var (a, cost) = trained()
        a.record(.get, start: 20_000_000, end: 21_000_000)   // later: no overlap
        a.interval(vcpu: 0, from: 10_000_000, to: 11_500_000, writes: 1_000, steal: 0, into: &cost)
        XCTAssertEqual(cost.byCause[GuestStallCause.other.rawValue], 500_000)
        XCTAssertEqual(cost.byCause[GuestStallCause.get.rawValue], 0)
    }

    func testAStallLongerThanItsSpanGivesTheRestToOther() {
        var (a, cost) = trained()
        // A 0.2 ms CLEAR inside a 0.5 ms stall: 0.2 ms to CLEAR, 0.3 ms to nothing.
        a.record(.clear, start: 10_100_000, end: 10_300_000)
        a.interval(vcpu: 0, from: 10_000_000, to: 11_500_000, writes: 1_000, steal: 0, into: &cost)
        XCTAssertEqual(cost.byCause[GuestStallCause.clear.rawValue], 200_000)
        XCTAssertEqual(cost.byCause[GuestStallCause.other.rawValue], 300_000)
    }

    func testAStallBesideTwoSpansIsSharedByOverlap() {
        var (a, cost) = trained()
        // 0.6 ms of copy and 0.2 ms of GET beside a 0.4 ms stall: 0.3 and 0.1.
        a.record(.get, start: 10_000_000, end: 10_200_000)
        a.record(.copy, start: 10_200_000, end: 10_800_000)
        a.interval(vcpu: 0, from: 10_000_000, to: 11_400_000, writes: 1_000, steal: 0, into: &cost)
        XCTAssertEqual(cost.stalls.totalNanos, 400_000)
        XCTAssertEqual(cost.byCause[GuestStallCause.get.rawValue], 100_000)
        XCTAssertEqual(cost.byCause[GuestStallCause.copy.rawValue], 300_000)
        XCTAssertEqual(cost.vcpus[0].stallNanos, 400_000)
    }

    func testStealTimeIsTheStallsCPUWaitAndKeepsTheBaseline() {
        var (a, cost) = trained()
        // 0.5 ms over, 0.3 ms of it waiting for a CPU.
        a.interval(vcpu: 0, from: 10_000_000, to: 11_500_000, writes: 1_000, steal: 300_000, into: &cost)
        XCTAssertEqual(cost.stalls.totalNanos, 500_000)
        XCTAssertEqual(cost.stallCPUWaitNanos, 300_000)
        XCTAssertEqual(cost.cpuWaitNanos, 300_000)
        // The baseline learns from time less steal: 1.2 µs a write, not 1.5.
        let b = a.baseline(vcpu: 0)!
        XCTAssertEqual(b, 1_000, accuracy: 1, "one sample does not move a median of nine")
    }

    func testSmallOverrunsAreNoStalls() {
        var (a, cost) = trained()
        // 20% over a 1 ms chunk: under the quarter the rule allows.
        a.interval(vcpu: 0, from: 10_000_000, to: 11_200_000, writes: 1_000, steal: 0, into: &cost)
        XCTAssertEqual(cost.stalls.count, 0)
        XCTAssertEqual(cost.workNanos, 1_200_000, "the time still counts as work")
        // A small chunk's loop overhead: 5 writes in 18 µs at 1 µs a write is under 16 writes' worth.
        a.interval(vcpu: 0, from: 11_200_000, to: 11_218_000, writes: 5, steal: 0, into: &cost)
        XCTAssertEqual(cost.stalls.count, 0)
    }

    func testNoStallIsJudgedBeforeTheBaselineIsKnown() {
        let a = GuestCostAnalyzer(vcpus: 1)
        var cost = GuestCost(vcpus: 1)
        a.interval(vcpu: 0, from: 0, to: 50_000_000, writes: 1_000, steal: 0, into: &cost)
        XCTAssertEqual(cost.stalls.count, 0)
        XCTAssertNil(a.baseline(vcpu: 0))
    }

    func testParksAreStallsOrLeftOut() {
        var (a, cost) = trained()
        // A verification point held the vCPU 2 ms; the user paused it 3 ms.
        a.park(Park(vcpu: 0, start: 10_500_000, end: 12_500_000, reason: .verification))
        a.interval(vcpu: 0, from: 10_000_000, to: 13_000_000, writes: 1_000, steal: 0, into: &cost)
        XCTAssertEqual(cost.byCause[GuestStallCause.verify.rawValue], 2_000_000)
        XCTAssertEqual(cost.stalls.count, 1)
        a.park(Park(vcpu: 0, start: 13_500_000, end: 16_500_000, reason: .paused))
        a.interval(vcpu: 0, from: 13_000_000, to: 17_000_000, writes: 1_000, steal: 0, into: &cost)
        XCTAssertEqual(cost.stalls.count, 1, "a pause the user asked for is no stall")
        XCTAssertEqual(cost.workNanos, 3_000_000 + 1_000_000, "and not work either")
        a.park(Park(vcpu: 0, start: 17_100_000, end: 17_600_000, reason: .ringFull))
        a.interval(vcpu: 0, from: 17_000_000, to: 18_500_000, writes: 1_000, steal: 0, into: &cost)
        XCTAssertEqual(cost.byCause[GuestStallCause.ring.rawValue], 500_000)
    }

    func testRecordsBecomeIntervalsOnTheHostClock() {
        let a = GuestCostAnalyzer(vcpus: 1)
        var clock = GuestClock(ticksPerSecond: 1_000_000_000)   // 1 tick = 1 ns
        clock.add(ClockSample(before: 0, host: 5_000, after: 10_000))
        var cost = GuestCost(vcpus: 1)
        // start, work, a host call (resume), work: two intervals of 1,000 writes.
        let records: [TimelineRecord?] = [
            TimelineRecord(tsc: 10_000, steal: 0, writes: 0, kind: .start),
            TimelineRecord(tsc: 1_010_000, steal: 0, writes: 1_000, kind: .work),
            TimelineRecord(tsc: 9_010_000, steal: 0, writes: 0, kind: .resume),
            TimelineRecord(tsc: 10_010_000, steal: 0, writes: 1_000, kind: .work),
            nil,
            TimelineRecord(tsc: 20_000_000, steal: 0, writes: 1_000, kind: .work),   // after a break: no interval
        ]
        for r in records { a.add(vcpu: 0, r, clock: clock, into: &cost) }
        XCTAssertEqual(cost.timedWrites, 2_000)
        XCTAssertEqual(cost.workNanos, 2_000_000, "the 8 ms in the host call are not work")
    }

    func testGuestCostWritesEveryMetric() {
        var cost = GuestCost(vcpus: 2)
        cost.stalls.record(700)
        cost.stall(vcpu: 1, cause: .clear, 500)
        cost.stall(vcpu: 1, cause: .get, 200)
        cost.stallCPUWaitNanos = 100
        cost.workNanos = 9_000
        cost.timedWrites = 90
        cost.cpuWaitNanos = 300
        cost.lostRecords = 4
        cost.vcpus[1].workNanos = 9_000
        var m = RoundMetrics(mode: .legacy, clearChunk: .pages(64))
        cost.write(into: &m)
        XCTAssertEqual(m[.guestStallClear], 500)
        XCTAssertEqual(m[.guestStallGet], 200)
        XCTAssertEqual(m[.guestStallCPUWait], 100)
        XCTAssertEqual(m[.guestWorkNanos], 9_000)
        XCTAssertEqual(m[.guestTimedWrites], 90)
        XCTAssertEqual(m[.guestCPUWaitNanos], 300)
        XCTAssertEqual(m[.guestTimelineLost], 4)
        XCTAssertEqual(m.guestStall.totalNanos, 700)
        XCTAssertEqual(m.vcpus.map(\.vcpu), [1], "a vCPU with nothing timed is left out")
        XCTAssertEqual(m.vcpus.first?.mainCause, .clear)
        XCTAssertEqual(m.values.guestThroughput, 10_000_000, accuracy: 0.001)
    }
}

@testable import DirtyScopeCore
import DirtyScopeModel
import KVM
import Pages
import XCTest

/// `bench --suite guest` and the untracked mode in a live session, on the real /dev/kvm.
/// They check what the figures are made of (every pass timed, every mode compared with
/// its untracked run, nothing missed), never how large a timing is.
final class GuestCostBenchTests: XCTestCase {
    func testEveryRunIsTimedAndComparedWithItsUntrackedRun() throws {
        let system = try kvmOrSkip()
        var config = GuestCostConfig()
        config.guestBytes = [16 << 20]
        config.vcpus = [1, 2]
        config.modes = [.untracked, .legacy, .manual]
        config.clearChunks = [.pages(64), .wholeSlot]
        config.passes = 2
        config.intervalNanos = 20_000_000
        var lines: [String] = []
        let results = try GuestCostBench.run(config, system: system) { lines.append($0) }
        XCTAssertEqual(results.map(\.label), ["untracked", "legacy", "manual/64", "manual/slot", "untracked", "legacy", "manual/64", "manual/slot"])
        XCTAssertEqual(lines.count, results.count, "a progress line per run")
        for r in results {
            XCTAssertNil(r.failure, "\(r.label): \(r.failure ?? "")")
            XCTAssertEqual(r.passNanosEach.count, r.passes * r.vcpus, "\(r.label), \(r.vcpus) vCPUs: every measured pass of every vCPU")
            XCTAssertGreaterThan(r.rounds, 0)
            XCTAssertEqual(r.missedPages, 0, "\(r.label): nothing missed at the end")
            XCTAssertEqual(r.stallNanosEach.count, Int(r.metrics.guestStall.count), "each stall kept for the exact percentiles")
            XCTAssertEqual(r.stallNanosEach.reduce(0, +), r.metrics.guestStall.totalNanos)
            XCTAssertGreaterThan(r.metrics[.guestTimedWrites], 0, "\(r.label): the guest's timeline timed its writes")
            XCTAssertNotNil(r.clockAlignmentBoundNanos, "the clock was anchored")
            XCTAssertNotNil(r.passVersusUntracked)
            XCTAssertNotNil(r.throughputVersusUntracked)
            if r.mode == .untracked {
                XCTAssertEqual(r.passVersusUntracked, 1)
                XCTAssertEqual(r.metrics[.reportedPages], 0, "untracked reports nothing")
                XCTAssertEqual(r.metrics.getDirtyLog.count, 0)
            } else {
                XCTAssertGreaterThan(r.metrics[.reportedPages], 0, "\(r.label) tracks")
            }
            if r.mode == .manual { XCTAssertGreaterThan(r.metrics.clearDirtyLog.count, 0) }
        }
        let text = guestCostTables(results, config: config, load: "0.00 0.00 0.00")
        XCTAssertTrue(text.contains("16 MiB guest, 1 vCPU\n"), text)
        XCTAssertTrue(text.contains("16 MiB guest, 2 vCPUs\n"), text)
        XCTAssertTrue(text.contains("pass time beyond untracked"), text)
    }

    /// The clock probe guest: five timed loop sets and every clock exchange asked for.
    func testTheClockProbeTimesItsLoopsAndExchanges() throws {
        let result = try ClockProbe.run(system: try kvmOrSkip(), exchanges: 10)
        XCTAssertEqual(result.loops.count, 5)
        for l in result.loops {
            XCTAssertGreaterThan(l.empty, 0)
            XCTAssertGreaterThan(l.add, 0)
            XCTAssertGreaterThan(l.rdtsc, 0)
        }
        XCTAssertEqual(result.roundTrips.count, 10)
        XCTAssertTrue(result.roundTrips.allSatisfy { $0 > 0 })
        XCTAssertTrue(result.text.contains("one rdtsc costs"), result.text)
        XCTAssertNil(ClockProbe.parse("probe loops=0 empty=1 add=2 rdtsc=3"), "no loops, no figures")
        XCTAssertNil(ClockProbe.parse("guest: probe loops=10 empty=1"))
        XCTAssertEqual(ClockProbe.parse("probe loops=10 empty=1 add=2 rdtsc=3")?.rdtsc, 3)
    }

    func testTheGuestSuiteRefusesWhatItCannotMeasure() throws {
        var config = GuestCostConfig()
        config.workload = WorkloadSettings(workload: .idle, rate: 0)
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("idle"), "\($0)") }
        config = GuestCostConfig()
        config.vcpus = [0]
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("0 vCPUs"), "\($0)") }
        config = GuestCostConfig()
        config.guestBytes = [12345]
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("12345"), "\($0)") }
    }

    /// A live session switched to untracked and back: the switch back resynchronises the
    /// pages written meanwhile (said in a note), and the next verification finds none missed.
    func testASessionGoesUntrackedAndBackWithNothingMissed() throws {
        let system = try kvmOrSkip()
        let (session, queue) = try smallSession(system) { c in
            c.workload = WorkloadSettings(workload: .random, rate: 20_000)
            c.verifyEvery = 0
            c.stopAndCopy = true
        }
        var records: [SessionRecord] = []
        /// Waits (30 s at most: a hang guard, not a timing) until `done` holds for the records so far.
        func wait(_ what: String, _ done: ([SessionRecord]) -> Bool) {
            let deadline = monotonicNanos() + 30_000_000_000
            while !done(records) && monotonicNanos() < deadline {
                usleep(10_000)
                records += queue.drain()
            }
            XCTAssertTrue(done(records), "waited 30 s for \(what)")
        }
        func rounds(_ mode: HarvestMode) -> Int { records.filter { if case .round(let r) = $0 { return r.mode == mode } else { return false } }.count }
        func notes() -> [String] { records.compactMap { if case .event(let e) = $0, case .note(let t) = e.event { return t } else { return nil } } }
        session.start()
        wait("legacy rounds") { _ in rounds(.legacy) >= 3 }
        session.send(.setMode(.untracked))
        wait("untracked rounds") { _ in rounds(.untracked) >= 5 }
        let before = rounds(.legacy)
        session.send(.setMode(.legacy))
        wait("legacy rounds again") { _ in rounds(.legacy) >= before + 3 }
        let note = notes().first { $0.contains("dirty tracking on") } ?? ""
        XCTAssertTrue(note.contains("pages written while untracked were copied"), "\(notes())")
        session.stop()
        records += queue.drain()
        let verified = records.compactMap { r -> Verification? in
            if case .event(let e) = r, case .verified(let v) = e.event { return v }
            return nil
        }
        XCTAssertEqual(verified.last?.missed, 0, "stop-and-copy after the round trip through untracked")
        let untracked = records.compactMap { r -> Round? in if case .round(let x) = r, x.mode == .untracked { return x } else { return nil } }
        XCTAssertTrue(untracked.allSatisfy { $0[.reportedPages] == 0 && $0.getDirtyLog.count == 0 }, "untracked rounds harvest nothing")
        XCTAssertGreaterThan(untracked.reduce(0) { $0 + $1[.guestTimedWrites] }, 0, "but time the guest")
    }

    /// A repeat whose empty loop was preempted (it took longer than the loops with work in
    /// them, as seen on this host) must not make an instruction's cost negative.
    func testAPreemptedRepeatDoesNotMakeACostNegative() {
        let r = ClockProbe.Result(loops: [(4143, 6257, 6575), (4266, 3517, 2586), (1514, 2321, 2355), (1498, 2259, 2315), (1583, 2299, 2367)],
                                  roundTrips: [12_000], ticksPerSecond: 2_445_000_000)
        XCTAssertEqual(r.rdtscNanos, 817, accuracy: 0.5)
        XCTAssertEqual(r.addNanos, 761, accuracy: 0.5)
        XCTAssertTrue(r.text.contains("one rdtsc costs 817 ns in the guest, one add 761 ns (medians of 5 repeats)"), r.text)
    }
}

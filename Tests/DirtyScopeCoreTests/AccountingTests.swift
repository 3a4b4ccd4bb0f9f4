import DirtyScopeCore
import DirtyScopeModel
import KVM
import XCTest

final class AccountingTests: XCTestCase {
    /// Missed must be 0 for legacy and manual on every workload: after a few rounds with the
    /// guest running, the vCPUs are paused, the log harvested, and every page compared.
    func testNothingIsMissedOnAnyWorkload() throws {
        let system = try kvmOrSkip()
        for mode in [HarvestMode.legacy, .manual] {
            for workload in Workload.allCases where workload != .idle {
                let machine = try GuestMachine(system: system, config: MachineConfig(
                    slotBytes: [4 << 20, 2 << 20], vcpus: 2, initialManualProtect: mode == .manual ? [.enable] : [],
                    workload: WorkloadSettings(workload: workload, rate: 3000, param0: workload == .wave ? 64 : nil)))
                let harvester = try Harvester(machine: machine, mode: mode, clearChunk: .pages(64), method: .stamp,
                                              bandwidth: 256 << 20)
                machine.start()
                var reported = 0
                for _ in 0..<4 {
                    usleep(40_000)
                    reported += try harvester.harvestRound().count(.reportedPages)
                }
                machine.pause()
                let last = try harvester.harvestRound(verify: true)
                machine.stop()
                XCTAssertNil(machine.currentFault, "\(mode) \(workload)")
                XCTAssertGreaterThan(reported, 0, "\(mode) \(workload): the guest should have dirtied pages")
                XCTAssertEqual(last.missed, 0, "\(mode) \(workload): pages changed but never reported")
                XCTAssertGreaterThan(last.verification?.comparedPages ?? 0, 0)
            }
        }
    }

    /// At the same bandwidth, on hotset, legacy's false-positive rate is clearly above manual's.
    func testLegacyFalsePositiveRateIsClearlyAboveManualOnHotset() throws {
        let system = try kvmOrSkip()
        func rate(_ mode: HarvestMode) throws -> MetricValues {
            var config = SessionConfig()
            config.slotBytes = [16 << 20, 16 << 20]
            config.mode = mode
            config.workload = WorkloadSettings(workload: .hotset, rate: 4000)
            config.intervalNanos = 50_000_000
            config.bandwidth = 32 << 20
            config.verifyEvery = 10
            let session = try Session(config: config, system: system)
            let queue = RecordQueue()
            session.subscribe(queue)
            session.start()
            var totals = MetricValues()
            let deadline = Date().addingTimeInterval(30)
            while totals[.rounds] < 30 && Date() < deadline {
                usleep(50_000)
                for case .round(let r) in queue.drain() where r.index > 2 { totals.add(r.values) }
            }
            session.stop()
            XCTAssertGreaterThanOrEqual(totals[.rounds], 30, "\(mode): too few rounds")
            XCTAssertEqual(totals[.missedPages], 0, "\(mode): missed pages at verification points")
            return totals
        }
        let legacy = try rate(.legacy)
        let manual = try rate(.manual)
        XCTAssertGreaterThan(legacy[.falsePositivePages], 20, "legacy should show the race on hotset")
        XCTAssertGreaterThan(legacy.falsePositiveFraction, 4 * manual.falsePositiveFraction + 0.005,
                             "legacy \(legacy.falsePositiveFraction) vs manual \(manual.falsePositiveFraction)")
    }

    /// KVM_CLEAR_DIRTY_LOG on chosen blocks clears exactly their dirty pages, copies them,
    /// and later rounds count the reports inside those blocks.
    func testClearingBlocksCopiesTheirDirtyPagesAndWatchesThem() throws {
        let system = try kvmOrSkip()
        let machine = try commandMachine(system, mode: .manual)
        defer { machine.stop() }
        let harvester = try Harvester(machine: machine, mode: .manual, clearChunk: .pages(64), method: .stamp, bandwidth: 0)
        for p in [3, 70, 130, 700] { XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: p)) }
        let result = try harvester.clearBlocks(slot: 0, blocks: [1, 0, 2])     // pages 0..<192
        XCTAssertEqual(result.blocks, [0, 1, 2])
        XCTAssertEqual(result.calls, 3, "one call per clear chunk (64 pages here), each chunk copied right after")
        XCTAssertEqual(result.pagesCleared, 3)
        XCTAssertEqual(result.pagesCopied, 3)
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: 5))
        let round = try harvester.harvestRound(verify: true)
        XCTAssertEqual(round.count(.reportedPages), 2, "page 700 (never cleared) and page 5 (written after the clear)")
        var cleared = DirtyBitmap(pageCount: round.bitmaps[0].reported.pageCount)
        cleared.set(0..<192)
        XCTAssertEqual(round.bitmaps[0].reported.intersection(cleared).count, 1, "page 5, in the cleared blocks")
        XCTAssertEqual(round.bitmaps[0].falsePositives.intersection(cleared).count, 0)
        XCTAssertEqual(round.missed, 0)
        XCTAssertThrowsError(try harvester.clearBlocks(slot: 0, blocks: [1_000_000]))
        // With 4096-page chunks the three adjacent blocks are one call.
        harvester.clearChunk = .pages(4096)
        XCTAssertEqual(try harvester.clearBlocks(slot: 0, blocks: [0, 1, 2, 5]).calls, 2, "blocks 0-2 merged, block 5 alone")
    }

    /// A session obeys commands from its controller and says so in events.
    func testSessionCommandsProduceEvents() throws {
        let system = try kvmOrSkip()
        let (session, queue) = try smallSession(system)
        session.start()
        defer { session.stop() }
        session.send(.setMode(.manual))
        session.send(.pause)
        session.send(.step)
        session.send(.setWorkload(.sweep))
        var events: [SessionEvent] = []
        var stepped = false
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline && !(stepped && events.contains(.paused)) {
            usleep(20_000)
            for record in queue.drain() {
                switch record {
                case .event(let e): events.append(e.event)
                case .round(let r): if events.contains(.paused) { stepped = true; XCTAssertEqual(r.mode, .manual) }
                }
            }
        }
        XCTAssertTrue(events.contains(.modeChanged(.manual, .pages(64))))
        XCTAssertTrue(events.contains(.paused))
        XCTAssertTrue(stepped, "n/step must harvest one round while paused")
        XCTAssertTrue(events.contains { if case .workloadChanged(let w) = $0 { return w.workload == .sweep } else { return false } })
    }
}

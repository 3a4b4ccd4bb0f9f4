import DirtyScopeCore
import DirtyScopeModel
import KVM
import Pages
import XCTest

/// The race from the KVM_CLEAR_DIRTY_LOG patch, step by step, with the guest under host control:
/// 1. GET returns page p (and, in legacy mode, write-protects it);
/// 2. the guest writes p;
/// 3. the host copies p, already holding the new data;
/// 4. GET again: legacy reports p a second time (a false positive), manual protect with
///    CLEAR just before the copy does not.
final class RaceTests: XCTestCase {
    let page = 100

    /// Runs the four steps and returns the second GET's round.
    /// A one-vCPU command machine in legacy mode and its harvester (stamps, 64-page chunks).
    private func legacyHarvester() throws -> (GuestMachine, Harvester) {
        let machine = try commandMachine(try kvmOrSkip(), mode: .legacy)
        do {
            return (machine, try Harvester(machine: machine, mode: .legacy, clearChunk: .pages(64), method: .stamp, bandwidth: 0))
        } catch {
            machine.stop()
            throw error
        }
    }

    private func race(mode: HarvestMode, method: FalsePositiveMethod) throws -> (first: Round, second: Round, reportedAgain: Bool) {
        let system = try kvmOrSkip()
        let machine = try commandMachine(system, mode: mode)
        defer { machine.stop() }
        let harvester = try Harvester(machine: machine, mode: mode, clearChunk: .pages(64), method: method, bandwidth: 0)

        // Settle: p written, harvested and copied once, so the destination holds it.
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
        let settle = try harvester.harvestRound()
        XCTAssertEqual(settle.count(.reportedPages), 1)
        XCTAssertEqual(settle.count(.falsePositivePages), 0)

        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))      // p changes
        let collected = try harvester.collect()                              // 1. GET
        XCTAssertTrue(collected.reported[0][page], "GET must report the page the guest wrote")
        XCTAssertEqual(collected.reported[0].count, 1)
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))      // 2. the guest writes p again
        let first = try harvester.consume(collected)                         // 3. (CLEAR and) copy
        XCTAssertEqual(first.count(.copiedPages), 1)
        XCTAssertEqual(first.count(.falsePositivePages), 0, "p really changed before this copy")

        let again = try harvester.collect()                                  // 4. GET again
        let reportedAgain = again.reported[0][page]
        let second = try harvester.consume(again, verify: true)
        XCTAssertEqual(second.missed, 0, "the destination must equal the source")
        return (first, second, reportedAgain)
    }

    func testLegacyReportsTheRacedPageAgainAsAFalsePositive() throws {
        let r = try race(mode: .legacy, method: .stamp)
        XCTAssertTrue(r.reportedAgain)
        XCTAssertEqual(r.second.count(.reportedPages), 1)
        XCTAssertEqual(r.second.count(.falsePositivePages), 1)
        XCTAssertTrue(r.second.bitmaps[0].falsePositives[page])
        XCTAssertEqual(r.first.clearPolicy, .auto, "the clear policy does not apply outside manual mode")
        // Attributed to the race: the window from the GET to the copy held the guest's
        // write, so at least a microsecond, and well under a minute.
        XCTAssertEqual(r.second.origins.raced, 1)
        XCTAssertEqual(r.second.origins.neverCleared, 0)
        XCTAssertEqual(r.second[.falsePositivesRewritten], 0, "the write was inside the window: the race, not a rewrite")
        let bucket = try XCTUnwrap(r.second.origins.byWindow.firstIndex { $0 > 0 })
        XCTAssertGreaterThanOrEqual(FalsePositiveOrigins.lowerBoundNanos(bucket: bucket + 1), 1_000)
        XCTAssertLessThan(FalsePositiveOrigins.lowerBoundNanos(bucket: bucket), 60_000_000_000)
    }

    func testManualWithClearBeforeCopyReportsNothing() throws {
        let r = try race(mode: .manual, method: .stamp)
        XCTAssertFalse(r.reportedAgain)
        XCTAssertEqual(r.second.count(.reportedPages), 0)
        XCTAssertEqual(r.second.count(.falsePositivePages), 0)
        XCTAssertGreaterThan(r.first.clearDirtyLog.count, 0, "manual mode must call KVM_CLEAR_DIRTY_LOG")
    }

    func testContentComparisonFindsTheSameFalsePositive() throws {
        let legacy = try race(mode: .legacy, method: .content)
        XCTAssertEqual(legacy.second.count(.falsePositivePages), 1)
        let manual = try race(mode: .manual, method: .content)
        XCTAssertEqual(manual.second.count(.falsePositivePages), 0)
    }

    /// The harvester hands KVM the same bitmaps round after round and reuses its
    /// false-positive bitmap, clearing only the words it set: a round a reader still holds
    /// keeps its bits, and a new round starts from none.
    func testHeldRoundsKeepTheirBitmapsWhileTheHarvesterReusesItsOwn() throws {
        let (machine, harvester) = try legacyHarvester()
        defer { machine.stop() }
        // The race's steps, held by the test: p settled, written, reported, written again, copied.
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
        _ = try harvester.harvestRound()
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
        let collected = try harvester.collect()
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
        _ = try harvester.consume(collected)
        let raced = try harvester.harvestRound()                             // p again, unchanged: a false positive
        XCTAssertEqual(raced.count(.falsePositivePages), 1)

        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page + 1))  // a new page, p left alone
        let next = try harvester.harvestRound()
        XCTAssertEqual(next.count(.reportedPages), 1)
        XCTAssertEqual(next.count(.falsePositivePages), 0, "last round's false positive must not carry over")
        XCTAssertTrue(next.bitmaps[0].reported[page + 1])
        XCTAssertFalse(next.bitmaps[0].reported[page])
        XCTAssertTrue(raced.bitmaps[0].falsePositives[page], "a held round keeps its false positives")
        XCTAssertTrue(raced.bitmaps[0].reported[page], "a held round keeps its reported pages")
        XCTAssertFalse(raced.bitmaps[0].reported[page + 1])

        let quiet = try harvester.harvestRound(verify: true)
        XCTAssertEqual(quiet.count(.reportedPages), 0)
        XCTAssertEqual(quiet.count(.falsePositivePages), 0)
        XCTAssertEqual(quiet.missed, 0)
        XCTAssertTrue(next.bitmaps[0].reported[page + 1], "a held round keeps its reported pages")

        // Once no reader holds a round, its bitmaps are reused in place, and cleared all the same.
        let other = page + 2
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: other))
        _ = try harvester.harvestRound()
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: other))
        _ = try harvester.consume(try harvester.collect())
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: other))
        let collectedAgain = try harvester.collect()
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: other))
        XCTAssertEqual(try harvester.consume(collectedAgain).count(.falsePositivePages), 0)
        XCTAssertEqual(try harvester.harvestRound().count(.falsePositivePages), 1)
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
        let after = try harvester.harvestRound()
        XCTAssertEqual(after.count(.reportedPages), 1)
        XCTAssertEqual(after.count(.falsePositivePages), 0)
        XCTAssertTrue(after.bitmaps[0].reported[page])
    }

    /// A write after the window of the page's last copy that stores what the page already
    /// held (a silent rewrite) is a false positive of its own origin, not the race: a
    /// harvest came between the copy and the write, and did not report the page.
    func testSilentRewriteIsAnOriginOfItsOwn() throws {
        for mode in [HarvestMode.legacy, .manual] {
            let machine = try commandMachine(try kvmOrSkip(), mode: mode)
            defer { machine.stop() }
            let harvester = try Harvester(machine: machine, mode: mode, clearChunk: .pages(64), method: .stamp, bandwidth: 0)
            XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
            XCTAssertEqual(try harvester.harvestRound().count(.copiedPages), 1)     // p copied
            XCTAssertEqual(try harvester.harvestRound().count(.reportedPages), 0)   // a harvest that does not report p
            // The guest writes p (its dirty bit is set), and the page ends as it was: the
            // host puts the copied bytes back, where KVM does not see it.
            let memory = machine.dataSlots[0].memory
            let held = [UInt8](UnsafeRawBufferPointer(start: memory.page(page), count: PageSize.system))
            XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
            held.withUnsafeBytes { _ = memcpy(memory.page(page), $0.baseAddress!, PageSize.system) }
            let r = try harvester.harvestRound(verify: true)
            XCTAssertEqual(r.count(.reportedPages), 1, "\(mode): the write set p's dirty bit")
            XCTAssertEqual(r.count(.falsePositivePages), 1, "\(mode): and left it unchanged")
            XCTAssertEqual(r[.falsePositivesRewritten], 1, "\(mode)")
            XCTAssertEqual(r.origins.raced, 0, "\(mode): not the race")
            XCTAssertEqual(r.origins.neverCleared, 0, "\(mode)")
            XCTAssertEqual(r.missed, 0)
        }
    }

    /// A page KVM reports that never changed since it was copied is a false positive;
    /// one written again after the copy is not.
    func testRewriteAfterCopyIsATruePositive() throws {
        let (machine, harvester) = try legacyHarvester()
        defer { machine.stop() }
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
        _ = try harvester.harvestRound()
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
        let r = try harvester.harvestRound()
        XCTAssertEqual(r.count(.reportedPages), 1)
        XCTAssertEqual(r.count(.falsePositivePages), 0)
        XCTAssertEqual(r.slots[0].truePositives, 1)
    }
}

@testable import DirtyScopeCore
import DirtyScopeModel
import KVM
import XCTest

/// Who clears, and when, step by step with the guest under host control: the write that
/// decides each case is put exactly into the window between a CLEAR and a copy.
final class ClearPolicyTests: XCTestCase {
    let page = 100
    let other = 700

    private func manual(_ policy: ClearPolicy) throws -> (GuestMachine, Harvester) {
        let system = try kvmOrSkip()
        let machine = try commandMachine(system, mode: .manual)
        let harvester = try Harvester(machine: machine, mode: .manual, clearChunk: .pages(64), clearPolicy: policy,
                                      method: .stamp, bandwidth: 0)
        return (machine, harvester)
    }

    /// The page written, harvested and copied once (the destination holds it), then
    /// written again: the next round reports it as really changed.
    private func settleAndChange(_ machine: GuestMachine, _ harvester: Harvester) throws {
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
        _ = try harvester.harvestRound()
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
    }

    /// A round with one more write of the page put into the policy's window.
    private func roundWithWriteInWindow(_ machine: GuestMachine, _ harvester: Harvester) throws -> Round {
        harvester.windowHook = { XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: self.page)) }
        defer { harvester.windowHook = nil }
        return try harvester.harvestRound()
    }

    /// auto: a write after the chunk's CLEAR and before its copy is in the copy and is
    /// reported again: one false positive, attributed to a short race window.
    func testAutoWriteBetweenClearAndCopyIsOneRacedFalsePositive() throws {
        let (machine, harvester) = try manual(.auto)
        defer { machine.stop() }
        try settleAndChange(machine, harvester)
        let raced = try roundWithWriteInWindow(machine, harvester)
        XCTAssertEqual(raced.count(.falsePositivePages), 0, "the page changed before this copy")
        XCTAssertEqual(raced.clearPolicy, .auto)
        let next = try harvester.harvestRound(verify: true)
        XCTAssertEqual(next.count(.reportedPages), 1)
        XCTAssertEqual(next.count(.falsePositivePages), 1)
        XCTAssertEqual(next.origins.raced, 1)
        XCTAssertEqual(next.origins.neverCleared, 0)
        XCTAssertEqual(next.missed, 0)
    }

    /// after-copy: a write after the copy and before the CLEAR is cleared unseen: the next
    /// GET does not report it, and the verifier finds the page (and its block) missed.
    func testAfterCopyLosesTheWriteBetweenCopyAndClear() throws {
        let (machine, harvester) = try manual(.afterCopy)
        defer { machine.stop() }
        try settleAndChange(machine, harvester)
        let lossy = try roundWithWriteInWindow(machine, harvester)
        XCTAssertEqual(lossy.count(.reportedPages), 1)
        XCTAssertGreaterThan(lossy.clearDirtyLog.count, 0, "after-copy still calls KVM_CLEAR_DIRTY_LOG")
        XCTAssertEqual(lossy.count(.lostPages), 1, "found as it happened: changed since the copy, and no dirty bit")
        let next = try harvester.harvestRound(verify: true)
        XCTAssertEqual(next.count(.reportedPages), 0, "the write was cleared before any GET saw it")
        XCTAssertEqual(next.missed, 1)
        XCTAssertEqual(next.verification?.missedBlocks, [[page / 64]])
        let healed = try harvester.harvestRound(verify: true)
        XCTAssertEqual(healed.missed, 0, "the verifier re-copies what it found")
    }

    /// The same write in auto is not lost: the order of the seed patch.
    func testAutoDoesNotLoseTheSameWrite() throws {
        let (machine, harvester) = try manual(.auto)
        defer { machine.stop() }
        try settleAndChange(machine, harvester)
        var wrote = false
        harvester.windowHook = { if !wrote { wrote = machine.commandWrite(vcpu: 0, linearPage: self.page) } }
        XCTAssertEqual(try harvester.harvestRound().count(.lostPages), 0)
        XCTAssertTrue(wrote)
        XCTAssertEqual(try harvester.harvestRound(verify: true).missed, 0)
    }

    /// hand: nothing is cleared, so GET reports every page it ever reported, round after
    /// round, each a false positive whose bit was never cleared; CLEAR on a block stops it
    /// there, and the harvester keeps re-protecting that block, but no other.
    func testHandReReportsUntilTheBlockIsCleared() throws {
        let (machine, harvester) = try manual(.hand)
        defer { machine.stop() }
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: other))
        let first = try harvester.harvestRound()
        XCTAssertEqual(first.count(.reportedPages), 2)
        XCTAssertEqual(first.clearDirtyLog.count, 0, "hand never clears on its own")
        for _ in 0..<2 {
            let again = try harvester.harvestRound()
            XCTAssertEqual(again.count(.reportedPages), 2)
            XCTAssertEqual(again.count(.falsePositivePages), 2)
            XCTAssertEqual(again.origins.neverCleared, 2)
        }

        let clear = try harvester.clearBlocks(slot: 0, blocks: [page / 64])
        XCTAssertEqual(clear.pagesCleared, 1, "GET's view of the block: the one dirty page")
        XCTAssertEqual(clear.policy, .hand)
        let after = try harvester.harvestRound()
        XCTAssertEqual(after.count(.reportedPages), 1, "only the other block is still reported")
        XCTAssertTrue(after.bitmaps[0].reported[other])
        XCTAssertFalse(after.bitmaps[0].reported[page], "no report, so no false positive, in the cleared block")

        // A new write in the cleared block: reported once, then re-protected by the harvester.
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
        let written = try harvester.harvestRound()
        XCTAssertTrue(written.bitmaps[0].reported[page])
        XCTAssertFalse(written.bitmaps[0].falsePositives[page])
        let quiet = try harvester.harvestRound(verify: true)
        XCTAssertFalse(quiet.bitmaps[0].reported[page], "the hand-cleared block is re-protected every round")
        XCTAssertTrue(quiet.bitmaps[0].falsePositives[other])
        XCTAssertEqual(quiet.missed, 0)

        // Dropping the block ends it: the page's next write is reported round after round.
        harvester.dropClearedBlocks(slot: 0)
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
        _ = try harvester.harvestRound()
        XCTAssertTrue(try harvester.harvestRound().bitmaps[0].falsePositives[page])
    }

    /// at-get: the CLEAR comes right after GET, so a write before the copy is reported
    /// again, as in legacy mode, though every call is manual protect's.
    func testAtGetHasLegacysWindow() throws {
        let (machine, harvester) = try manual(.atGet)
        defer { machine.stop() }
        try settleAndChange(machine, harvester)
        let collected = try harvester.collect()
        XCTAssertEqual(collected.clear.count, 1, "one CLEAR of the slot inside collect, right after GET")
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: page))
        _ = try harvester.consume(collected)
        let next = try harvester.harvestRound(verify: true)
        XCTAssertEqual(next.count(.falsePositivePages), 1)
        XCTAssertEqual(next.origins.raced, 1)
        XCTAssertEqual(next.missed, 0)
    }

    func testPolicyOnlyAppliesInManualMode() {
        XCTAssertEqual(HarvestSetting(mode: .legacy, policy: .hand).policy, .auto)
        XCTAssertEqual(HarvestSetting(mode: .manual, policy: .hand).description, "manual/hand")
        XCTAssertEqual(HarvestSetting(mode: .ring, policy: .afterCopy).description, "ring")
        XCTAssertThrowsError(try ClearPolicy(parsing: "later")) { error in
            XCTAssertTrue("\(error)".contains("'later'"), "\(error)")
            XCTAssertTrue("\(error)".contains("after-copy"), "\(error)")
        }
        XCTAssertEqual(ClearPolicy.atGet.next, .auto)
    }

    func testWindowBuckets() {
        XCTAssertEqual(FalsePositiveOrigins.bucket(nanos: 0), 0)
        XCTAssertEqual(FalsePositiveOrigins.bucket(nanos: 1_500), 0)
        XCTAssertEqual(FalsePositiveOrigins.bucket(nanos: 2_048), 1)
        XCTAssertEqual(FalsePositiveOrigins.bucket(nanos: 1_000_000), 9)
        XCTAssertEqual(FalsePositiveOrigins.bucket(nanos: .max), FalsePositiveOrigins.bucketCount - 1)
        for i in 1..<FalsePositiveOrigins.bucketCount - 1 {
            XCTAssertEqual(FalsePositiveOrigins.bucket(nanos: FalsePositiveOrigins.lowerBoundNanos(bucket: i)), i)
            XCTAssertEqual(FalsePositiveOrigins.bucket(nanos: FalsePositiveOrigins.lowerBoundNanos(bucket: i) - 1), i - 1)
        }
    }
}

/// A writing workload under after-copy loses pages in bench, counted as they are lost and
/// still found by the final stop-and-copy; auto and hand lose none, and hand's false
/// positives outnumber auto's.
final class ClearPolicyBenchTests: XCTestCase {
    func testAfterCopyLosesPagesWhereAutoAndHandDoNot() throws {
        let system = try kvmOrSkip()
        var c = BenchConfig()
        c.memoryPerVCPU = 8 << 20
        c.vcpus = 1
        c.iterations = 3
        c.workload = WorkloadSettings(workload: .hotset, rate: 0)
        c.modes = [.manual]
        c.clearPolicies = [.auto, .afterCopy, .hand]
        // A slow copy holds each copy-to-CLEAR window open long enough for hot-set writes.
        c.bandwidth = 8 << 20
        let results = try Bench.run(c, system: system)
        XCTAssertEqual(results.map(\.setting.policy), [.auto, .afterCopy, .hand])
        let auto = results[0], afterCopy = results[1], hand = results[2]
        XCTAssertEqual(auto.metrics[.missedPages], 0)
        XCTAssertEqual(auto.metrics[.lostPages], 0)
        XCTAssertEqual(hand.metrics[.missedPages], 0)
        XCTAssertGreaterThan(afterCopy.metrics[.lostPages], 0)
        XCTAssertGreaterThan(afterCopy.metrics[.missedPages], 0)
        XCTAssertGreaterThan(hand.metrics[.falsePositivePages], auto.metrics[.falsePositivePages])
        XCTAssertGreaterThan(hand.metrics.origins.neverCleared, 0)
    }
}

/// How the host waits for a pass changes no count: spinning and sleeping both report
/// every page written, miss none, and say which wait they used.
final class PassWaitBenchTests: XCTestCase {
    func testSpinningAndSleepingCountTheSame() throws {
        let system = try kvmOrSkip()
        for wait in PassWait.allCases {
            var c = BenchConfig()
            c.memoryPerVCPU = 8 << 20
            c.vcpus = 2
            c.iterations = 3
            c.modes = [.legacy, .manual]
            c.clearChunks = [.wholeSlot]
            c.overlap = false
            c.passWait = wait
            let results = try Bench.run(c, system: system)
            XCTAssertEqual(results.count, 2)
            for r in results {
                let pages = UInt64(c.memoryPerVCPU * c.vcpus / PageSize.system)
                XCTAssertEqual(r.passWait, wait)
                XCTAssertEqual(r.guestWritesPerIteration, pages, "\(wait) \(r.setting)")
                // With the copy done before the next pass, every page is reported once an
                // iteration and none is a false positive.
                XCTAssertEqual(r.metrics[.reportedPages], pages * UInt64(c.iterations), "\(wait) \(r.setting)")
                XCTAssertEqual(r.metrics[.falsePositivePages], 0, "\(wait) \(r.setting)")
                XCTAssertEqual(r.metrics[.missedPages], 0, "\(wait) \(r.setting)")
                XCTAssertEqual(r.metrics.getDirtyLog.count, UInt64(c.iterations), "\(wait) \(r.setting)")
            }
        }
    }
}

/// The consumer's pacing arithmetic, without KVM.
final class ConsumerPacingTests: XCTestCase {
    func testDueTimeHoldsPastSeventeenGiBPerRound() {
        // 64 MiB/s: one MiB is due 1/64 s after the start.
        XCTAssertEqual(Consumer.due(started: 5, bytes: 1 << 20, bandwidth: 64 << 20), 5 + 15_625_000)
        // 20 GiB at 1 GiB/s: 20 s, where bytes * 1e9 alone would not fit in 64 bits.
        XCTAssertEqual(Consumer.due(started: 0, bytes: 20 << 30, bandwidth: 1 << 30), 20_000_000_000)
        XCTAssertEqual(Consumer.due(started: 7, bytes: .max, bandwidth: .max), 7 + 1_000_000_000)
        XCTAssertEqual(Consumer.due(started: 0, bytes: .max, bandwidth: 1), .max, "saturates")
        XCTAssertEqual(Consumer.due(started: .max - 1, bytes: 1 << 30, bandwidth: 1 << 30), .max, "saturates")
        XCTAssertEqual(Consumer.due(started: 9, bytes: 1 << 40, bandwidth: 0), 9, "no bandwidth set: nothing to wait for")
    }
}

import CKVM
import DirtyScopeCore
import DirtyScopeModel
import Foundation
import KVM
import KVMTestSupport
import XCTest

/// The idea of the kernel's dirty_log_test, with DirtyScope's own guest: the guest stamps
/// every page it writes, the host stops the world at each check and compares the dirty
/// log with the stamps. Every page whose stamp changed must be reported; with the vCPUs
/// parked nothing races, so the comparison is exact but for a write the pause cuts short
/// (see `StampTruth`). Host-driven writes (`commandWrite`) give exact expectations.
final class DirtyLogTests: XCTestCase {
    private let iterations = 8
    private let runMicros: UInt32 = 40_000

    // MARK: Legacy KVM_GET_DIRTY_LOG

    func testLegacyGetReportsExactlyTheWrittenPages() throws {
        let system = try openKVM()
        let machine = try makeMachine(system, workload: randomWrites(seed: 11))
        defer { machine.stop() }
        XCTAssertTrue(machine.vm.manualProtect.isEmpty)
        assertSamePages(try getDirtyLogs(machine), emptyBitmaps(machine), "before the guest ran")
        var truth = StampTruth(machine)
        machine.start()
        for i in 0..<iterations {
            runBriefly(machine, micros: runMicros)
            truth.check(machine, reported: try getDirtyLogs(machine), "iteration \(i)")
            // GET cleared the log: asking again at once reports nothing.
            assertSamePages(try getDirtyLogs(machine), emptyBitmaps(machine), "iteration \(i), second GET")
        }
        XCTAssertNil(machine.currentFault)
        XCTAssertGreaterThan(truth.writtenPages, 50, "the guest wrote pages")
        XCTAssertGreaterThan(machine.guestWrites, 0)
    }

    func testLegacyGetWithHostDrivenWrites() throws {
        let system = try openKVM()
        let machine = try makeMachine(system, workload: noWrites)
        defer { machine.stop() }
        machine.start()
        machine.enterCommandMode()
        let total = machine.totalPages
        // Both slots, both vCPUs, block edges, the last page of each slot.
        let slot1 = machine.dataSlots[0].pageCount
        let rounds: [[(vcpu: Int, page: Int)]] = [
            [(0, 0), (1, 63), (0, 64), (1, slot1 - 1), (0, slot1), (1, total - 1)],
            [(1, 0), (0, 5), (0, 5), (1, slot1 + 1000), (0, total - 3)],
            [],
            [(0, slot1 + 1023), (1, slot1 + 1024), (0, slot1 + 1025)],
        ]
        for (r, writes) in rounds.enumerated() {
            var expected = emptyBitmaps(machine)
            for w in writes {
                XCTAssertTrue(machine.commandWrite(vcpu: w.vcpu, linearPage: w.page), "vCPU \(w.vcpu) writes page \(w.page)")
                let (slot, page) = machine.locate(linearPage: w.page)
                expected[slot][page] = true
            }
            machine.pause()
            assertSamePages(try getDirtyLogs(machine), expected, "round \(r)")
            machine.resume()
        }
        XCTAssertEqual(machine.guestWrites, UInt64(rounds.joined().count))
        XCTAssertNil(machine.currentFault)
    }

    // MARK: Manual protect: KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG

    /// Each check clears only the even blocks; bits of the odd ones must stay set across
    /// GETs, and a cleared page comes back only when written again.
    func testManualProtectKeepsUnclearedBitsAndReportsNewWrites() throws {
        let system = try openKVM()
        let machine = try makeMachine(system, workload: randomWrites(seed: 12), manualProtect: .enable)
        defer { machine.stop() }
        XCTAssertEqual(machine.vm.manualProtect, .enable)
        var truth = StampTruth(machine)
        var stillSet = emptyBitmaps(machine)   // reported earlier and not cleared since
        var kept = 0
        machine.start()
        for i in 0..<iterations {
            runBriefly(machine, micros: runMicros)
            let reported = try getDirtyLogs(machine)
            truth.check(machine, reported: reported, stillSet: stillSet, "iteration \(i)")
            // GET does not clear in manual mode.
            assertSamePages(try getDirtyLogs(machine), reported, "iteration \(i), second GET")
            stillSet = reported
            for (s, slot) in machine.dataSlots.enumerated() {
                var mask = reported[s]
                for block in mask.dirtyBlocks where block % 2 == 1 { mask.clear(mask.pages(ofBlock: block)) }
                try machine.vm.clearDirtyLog(slot: slot.id, firstPage: 0, numPages: slot.pageCount, from: mask)
                stillSet[s].subtract(mask)
                kept += stillSet[s].count
            }
            assertSamePages(try getDirtyLogs(machine), stillSet, "iteration \(i), after CLEAR")
        }
        XCTAssertGreaterThan(kept, 0, "some bits were kept across GETs")
        XCTAssertGreaterThan(truth.writtenPages, 50, "the guest wrote pages")
        XCTAssertNil(machine.currentFault)
    }

    /// KVM allows turning manual protect on and off while the guest runs (the harvester's
    /// mode switch): bits left set in manual mode are returned, and cleared, by the next
    /// legacy GET; nothing is lost across either switch.
    func testSwitchingManualProtectWhileRunningLosesNothing() throws {
        let system = try openKVM()
        let machine = try makeMachine(system, workload: randomWrites(seed: 13))
        defer { machine.stop() }
        var truth = StampTruth(machine)
        var stillSet = emptyBitmaps(machine)
        machine.start()
        for i in 0..<iterations {
            let manual = i % 3 != 2   // manual, manual, legacy, ...
            runBriefly(machine, micros: runMicros)
            try machine.vm.setManualProtect(manual ? .enable : [])
            let reported = try getDirtyLogs(machine)
            truth.check(machine, reported: reported, stillSet: stillSet, "iteration \(i) (\(manual ? "manual" : "legacy"))")
            if manual {
                // Clear only the first slot; the second keeps its bits into the next round.
                let slot = machine.dataSlots[0]
                try machine.vm.clearDirtyLog(slot: slot.id, firstPage: 0, numPages: slot.pageCount, from: reported[0])
                stillSet = reported
                stillSet[0].clearAll()
            } else {
                stillSet = emptyBitmaps(machine)
            }
            assertSamePages(try getDirtyLogs(machine), manual ? stillSet : emptyBitmaps(machine), "iteration \(i), after harvest")
        }
        XCTAssertGreaterThan(truth.writtenPages, 50)
        XCTAssertNil(machine.currentFault)
    }

    func testManualProtectWithHostDrivenWrites() throws {
        let system = try openKVM()
        let machine = try makeMachine(system, workload: noWrites, manualProtect: .enable)
        defer { machine.stop() }
        machine.start()
        machine.enterCommandMode()
        let slot1 = machine.dataSlots[0].pageCount
        let pages = [3, 64, 130, slot1 + 7, machine.totalPages - 1]
        for (i, p) in pages.enumerated() { XCTAssertTrue(machine.commandWrite(vcpu: i % 2, linearPage: p)) }
        machine.pause()
        var expected = emptyBitmaps(machine)
        for p in pages { let (s, q) = machine.locate(linearPage: p); expected[s][q] = true }
        assertSamePages(try getDirtyLogs(machine), expected, "after the writes")
        assertSamePages(try getDirtyLogs(machine), expected, "a GET does not clear")

        // Clear page 3 and the slot's last page only; the others stay.
        let s0 = machine.dataSlots[0], s1 = machine.dataSlots[1]
        let one: [UInt64] = [1 << 3]
        try one.withUnsafeBufferPointer { try machine.vm.clearDirtyLog(slot: s0.id, firstPage: 0, numPages: 64, mask: $0) }
        let lastBlock = (s1.pageCount - 1) / 64 * 64
        var tail = DirtyBitmap(pageCount: s1.pageCount)
        tail[s1.pageCount - 1] = true
        try machine.vm.clearDirtyLog(slot: s1.id, firstPage: lastBlock, numPages: s1.pageCount - lastBlock, from: tail)
        expected[0][3] = false
        expected[1][s1.pageCount - 1] = false
        assertSamePages(try getDirtyLogs(machine), expected, "after clearing two pages")

        // A cleared page is reported again only after a new write; re-writing a page whose
        // bit is still set changes nothing.
        machine.resume()
        XCTAssertTrue(machine.commandWrite(vcpu: 1, linearPage: 64))
        machine.pause()
        assertSamePages(try getDirtyLogs(machine), expected, "re-writing an uncleared page")
        machine.resume()
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: 3))
        machine.pause()
        expected[0][3] = true
        assertSamePages(try getDirtyLogs(machine), expected, "re-writing a cleared page")

        // Clearing everything leaves nothing, until the next write.
        for (s, slot) in machine.dataSlots.enumerated() {
            try machine.vm.clearDirtyLog(slot: slot.id, firstPage: 0, numPages: slot.pageCount, from: expected[s])
        }
        assertSamePages(try getDirtyLogs(machine), emptyBitmaps(machine), "after clearing everything")
        machine.resume()
        XCTAssertTrue(machine.commandWrite(vcpu: 1, linearPage: slot1 + 7))
        machine.pause()
        var last = emptyBitmaps(machine)
        last[1][7] = true
        assertSamePages(try getDirtyLogs(machine), last, "one write after clearing everything")
        XCTAssertNil(machine.currentFault)
    }

    /// With INITIALLY_SET every page reads dirty until it is first cleared.
    func testInitiallySetReportsEveryPageBeforeTheFirstClear() throws {
        let system = try openKVM()
        guard system.manualProtectFlags.contains(.initiallySet) else {
            throw XCTSkip("this host's KVM lacks KVM_DIRTY_LOG_INITIALLY_SET")
        }
        let machine = try makeMachine(system, workload: noWrites, manualProtect: [.enable, .initiallySet])
        defer { machine.stop() }
        XCTAssertEqual(machine.vm.manualProtect, [.enable, .initiallySet])
        let full = machine.dataSlots.map { slot -> DirtyBitmap in var b = DirtyBitmap(pageCount: slot.pageCount); b.setAll(); return b }
        assertSamePages(try getDirtyLogs(machine), full, "before the guest ran")
        XCTAssertEqual(try getDirtyLogs(machine).map(\.count), machine.dataSlots.map(\.pageCount))
        machine.start()
        machine.enterCommandMode()
        machine.pause()
        assertSamePages(try getDirtyLogs(machine), full, "still all set while running, before any CLEAR")

        // Clear slot 1's whole blocks, then its short tail (ends at the slot's end: allowed).
        let s1 = machine.dataSlots[1]
        let whole = s1.pageCount / 64 * 64
        XCTAssertNotEqual(whole, s1.pageCount, "the second slot has a short last block")
        try machine.vm.clearDirtyLog(slot: s1.id, firstPage: 0, numPages: whole, from: full[1])
        var expected = full
        expected[1].clear(0..<whole)
        assertSamePages(try getDirtyLogs(machine), expected, "after clearing slot 1's whole blocks")
        try machine.vm.clearDirtyLog(slot: s1.id, firstPage: whole, numPages: s1.pageCount - whole, from: full[1])
        expected[1].clearAll()
        assertSamePages(try getDirtyLogs(machine), expected, "after clearing slot 1's tail")

        // Now slot 1 reports writes only.
        machine.resume()
        let first1 = machine.dataSlots[0].pageCount
        XCTAssertTrue(machine.commandWrite(vcpu: 0, linearPage: first1 + 100))
        XCTAssertTrue(machine.commandWrite(vcpu: 1, linearPage: first1 + s1.pageCount - 1))
        machine.pause()
        expected[1][100] = true
        expected[1][s1.pageCount - 1] = true
        assertSamePages(try getDirtyLogs(machine), expected, "writes after the clear")
        XCTAssertNil(machine.currentFault)
    }

    // MARK: Misaligned CLEAR ranges

    func testMisalignedClearIsEINVALBothUpFrontAndFromTheKernel() throws {
        let system = try openKVM()
        let machine = try makeMachine(system, workload: noWrites, manualProtect: .enable)
        defer { machine.stop() }
        let slot = machine.dataSlots[0]
        XCTAssertGreaterThan(slot.pageCount, 200)
        let mask = [UInt64](repeating: ~0, count: 4)
        let bad: [(first: Int, num: Int, words: String)] = [
            (100, 64, "first_page 100 is not a multiple of 64"),
            (0, 65, "num_pages 65 is not a multiple of 64"),
            (64, 100, "num_pages 100 is not a multiple of 64"),
            (slot.pageCount - 64, 128, "run past"),
            (slot.pageCount + 64, 64, "run past"),
        ]
        for b in bad {
            let upFront = kvmError {
                try mask.withUnsafeBufferPointer { try machine.vm.clearDirtyLog(slot: slot.id, firstPage: b.first, numPages: b.num, mask: $0) }
            }
            XCTAssertEqual(upFront?.errno, EINVAL, "\(b)")
            guard case .invalidArgument(let call, let reason)? = upFront else { XCTFail("\(b): got \(String(describing: upFront))"); continue }
            XCTAssertEqual(call, "KVM_CLEAR_DIRTY_LOG")
            XCTAssertTrue(reason.contains("slot \(slot.id)") && reason.contains(b.words), reason)
            XCTAssertEqual(kvmError { try machine.vm.validateClearRange(slot: slot.id, firstPage: b.first, numPages: b.num) }, upFront)

            let kernel = kvmError {
                try mask.withUnsafeBufferPointer {
                    try machine.vm.clearDirtyLog(slot: slot.id, firstPage: b.first, numPages: b.num, mask: $0, validate: false)
                }
            }
            XCTAssertEqual(kernel?.errno, EINVAL, "\(b): the kernel's answer")
            guard case .ioctl(let kcall, let context, _)? = kernel else { XCTFail("\(b): got \(String(describing: kernel))"); continue }
            XCTAssertEqual(kcall, "KVM_CLEAR_DIRTY_LOG")
            XCTAssertTrue(context.contains("slot \(slot.id)"), context)
        }
        // The whole-bitmap form checks the same rules.
        let bitmap = DirtyBitmap(pageCount: slot.pageCount)
        XCTAssertEqual(kvmError { try machine.vm.clearDirtyLog(slot: slot.id, firstPage: 100, numPages: 64, from: bitmap) }?.errno, EINVAL)
        // Aligned ranges pass both ways, as does an empty one.
        try mask.withUnsafeBufferPointer { try machine.vm.clearDirtyLog(slot: slot.id, firstPage: 128, numPages: 192, mask: $0) }
        try mask.withUnsafeBufferPointer {
            try machine.vm.clearDirtyLog(slot: slot.id, firstPage: 128, numPages: 192, mask: $0, validate: false)
        }
        try mask.withUnsafeBufferPointer { try machine.vm.clearDirtyLog(slot: slot.id, firstPage: 64, numPages: 0, mask: $0) }
        // A mask too short for the range is caught before the kernel reads past it.
        let short = kvmError { try mask.withUnsafeBufferPointer { try machine.vm.clearDirtyLog(slot: slot.id, firstPage: 0, numPages: 320, mask: $0) } }
        XCTAssertEqual(short?.errno, EINVAL)
        // No such slot.
        XCTAssertEqual(kvmError { try machine.vm.validateClearRange(slot: 99, firstPage: 0, numPages: 64) }?.errno, EINVAL)
    }

    /// Ranges whose end overflows `Int` must come back as EINVAL like any other bad range;
    /// checked in a child process, since a trap would end the whole test run.
    func testHugeClearRangesAreRejectedNotTrapped() throws {
        let system = try openKVM()
        let machine = try makeMachine(system, slotBytes: [4 << 20], vcpus: 1, workload: noWrites, manualProtect: .enable)
        let vm = machine.vm
        let id = machine.dataSlots[0].id
        let validate = outcomeInChild {
            let e = kvmError { try vm.validateClearRange(slot: id, firstPage: 64, numPages: Int.max) }
            _exit(e?.errno == EINVAL ? 0 : 3)
        }
        XCTAssertNil(validate, "validateClearRange(firstPage: 64, numPages: Int.max) must throw EINVAL; \(validate ?? "")")
        let mask = [UInt64](repeating: 0, count: 1)
        let unchecked = outcomeInChild {
            // The child cannot use its parent's VM: KVM answers EIO, and the error is built.
            let e = kvmError {
                try mask.withUnsafeBufferPointer { try vm.clearDirtyLog(slot: id, firstPage: 64, numPages: Int.max, mask: $0, validate: false) }
            }
            _exit(e == nil ? 3 : 0)
        }
        XCTAssertNil(unchecked, "a failed KVM_CLEAR_DIRTY_LOG with num_pages Int.max must throw, not trap; \(unchecked ?? "")")
    }
}

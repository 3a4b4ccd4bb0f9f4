import CKVM
import DirtyScopeCore
import DirtyScopeModel
import Foundation
import KVM
import KVMTestSupport
import XCTest

/// Data slot sizes the semantic tests use: two small slots, the second not a multiple
/// of 64 pages, so tail words and end-of-slot CLEAR ranges get exercised.
let twoSlots = [4 << 20, (8 << 20) + 3 * PageSize.system]

/// A built-in-guest machine with small slots; rings and manual protect as asked.
func makeMachine(_ system: KVMSystem, slotBytes: [Int] = twoSlots, vcpus: Int = 2, workload: WorkloadSettings,
                 ringEntries: Int = 0, manualProtect: ManualProtectFlags = []) throws -> GuestMachine {
    try GuestMachine(system: system, config: MachineConfig(slotBytes: slotBytes, vcpus: vcpus, ringEntries: ringEntries,
                                                           initialManualProtect: manualProtect, workload: workload))
}

/// Random writes at a modest rate: a few hundred pages between checks, never near a ring's size.
func randomWrites(seed: UInt64) -> WorkloadSettings { WorkloadSettings(workload: .random, rate: 2000, seed: seed) }

/// No guest writes at all (the host drives writes with `commandWrite`).
let noWrites = WorkloadSettings(workload: .idle, rate: 0)

/// Open file descriptors of this process.
func openFDCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

/// The error `body` throws, as a KVMError (nil, with a test failure, when it throws none).
func kvmError(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> KVMError? {
    do {
        try body()
        XCTFail("expected a KVMError, got success", file: file, line: line)
        return nil
    } catch let e as KVMError {
        return e
    } catch {
        XCTFail("expected a KVMError, got \(error)", file: file, line: line)
        return nil
    }
}

/// The error `body` throws, as a SessionError.
func sessionError(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> SessionError? {
    do {
        try body()
        XCTFail("expected a SessionError, got success", file: file, line: line)
        return nil
    } catch let e as SessionError {
        return e
    } catch {
        XCTFail("expected a SessionError, got \(error)", file: file, line: line)
        return nil
    }
}

/// The guest's stamp of every data page, per slot: the ground truth of what it wrote.
func stampSnapshot(_ machine: GuestMachine) -> [[UInt64]] {
    machine.dataSlots.indices.map { s in
        (0..<machine.dataSlots[s].pageCount).map { machine.stamp(slot: s, page: $0) }
    }
}

/// Per slot, the pages whose stamp differs between two snapshots.
func changedPages(from old: [[UInt64]], to new: [[UInt64]]) -> [DirtyBitmap] {
    zip(old, new).map { o, n in
        var b = DirtyBitmap(pageCount: n.count)
        for p in n.indices where o[p] != n[p] { b[p] = true }
        return b
    }
}

/// Per slot, the dirty bitmap from KVM_GET_DIRTY_LOG.
func getDirtyLogs(_ machine: GuestMachine) throws -> [DirtyBitmap] {
    try machine.dataSlots.map { slot in
        var b = DirtyBitmap(pageCount: slot.pageCount)
        try machine.vm.getDirtyLog(slot: slot.id, into: &b)
        return b
    }
}

/// Per slot, empty bitmaps.
func emptyBitmaps(_ machine: GuestMachine) -> [DirtyBitmap] {
    machine.dataSlots.map { DirtyBitmap(pageCount: $0.pageCount) }
}

/// Fails when a page changed but was not reported (a false negative), naming the first few.
func assertNoFalseNegatives(reported: [DirtyBitmap], changed: [DirtyBitmap], _ what: String,
                            file: StaticString = #filePath, line: UInt = #line) {
    for (s, (r, c)) in zip(reported, changed).enumerated() {
        let missed = c.subtracting(r)
        XCTAssertTrue(missed.isEmpty, "\(what): slot \(s): \(missed.count) written pages not reported, first \(missed.setPages.prefix(8))",
                      file: file, line: line)
    }
}

/// Fails unless `reported` is exactly `expected`, naming the first few differences.
func assertSamePages(_ reported: [DirtyBitmap], _ expected: [DirtyBitmap], _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(reported.count, expected.count, "\(what): slot count", file: file, line: line)
    for (s, (r, e)) in zip(reported, expected).enumerated() where r != e {
        XCTFail("\(what): slot \(s): missing \(e.subtracting(r).setPages.prefix(8)) (of \(e.subtracting(r).count)), "
                + "extra \(r.subtracting(e).setPages.prefix(8)) (of \(r.subtracting(e).count))", file: file, line: line)
    }
}

/// Lets the guest run for `micros`, then stops the world.
func runBriefly(_ machine: GuestMachine, micros: UInt32) {
    machine.resume()
    usleep(micros)
    machine.pause()
}


/// A fresh file in the temporary directory holding `bytes`; removed by the caller.
func temporaryFile(_ bytes: [UInt8], name: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("dirtyscope-\(name)-\(UUID().uuidString).bin").path
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}


/// The dirty_log_test check, round by round, against the guest's stamps.
///
/// A page whose stamp changed since the last round must be reported (no false negatives).
/// The converse holds too, with one exception the check names: KVM marks a page dirty in
/// the write-protect fault, and a kick can take the vCPU out of KVM_RUN before the faulting
/// store retires, so a page can be reported before its stamp changes. Such a page is
/// allowed once per vCPU per round, and its stamp must then change in the very next round,
/// when the vCPU re-executes the store.
struct StampTruth {
    private var previous: [[UInt64]]
    private var unfinished: [DirtyBitmap]
    private let vcpus: Int
    /// Pages whose stamp changed, over all rounds.
    private(set) var writtenPages = 0
    /// Pages reported one round early (a write cut short by the pause), over all rounds.
    private(set) var cutShort = 0

    init(_ machine: GuestMachine) {
        previous = stampSnapshot(machine)
        unfinished = emptyBitmaps(machine)
        vcpus = machine.config.vcpus
    }

    /// Checks a round's `reported` pages, where `stillSet` are bits KVM must still hold
    /// from earlier rounds (manual mode's uncleared bits). Returns the pages written.
    @discardableResult
    mutating func check(_ machine: GuestMachine, reported: [DirtyBitmap], stillSet: [DirtyBitmap]? = nil, _ what: String,
                        file: StaticString = #filePath, line: UInt = #line) -> [DirtyBitmap] {
        let now = stampSnapshot(machine)
        let changed = changedPages(from: previous, to: now)
        assertNoFalseNegatives(reported: reported, changed: changed, what, file: file, line: line)
        if let stillSet {
            assertNoFalseNegatives(reported: reported, changed: stillSet, "\(what) (bits not cleared)", file: file, line: line)
        }
        for s in changed.indices {
            let stuck = unfinished[s].subtracting(changed[s])
            XCTAssertTrue(stuck.isEmpty, "\(what): slot \(s): pages reported last round without a stamp change "
                          + "still have none: \(stuck.setPages.prefix(8))", file: file, line: line)
        }
        var extra = 0
        for s in reported.indices {
            var explained = changed[s]
            if let stillSet { explained.formUnion(stillSet[s]) }
            unfinished[s] = reported[s].subtracting(explained)
            extra += unfinished[s].count
        }
        XCTAssertLessThanOrEqual(extra, vcpus, "\(what): \(extra) pages reported without a stamp change "
                                 + "(at most one write per vCPU can be cut short): \(unfinished.map { $0.setPages.prefix(8) })",
                                 file: file, line: line)
        writtenPages += changed.reduce(0) { $0 + $1.count }
        cutShort += extra
        previous = now
        return changed
    }
}

/// Runs `body` in a forked child and says how the child ended: nil when it returned
/// normally, else the signal or status. For checking that an API rejects input instead
/// of trapping, without taking the test process down. `body` must not need KVM ioctls
/// (a child may not use its parent's VM).
func outcomeInChild(timeoutSeconds: Double = 10, _ body: () -> Void) -> String? {
    let pid = fork()
    if pid == 0 {
        body()
        _exit(0)
    }
    guard pid > 0 else { return "fork failed: errno \(errno)" }
    var status: Int32 = 0
    let deadline = Date().addingTimeInterval(timeoutSeconds)
    while waitpid(pid, &status, WNOHANG) == 0 {
        if Date() > deadline {
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
            return "the child hung"
        }
        usleep(1000)
    }
    let signal = status & 0x7f
    if signal != 0 { return "the child was killed by signal \(signal) (\(String(cString: strsignal(signal))))" }
    let code = (status >> 8) & 0xff
    return code == 0 ? nil : "the child exited with status \(code)"
}

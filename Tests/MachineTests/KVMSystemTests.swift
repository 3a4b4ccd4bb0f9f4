import CKVM
import DirtyScopeCore
import DirtyScopeModel
import Foundation
import KVM
import KVMTestSupport
import XCTest

/// The system handle, bad input on a VM (rejected up front, with words), fd ownership,
/// and binary statistics.
final class KVMSystemTests: XCTestCase {
    // MARK: The system handle

    func testOpensAtAPIVersion12() throws {
        let system = try openKVM()
        XCTAssertEqual(system.apiVersion, 12)
        XCTAssertGreaterThan(system.vcpuMmapSize, 0)
        XCTAssertEqual(system.vcpuMmapSize % PageSize.system, 0, "kvm_run mapping is whole pages")
    }

    func testMissingDeviceIsReportedWithItsPathAndErrno() {
        let error = kvmError { _ = try KVMSystem(path: "/nonexistent/kvm") }
        XCTAssertEqual(error, .deviceUnavailable(path: "/nonexistent/kvm", errno: ENOENT))
        XCTAssertEqual(error?.errno, ENOENT)
        let text = error?.description ?? ""
        XCTAssertTrue(text.contains("/nonexistent/kvm"), text)
        XCTAssertTrue(text.contains("does not exist"), text)
    }

    func testCapabilitiesAreSensible() throws {
        let system = try openKVM()
        XCTAssertGreaterThan(system.check(.userMemory), 0)
        XCTAssertGreaterThanOrEqual(system.maxVCPUs, 1)
        XCTAssertGreaterThanOrEqual(system.maxMemslots, 2, "DirtyScope needs a system slot and a data slot")
        let flags = system.manualProtectFlags
        XCTAssertTrue(flags.contains(.enable), "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 offers \(flags.names)")
        XCTAssertEqual(flags.rawValue & ~3, 0, "unknown manual-protect flags \(flags.names)")
        let ring = system.maxDirtyRingBytes
        if ring > 0 {
            XCTAssertEqual(ring & (ring - 1), 0, "largest ring \(ring) bytes is a power of two")
            XCTAssertGreaterThanOrEqual(ring, PageSize.system)
        }
        XCTAssertGreaterThan(try system.supportedCPUID().count, 0)
        let caps = dirtyTrackingCapabilities(system)
        XCTAssertEqual(caps["KVM_API_VERSION"], 12)
        XCTAssertEqual(caps.count, Capability.allCases.count + 1)
        // The VM fd answers too (some capabilities are per VM).
        let vm = try system.makeVM()
        XCTAssertGreaterThan(vm.check(.userMemory), 0)
    }

    // MARK: Bad input

    func testSlotAddressMustBePageAligned() throws {
        let system = try openKVM()
        let vm = try system.makeVM()
        let memory = try GuestMemory(bytes: 4 * PageSize.system)
        let error = kvmError { try vm.addSlot(id: 1, guestPhysicalAddress: 0x1000_0800, memory: memory, logDirtyPages: true) }
        XCTAssertEqual(error?.errno, EINVAL)
        guard case .invalidArgument(let call, let reason)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertEqual(call, "KVM_SET_USER_MEMORY_REGION")
        XCTAssertTrue(reason.contains("0x10000800") && reason.contains("page size"), reason)
        XCTAssertTrue(vm.slots.isEmpty, "a rejected slot is not recorded")
    }

    func testOverlappingSlotsAreRejectedNamingBoth() throws {
        let system = try openKVM()
        let vm = try system.makeVM()
        let page = PageSize.system
        try vm.addSlot(id: 1, guestPhysicalAddress: 0x4000_0000, memory: try GuestMemory(bytes: 16 * page), logDirtyPages: true)
        let overlap = UInt64(0x4000_0000 + 8 * page)
        let error = kvmError {
            try vm.addSlot(id: 2, guestPhysicalAddress: overlap, memory: try GuestMemory(bytes: 16 * page), logDirtyPages: true)
        }
        guard case .invalidArgument(_, let reason)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertTrue(reason.contains("slot 2") && reason.contains("slot 1"), reason)
        XCTAssertTrue(reason.contains("0x40000000"), reason)
        // A slot ending exactly where the other begins does not overlap.
        try vm.addSlot(id: 2, guestPhysicalAddress: 0x4000_0000 - UInt64(4 * page), memory: try GuestMemory(bytes: 4 * page), logDirtyPages: false)
        // Reusing an id is rejected too.
        let again = kvmError { try vm.addSlot(id: 1, guestPhysicalAddress: 0x8000_0000, memory: try GuestMemory(bytes: page), logDirtyPages: true) }
        XCTAssertEqual(again?.errno, EINVAL)
        XCTAssertEqual(vm.slots.keys.sorted(), [1, 2])
    }

    func testGuestMemorySizeMustBePageAligned() {
        for bytes in [0, -4096, PageSize.system + 1, PageSize.system / 2] {
            let error = kvmError { _ = try GuestMemory(bytes: bytes) }
            guard case .invalidArgument(_, let reason)? = error else { XCTFail("\(bytes): got \(String(describing: error))"); continue }
            XCTAssertTrue(reason.contains("\(bytes)") && reason.contains("\(PageSize.system)"), reason)
        }
    }

    func testVCPUBeyondTheLimitIsRejected() throws {
        let system = try openKVM()
        let vm = try system.makeVM()
        let limit = system.maxVCPUs
        for id in [limit, limit + 1000, -1] {
            let error = kvmError { _ = try vm.makeVCPU(id: id) }
            guard case .invalidArgument(let call, let reason)? = error else { XCTFail("\(id): got \(String(describing: error))"); continue }
            XCTAssertEqual(call, "KVM_CREATE_VCPU")
            XCTAssertTrue(reason.contains("\(id)") && reason.contains("\(limit)"), reason)
        }
        XCTAssertEqual(vm.vcpuCount, 0)
        _ = try vm.makeVCPU(id: 0)
        XCTAssertEqual(vm.vcpuCount, 1)
        // The same id twice is the kernel's to refuse.
        let twice = kvmError { _ = try vm.makeVCPU(id: 0) }
        XCTAssertEqual(twice?.errno, EEXIST)
    }

    func testDirtyRingArgumentsAreChecked() throws {
        let system = try openKVM()
        guard system.maxDirtyRingBytes > 0 else { throw XCTSkip("this host's KVM offers no dirty ring") }
        let vm = try system.makeVM()
        for bytes in [1000, PageSize.system / 2, system.maxDirtyRingBytes * 2] {
            let error = kvmError { try vm.enableDirtyRing(bytes: bytes) }
            guard case .invalidArgument(_, let reason)? = error else { XCTFail("\(bytes): got \(String(describing: error))"); continue }
            XCTAssertTrue(reason.contains("power of two"), reason)
        }
        _ = try vm.makeVCPU(id: 0)
        let late = kvmError { try vm.enableDirtyRing(bytes: 4096 * Int(CKVM_SIZEOF_DIRTY_GFN)) }
        guard case .invalidArgument(_, let reason)? = late else { return XCTFail("got \(String(describing: late))") }
        XCTAssertTrue(reason.contains("before the first vCPU"), reason)
        XCTAssertEqual(vm.dirtyRingBytes, 0)
    }

    func testDirtyLogCallsOnAMissingSlotOrAWrongBitmap() throws {
        let system = try openKVM()
        let vm = try system.makeVM()
        try vm.addSlot(id: 3, guestPhysicalAddress: 0x4000_0000, memory: try GuestMemory(bytes: 100 * PageSize.system), logDirtyPages: true)
        var wrong = DirtyBitmap(pageCount: 64)
        let size = kvmError { try vm.getDirtyLog(slot: 3, into: &wrong) }
        guard case .invalidArgument(_, let reason)? = size else { return XCTFail("got \(String(describing: size))") }
        XCTAssertTrue(reason.contains("64") && reason.contains("100"), reason)
        var right = DirtyBitmap(pageCount: 100)
        let missing = kvmError { try vm.getDirtyLog(slot: 4, into: &right) }
        guard case .invalidArgument(_, let why)? = missing else { return XCTFail("got \(String(describing: missing))") }
        XCTAssertTrue(why.contains("slot 4"), why)
        try vm.getDirtyLog(slot: 3, into: &right)
        XCTAssertTrue(right.isEmpty, "nothing ran, nothing is dirty")
    }

    // MARK: File descriptors

    func testVMAndVCPUsCloseTheirDescriptors() throws {
        let system = try openKVM()
        let before = openFDCount()
        do {
            let vm = try system.makeVM()
            try vm.addSlot(id: 0, guestPhysicalAddress: 0, memory: try GuestMemory(bytes: 16 * PageSize.system), logDirtyPages: true)
            let vcpu = try vm.makeVCPU(id: 0)
            let stats = try vcpu.stats()
            let vmStats = try vm.stats()
            XCTAssertGreaterThanOrEqual(openFDCount(), before + 4, "VM, vCPU and two stats fds are open")
            withExtendedLifetime((vm, vcpu, stats, vmStats)) {}
        }
        XCTAssertEqual(openFDCount(), before, "every fd is closed with its owner")
    }

    func testFailedMachineInitLeavesNoDescriptorBehind() throws {
        let system = try openKVM()
        let empty = try temporaryFile([], name: "empty")
        defer { unlink(empty) }
        let tooMany = min(system.maxVCPUs, Int(DS_MAX_VCPUS)) + 1
        let cases: [(String, MachineConfig)] = [
            ("too many vCPUs", MachineConfig(slotBytes: [4 << 20], vcpus: tooMany, workload: noWrites)),
            ("empty guest file", MachineConfig(slotBytes: [4 << 20], vcpus: 1, guest: .file(empty), workload: noWrites)),
            ("odd slot size", MachineConfig(slotBytes: [4 << 20, 1000], vcpus: 1, workload: noWrites)),
            // These fail after the VM fd exists: it must be closed again.
            ("ring not a power of two", MachineConfig(slotBytes: [4 << 20], vcpus: 1, ringEntries: 1000, workload: noWrites)),
            ("unknown manual-protect flag", MachineConfig(slotBytes: [4 << 20], vcpus: 1,
                                                          initialManualProtect: ManualProtectFlags(rawValue: 1 << 40), workload: noWrites)),
        ]
        for (name, config) in cases {
            let before = openFDCount()
            let error = sessionError { _ = try GuestMachine(system: system, config: config) }
            XCTAssertNotNil(error, name)
            XCTAssertEqual(openFDCount(), before, "\(name): a failed init left an fd open")
        }
        let before = openFDCount()
        let error = sessionError { _ = try GuestMachine(system: system, config: cases[0].1) }
        guard case .invalidArgument(let message)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertTrue(message.contains("\(tooMany) vCPUs"), message)
        XCTAssertEqual(openFDCount(), before)
    }

    func testMachineReleasesItsDescriptorsWhenDropped() throws {
        let system = try openKVM()
        let before = openFDCount()
        do {
            let machine = try makeMachine(system, workload: noWrites)
            XCTAssertGreaterThan(openFDCount(), before)
            withExtendedLifetime(machine) {}
        }
        XCTAssertEqual(openFDCount(), before, "a machine that never ran")
        do {
            let machine = try makeMachine(system, workload: randomWrites(seed: 3))
            machine.start()
            XCTAssertTrue(eventually { machine.guestWrites > 0 }, "the guest writes")
            machine.stop()
        }
        XCTAssertEqual(openFDCount(), before, "a machine started and stopped")
    }

    /// `deinit { stop() }` suggests dropping a running machine stops it; the vCPU threads
    /// hold the machine strongly, so it must not stay alive (with its threads and fds).
    func testDroppingARunningMachineStopsIt() throws {
        let system = try openKVM()
        let before = openFDCount()
        weak var weakMachine: GuestMachine?
        do {
            let machine = try makeMachine(system, workload: noWrites)
            weakMachine = machine
            machine.start()
            XCTAssertTrue(eventually { machine.vcpuStatSum(["exits"]) > 0 })
        }
        if let leaked = weakMachine {
            XCTFail("a started GuestMachine outlives its last reference: its vCPU threads keep it (and its fds) alive")
            leaked.stop()
        }
        XCTAssertTrue(eventually(seconds: 5) { weakMachine == nil })
        XCTAssertEqual(openFDCount(), before)
    }

    // MARK: Binary statistics

    func testVMAndVCPUStatsHaveNames() throws {
        let system = try openKVM()
        guard system.check(.binaryStatsFD) > 0 else { throw XCTSkip("this host's KVM has no binary stats") }
        let vm = try system.makeVM()
        let vmStats = try vm.stats()
        XCTAssertFalse(vmStats.names.isEmpty)
        XCTAssertTrue(vmStats.names.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII } }, "\(vmStats.names)")
        XCTAssertEqual(Set(vmStats.names).count, vmStats.names.count, "names are unique")
        XCTAssertTrue(vmStats.descriptors.allSatisfy { $0.size >= 1 })
        XCTAssertNotNil(vmStats.value(vmStats.names[0]))
        XCTAssertNil(vmStats.value("no_such_statistic"))
        let vcpu = try vm.makeVCPU(id: 0)
        let stats = try vcpu.stats()
        XCTAssertTrue(stats.names.contains("exits"), "\(stats.names)")
        XCTAssertEqual(stats.value("exits"), 0, "a vCPU that never ran has no exits")
        XCTAssertEqual(stats.values(["exits", "no_such_statistic"]).count, 2)
    }

    func testExitsGrowOnceTheGuestRuns() throws {
        let system = try openKVM()
        let machine = try makeMachine(system, workload: randomWrites(seed: 5))
        defer { machine.stop() }
        XCTAssertTrue(machine.vcpuStatNames.contains("exits"), "\(machine.vcpuStatNames)")
        let before = machine.vcpuStatSum(["exits"])
        machine.start()
        XCTAssertTrue(eventually { machine.guestWrites >= 50 }, "the guest writes (\(machine.guestWrites) so far)")
        machine.pause()
        let after = machine.vcpuStatSum(["exits"])
        XCTAssertGreaterThan(after, before, "exits \(before) -> \(after)")
        XCTAssertNil(machine.currentFault)
    }
}

import DirtyScopeCore
import DirtyScopeModel
import KVM
import KVMTestSupport
import XCTest

/// Opens /dev/kvm, or skips the test saying why when the device cannot be opened. Any
/// other failure (not KVM, a wrong API version) fails the test: a broken host is not absent.
func kvmOrSkip(file: StaticString = #filePath, line: UInt = #line) throws -> KVMSystem { try openKVM(file: file, line: line) }

/// A one-vCPU machine whose guest writes only when the host says so.
func commandMachine(_ system: KVMSystem, slotBytes: [Int] = [4 << 20], mode: HarvestMode) throws -> GuestMachine {
    let machine = try GuestMachine(system: system, config: MachineConfig(
        slotBytes: slotBytes, vcpus: 1, initialManualProtect: mode == .manual ? [.enable] : [],
        workload: WorkloadSettings(workload: .idle, rate: 0)))
    machine.start()
    machine.enterCommandMode()
    return machine
}

/// A session on one 4 MiB slot harvesting every 20 ms, with a queue subscribed to it;
/// `adjust` changes the configuration first. Not started.
func smallSession(_ system: KVMSystem, _ adjust: (inout SessionConfig) -> Void = { _ in }) throws -> (Session, RecordQueue) {
    var config = SessionConfig()
    config.slotBytes = [4 << 20]
    config.intervalNanos = 20_000_000
    adjust(&config)
    let session = try Session(config: config, system: system)
    let queue = RecordQueue()
    session.subscribe(queue)
    return (session, queue)
}

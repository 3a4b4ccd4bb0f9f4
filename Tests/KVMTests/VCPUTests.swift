import CKVM
import Foundation
import KVM
import KVMTestSupport
import XCTest

/// The KVM layer without the session core: a VM built by hand in long mode, a few bytes
/// of machine code, and the exits `VCPU.run` decodes from them.
final class VCPUTests: XCTestCase {
    /// A VM with the system slot (GDT, identity map, `code` at DS_LOAD_GPA) and one
    /// dirty-logged data slot of `dataPages` at DS_DATA_GPA; vCPU 0 enters `code` with
    /// rdi = 7, rsi = 9.
    private struct Rig {
        let vm: VirtualMachine
        let vcpu: VCPU
        let data: MemorySlot
    }

    private func rig(_ system: KVMSystem, code: [UInt8], dataPages: Int = 64) throws -> Rig {
        let vm = try system.makeVM()
        let memory = try GuestMemory(bytes: Int(DS_SYSTEM_BYTES), what: "system memory")
        try vm.addSlot(id: 0, guestPhysicalAddress: 0, memory: memory, logDirtyPages: false)
        let data = try vm.addSlot(id: 1, guestPhysicalAddress: DS_DATA_GPA, memory: try GuestMemory(bytes: dataPages * PageSize.system),
                                  logDirtyPages: true)
        let gdtLimit = LongMode.writeGDT(hostBase: memory.base, gdtGPA: DS_GDT_GPA)
        let cr3 = LongMode.writeIdentityMap(hostBase: memory.base, tableGPA: DS_PAGETABLE_GPA, mapping: data.guestPhysicalEnd)
        XCTAssertEqual(cr3, DS_PAGETABLE_GPA)
        code.withUnsafeBytes { (memory.base + Int(DS_LOAD_GPA)).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let vcpu = try vm.makeVCPU(id: 0)
        try vcpu.setCPUID(try system.supportedCPUID())
        try vcpu.setSpecialRegisters(LongMode.specialRegisters(from: try vcpu.specialRegisters(), cr3: cr3, gdtGPA: DS_GDT_GPA,
                                                               gdtLimit: gdtLimit))
        try vcpu.setRegisters(LongMode.registers(rip: DS_LOAD_GPA, rsp: DS_STACK_GPA + DS_STACK_BYTES - 8, rdi: 7, rsi: 9))
        return Rig(vm: vm, vcpu: vcpu, data: data)
    }

    /// Runs until an exit that is not a kick.
    private func next(_ vcpu: VCPU) throws -> VCPUExit {
        while true {
            let exit = try vcpu.run()
            if exit != .interrupted { return exit }
        }
    }

    func testPortIOAndHaltAreDecoded() throws {
        let system = try openKVM()
        let code: [UInt8] = [
            0xba, 0xd3, 0x05, 0x00, 0x00,   // mov edx, 0x5d3
            0x89, 0xf8,                     // mov eax, edi
            0xef,                           // out dx, eax
            0xed,                           // in eax, dx
            0x01, 0xf0,                     // add eax, esi
            0xef,                           // out dx, eax
            0xb0, 0x5a,                     // mov al, 0x5a
            0xee,                           // out dx, al
            0xf4,                           // hlt
        ]
        let r = try rig(system, code: code)
        let sregs = try r.vcpu.specialRegisters()
        XCTAssertEqual(sregs.efer & 0x500, 0x500, "long mode is on")
        XCTAssertEqual(sregs.cs.l, 1)
        XCTAssertEqual(try next(r.vcpu), .portOut(port: 0x5d3, size: 4, value: 7))
        XCTAssertEqual(try next(r.vcpu), .portIn(port: 0x5d3, size: 4))
        r.vcpu.completePortIn(100)
        XCTAssertEqual(try next(r.vcpu), .portOut(port: 0x5d3, size: 4, value: 109))
        XCTAssertEqual(try next(r.vcpu), .portOut(port: 0x5d3, size: 1, value: 0x5a))
        XCTAssertEqual(try next(r.vcpu), .halt)
        let regs = try r.vcpu.registers()
        XCTAssertEqual(regs.rip, DS_LOAD_GPA + UInt64(code.count))
        XCTAssertEqual(regs.rax & 0xffff_ffff, 0x5a)
        XCTAssertFalse(VCPUExit.halt.isFault)
        XCTAssertTrue(VCPUExit.shutdown.isFault)
    }

    /// KVM_RUN writes through the memslots' host mappings, which the VM owns: a vCPU whose
    /// VM the caller dropped must keep it, or the guest's store would hit unmapped memory.
    func testVCPUKeepsItsVMAndMemoryAlive() throws {
        let system = try openKVM()
        let store: [UInt8] = [0xc6, 0x04, 0x25] + withUnsafeBytes(of: UInt32(DS_DATA_GPA + 8).littleEndian) { Array($0) } + [0x2a]
        var r: Rig? = try rig(system, code: store + [0xf4])
        let vcpu = r!.vcpu
        weak var vm = r!.vm
        weak var memory = r!.data.memory
        r = nil
        XCTAssertNotNil(vm, "the vCPU holds its VM")
        XCTAssertNotNil(memory, "and so the memslot's mapping")
        XCTAssertEqual(try next(vcpu), .halt)
        XCTAssertEqual(memory?.page(0).load(fromByteOffset: 8, as: UInt8.self), 0x2a)
    }

    func testGuestWritesShowUpInTheDirtyLog() throws {
        let system = try openKVM()
        let page = UInt32(PageSize.system)
        func store(_ pageIndex: UInt32) -> [UInt8] {   // mov byte [DS_DATA_GPA + page * size], 1
            let a = UInt32(DS_DATA_GPA) + pageIndex * page + 8
            return [0xc6, 0x04, 0x25] + withUnsafeBytes(of: a.littleEndian) { Array($0) } + [0x01]
        }
        let code = store(1) + store(63) + store(64) + store(1) + [0xf4]
        let r = try rig(system, code: code, dataPages: 100)
        var before = DirtyBitmap(pageCount: 100)
        try r.vm.getDirtyLog(slot: 1, into: &before)
        XCTAssertTrue(before.isEmpty)
        XCTAssertEqual(try next(r.vcpu), .halt)
        var after = DirtyBitmap(pageCount: 100)
        try r.vm.getDirtyLog(slot: 1, into: &after)
        XCTAssertEqual(after.setPages, [1, 63, 64])
        XCTAssertEqual(r.data.memory.page(63).load(fromByteOffset: 8, as: UInt8.self), 1)
        // Legacy GET cleared the log.
        try r.vm.getDirtyLog(slot: 1, into: &after)
        XCTAssertTrue(after.isEmpty)
        // The host's own writes to guest memory are not guest writes: KVM does not see them.
        r.data.memory.page(5).storeBytes(of: 1, as: UInt8.self)
        try r.vm.getDirtyLog(slot: 1, into: &after)
        XCTAssertTrue(after.isEmpty)
        XCTAssertGreaterThan(try r.vcpu.stats().value("exits") ?? 0, 0)
    }

    func testImmediateExitAndKickInterruptKVMRun() throws {
        let system = try openKVM()
        XCTAssertGreaterThan(system.check(.immediateExit), 0)
        let r = try rig(system, code: [0xeb, 0xfe])   // jmp $
        r.vcpu.requestImmediateExit()
        XCTAssertEqual(try r.vcpu.run(), .interrupted, "immediate_exit set before KVM_RUN")

        // A spinning guest on another thread, kicked with a signal.
        VCPUKick.installHandler()
        let thread = Locked<pthread_t?>(nil)
        let result = Locked<Result<VCPUExit, KVMError>?>(nil)
        let vcpu = r.vcpu
        let done = DispatchSemaphore(value: 0)
        let t = Thread {
            thread.withLock { $0 = pthread_self() }
            let exit: Result<VCPUExit, KVMError>
            do throws(KVMError) { exit = .success(try vcpu.run()) } catch { exit = .failure(error) }
            result.withLock { $0 = exit }
            done.signal()
        }
        t.start()
        XCTAssertTrue(eventually { thread.withLock { $0 } != nil })
        usleep(20_000)
        XCTAssertNil(result.withLock { $0 }, "the guest spins until kicked")
        var kicked = false
        for _ in 0..<200 where !kicked {
            vcpu.requestImmediateExit()
            if let p = thread.withLock({ $0 }) { VCPUKick.signal(p) }
            kicked = done.wait(timeout: .now() + .milliseconds(50)) == .success
        }
        XCTAssertTrue(kicked, "KVM_RUN returned after a kick")
        XCTAssertEqual(try result.withLock { $0 }?.get(), .interrupted)
        // The guest is where it was.
        XCTAssertEqual(try r.vcpu.registers().rip, DS_LOAD_GPA)
    }
}

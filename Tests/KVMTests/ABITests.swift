import CKVM
import DirtyScopeModel
import KVM
import XCTest

/// Pins the numbers the C shim exports and the guest/host ABI layout. The hex values are
/// written out by hand from the _IOC encoding of <linux/kvm.h> (KVMIO = 0xAE):
/// dir << 30 | size << 16 | 0xAE << 8 | nr, with dir 0 for _IO, 1 for _IOW, 2 for _IOR, 3 for _IOWR.
final class ABITests: XCTestCase {
    /// The same encoding, so each literal below is also checked against its parts.
    private func ioc(_ dir: UInt, _ nr: UInt, size: UInt = 0) -> UInt { dir << 30 | size << 16 | 0xAE << 8 | nr }

    func testRequestNumbersMatchTheirKnownValues() {
        let pins: [(String, UInt, UInt, UInt)] = [
            // name, shim constant, known value, the value rebuilt from (dir, nr, size)
            ("KVM_GET_API_VERSION", ckvm_KVM_GET_API_VERSION, 0xae00, ioc(0, 0x00)),
            ("KVM_CREATE_VM", ckvm_KVM_CREATE_VM, 0xae01, ioc(0, 0x01)),
            ("KVM_CHECK_EXTENSION", ckvm_KVM_CHECK_EXTENSION, 0xae03, ioc(0, 0x03)),
            ("KVM_GET_VCPU_MMAP_SIZE", ckvm_KVM_GET_VCPU_MMAP_SIZE, 0xae04, ioc(0, 0x04)),
            ("KVM_GET_SUPPORTED_CPUID", ckvm_KVM_GET_SUPPORTED_CPUID, 0xc008ae05, ioc(3, 0x05, size: 8)),      // kvm_cpuid2 header
            ("KVM_CREATE_VCPU", ckvm_KVM_CREATE_VCPU, 0xae41, ioc(0, 0x41)),
            ("KVM_SET_USER_MEMORY_REGION", ckvm_KVM_SET_USER_MEMORY_REGION, 0x4020ae46, ioc(1, 0x46, size: 32)),
            ("KVM_GET_DIRTY_LOG", ckvm_KVM_GET_DIRTY_LOG, 0x4010ae42, ioc(1, 0x42, size: 16)),
            ("KVM_CLEAR_DIRTY_LOG", ckvm_KVM_CLEAR_DIRTY_LOG, 0xc018aec0, ioc(3, 0xc0, size: 24)),
            ("KVM_ENABLE_CAP", ckvm_KVM_ENABLE_CAP, 0x4068aea3, ioc(1, 0xa3, size: 104)),              // kvm_enable_cap
            ("KVM_RESET_DIRTY_RINGS", ckvm_KVM_RESET_DIRTY_RINGS, 0xaec7, ioc(0, 0xc7)),
            ("KVM_GET_STATS_FD", ckvm_KVM_GET_STATS_FD, 0xaece, ioc(0, 0xce)),
            ("KVM_RUN", ckvm_KVM_RUN, 0xae80, ioc(0, 0x80)),
            ("KVM_GET_REGS", ckvm_KVM_GET_REGS, 0x8090ae81, ioc(2, 0x81, size: 144)),                  // kvm_regs: 18 u64
            ("KVM_SET_REGS", ckvm_KVM_SET_REGS, 0x4090ae82, ioc(1, 0x82, size: 144)),
            ("KVM_GET_SREGS", ckvm_KVM_GET_SREGS, 0x8138ae83, ioc(2, 0x83, size: 312)),                // kvm_sregs
            ("KVM_SET_SREGS", ckvm_KVM_SET_SREGS, 0x4138ae84, ioc(1, 0x84, size: 312)),
            ("KVM_SET_CPUID2", ckvm_KVM_SET_CPUID2, 0x4008ae90, ioc(1, 0x90, size: 8)),
            ("KVM_GET_MSRS", ckvm_KVM_GET_MSRS, 0xc008ae88, ioc(3, 0x88, size: 8)),                    // kvm_msrs header
            ("KVM_SET_MSRS", ckvm_KVM_SET_MSRS, 0x4008ae89, ioc(1, 0x89, size: 8)),
            ("KVM_GET_TSC_KHZ", ckvm_KVM_GET_TSC_KHZ, 0xaea3, ioc(0, 0xa3)),
            ("KVM_GET_MSR_INDEX_LIST", ckvm_KVM_GET_MSR_INDEX_LIST, 0xc004ae02, ioc(3, 0x02, size: 4)),      // kvm_msr_list header
            ("KVM_GET_XSAVE", ckvm_KVM_GET_XSAVE, 0x9000aea4, ioc(2, 0xa4, size: 4096)),
            ("KVM_GET_XSAVE2", ckvm_KVM_GET_XSAVE2, 0x9000aecf, ioc(2, 0xcf, size: 4096)),
            ("KVM_SET_XSAVE", ckvm_KVM_SET_XSAVE, 0x5000aea5, ioc(1, 0xa5, size: 4096)),
            ("KVM_GET_XCRS", ckvm_KVM_GET_XCRS, 0x8188aea6, ioc(2, 0xa6, size: 392)),
            ("KVM_SET_XCRS", ckvm_KVM_SET_XCRS, 0x4188aea7, ioc(1, 0xa7, size: 392)),
            ("KVM_GET_VCPU_EVENTS", ckvm_KVM_GET_VCPU_EVENTS, 0x8040ae9f, ioc(2, 0x9f, size: 64)),
            ("KVM_SET_VCPU_EVENTS", ckvm_KVM_SET_VCPU_EVENTS, 0x4040aea0, ioc(1, 0xa0, size: 64)),
            ("KVM_GET_DEBUGREGS", ckvm_KVM_GET_DEBUGREGS, 0x8080aea1, ioc(2, 0xa1, size: 128)),
            ("KVM_SET_DEBUGREGS", ckvm_KVM_SET_DEBUGREGS, 0x4080aea2, ioc(1, 0xa2, size: 128)),
            ("KVM_GET_MP_STATE", ckvm_KVM_GET_MP_STATE, 0x8004ae98, ioc(2, 0x98, size: 4)),
            ("KVM_SET_MP_STATE", ckvm_KVM_SET_MP_STATE, 0x4004ae99, ioc(1, 0x99, size: 4)),
        ]
        for (name, shim, known, rebuilt) in pins {
            XCTAssertEqual(known, rebuilt, "\(name): the pinned literal disagrees with its _IOC encoding")
            XCTAssertEqual(shim, known, "\(name) is 0x\(String(shim, radix: 16)), expected 0x\(String(known, radix: 16))")
        }
    }

    func testStructSizesMatchTheKernelABI() {
        XCTAssertEqual(Int(CKVM_SIZEOF_DIRTY_LOG), 16)
        XCTAssertEqual(Int(CKVM_SIZEOF_CLEAR_DIRTY_LOG), 24)
        XCTAssertEqual(Int(CKVM_SIZEOF_USER_MEMORY_REGION), 32)
        XCTAssertEqual(Int(CKVM_SIZEOF_DIRTY_GFN), 16)
        XCTAssertEqual(Int(CKVM_SIZEOF_STATS_HEADER), 24)
        XCTAssertEqual(Int(CKVM_SIZEOF_STATS_DESC), 16)
        // Swift's view of the imported structs must agree with C's.
        XCTAssertEqual(MemoryLayout<kvm_dirty_log>.size, Int(CKVM_SIZEOF_DIRTY_LOG))
        XCTAssertEqual(MemoryLayout<kvm_clear_dirty_log>.size, Int(CKVM_SIZEOF_CLEAR_DIRTY_LOG))
        XCTAssertEqual(MemoryLayout<kvm_userspace_memory_region>.size, Int(CKVM_SIZEOF_USER_MEMORY_REGION))
        XCTAssertEqual(MemoryLayout<kvm_dirty_gfn>.size, Int(CKVM_SIZEOF_DIRTY_GFN))
        XCTAssertEqual(MemoryLayout<kvm_stats_header>.size, Int(CKVM_SIZEOF_STATS_HEADER))
        XCTAssertEqual(MemoryLayout<kvm_enable_cap>.size, 104)
        XCTAssertEqual(MemoryLayout<kvm_regs>.size, 144)
        XCTAssertEqual(MemoryLayout<kvm_sregs>.size, 312)
        // kvm_dirty_gfn: flags, slot, offset.
        XCTAssertEqual(MemoryLayout<kvm_dirty_gfn>.offset(of: \.flags), 0)
        XCTAssertEqual(MemoryLayout<kvm_dirty_gfn>.offset(of: \.slot), 4)
        XCTAssertEqual(MemoryLayout<kvm_dirty_gfn>.offset(of: \.offset), 8)
    }

    func testDirtyGFNFlagBits() {
        XCTAssertEqual(ckvm_DIRTY_GFN_F_DIRTY, 1)
        XCTAssertEqual(ckvm_DIRTY_GFN_F_RESET, 2)
    }

    func testCapabilityNumbersMatchTheHeader() {
        let header: [Capability: Int32] = [
            .nrVCPUs: KVM_CAP_NR_VCPUS, .nrMemslots: KVM_CAP_NR_MEMSLOTS, .maxVCPUs: KVM_CAP_MAX_VCPUS,
            .manualDirtyLogProtect2: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .multiAddressSpace: KVM_CAP_MULTI_ADDRESS_SPACE,
            .dirtyLogRing: KVM_CAP_DIRTY_LOG_RING, .dirtyLogRingAcqRel: KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
            .dirtyLogRingWithBitmap: 225,  // newer than this system's <linux/kvm.h>
            .binaryStatsFD: KVM_CAP_BINARY_STATS_FD,
            .immediateExit: KVM_CAP_IMMEDIATE_EXIT, .userMemory: KVM_CAP_USER_MEMORY, .readonlyMem: KVM_CAP_READONLY_MEM,
            .xsave2: KVM_CAP_XSAVE2,
        ]
        for c in Capability.allCases {
            XCTAssertEqual(c.rawValue, header[c].map { UInt($0) }, "\(c.name)")
            XCTAssertTrue(c.name.hasPrefix("KVM_CAP_"), c.name)
        }
        XCTAssertEqual(ManualProtectFlags.enable.rawValue, UInt64(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE))
        XCTAssertEqual(ManualProtectFlags.initiallySet.rawValue, UInt64(KVM_DIRTY_LOG_INITIALLY_SET))
        XCTAssertEqual(ManualProtectFlags([.enable, .initiallySet]).names, ["MANUAL_PROTECT_ENABLE", "INITIALLY_SET"])
        XCTAssertEqual(ManualProtectFlags(rawValue: 5).names, ["MANUAL_PROTECT_ENABLE", "0x4"])
    }

    func testGuestHostABILayout() {
        XCTAssertEqual(Int(CKVM_SIZEOF_DS_VCPU), 256)
        XCTAssertEqual(MemoryLayout<ds_vcpu>.size, 256)
        XCTAssertEqual(MemoryLayout<ds_region>.size, 16)
        XCTAssertEqual(MemoryLayout<ds_control>.offset(of: \.region), 512)
        XCTAssertEqual(MemoryLayout<ds_control>.offset(of: \.vcpu), 1024)
        XCTAssertEqual(Int(CKVM_SIZEOF_DS_CONTROL), 1024 + Int(DS_MAX_VCPUS) * 256)
        XCTAssertEqual(MemoryLayout<ds_control>.size, Int(CKVM_SIZEOF_DS_CONTROL))
        XCTAssertLessThanOrEqual(UInt64(CKVM_SIZEOF_DS_CONTROL), DS_CONTROL_BYTES)
        // Host-written fields first, then the guest's; the guest's block starts at 128.
        XCTAssertEqual(MemoryLayout<ds_vcpu>.offset(of: \.generation), 4)
        XCTAssertEqual(MemoryLayout<ds_vcpu>.offset(of: \.command_seq), 96)
        XCTAssertEqual(MemoryLayout<ds_vcpu>.offset(of: \.writes), 128)
        XCTAssertEqual(MemoryLayout<ds_vcpu>.offset(of: \.command_ack), 152)
        XCTAssertEqual(DS_ABI_MAGIC, 0x4550_4f43_5344_5344)
        XCTAssertEqual(DS_STAMP_VCPU_BITS, 8)
        // Version 2: stamps come from per-vCPU ranges of ds_control.stamp; last_page is gone.
        // Version 3 adds the timeline and clock exchanges in what version 2 reserved.
        XCTAssertEqual(DS_ABI_VERSION, 3)
        XCTAssertEqual(DS_ABI_MIN_COMPATIBLE, 2)
        XCTAssertEqual(DS_STAMP_STEP, 1 << DS_STAMP_VCPU_BITS)
        XCTAssertEqual(MemoryLayout<ds_vcpu>.offset(of: \.flags), 104)
        XCTAssertEqual(MemoryLayout<ds_vcpu>.offset(of: \.clock_request), 112)
        XCTAssertEqual(MemoryLayout<ds_vcpu>.offset(of: \.timeline_head), 160)
        XCTAssertEqual(MemoryLayout<ds_vcpu>.offset(of: \.clock_before), 168)
        XCTAssertEqual(MemoryLayout<ds_vcpu>.offset(of: \.clock_after), 176)
        XCTAssertEqual(MemoryLayout<ds_vcpu>.offset(of: \.clock_served), 184)
        XCTAssertEqual(MemoryLayout<ds_vcpu>.offset(of: \.guest_reserved), 192)
        // The timeline record, and the host's copy of its layout.
        XCTAssertEqual(MemoryLayout<ds_tick>.size, 32)
        XCTAssertEqual(MemoryLayout<ds_tick>.offset(of: \.tsc), 0)
        XCTAssertEqual(MemoryLayout<ds_tick>.offset(of: \.steal), 8)
        XCTAssertEqual(MemoryLayout<ds_tick>.offset(of: \.writes), 16)
        XCTAssertEqual(MemoryLayout<ds_tick>.offset(of: \.kind), 20)
        XCTAssertEqual(MemoryLayout<ds_tick>.offset(of: \.seq), 24)
        XCTAssertEqual(DS_TIMELINE_RECORDS, 4096)
        XCTAssertEqual(DS_TICK_START.rawValue, 0)
        XCTAssertEqual(DS_TICK_WORK.rawValue, 1)
        XCTAssertEqual(DS_TICK_RESUME.rawValue, 2)
        // KVM's steal-time record: 64 bytes per vCPU, between the control block and the page tables.
        XCTAssertEqual(Int(CKVM_SIZEOF_STEAL_TIME), Int(DS_STEAL_BYTES))
        XCTAssertLessThanOrEqual(DS_CONTROL_GPA + DS_CONTROL_BYTES, DS_STEAL_GPA)
        XCTAssertLessThanOrEqual(DS_STEAL_GPA + UInt64(DS_MAX_VCPUS) * DS_STEAL_BYTES, DS_PAGETABLE_GPA)
        XCTAssertEqual(ckvm_MSR_KVM_STEAL_TIME, 0x4b56_4d03)
        XCTAssertLessThanOrEqual(DS_STACK_GPA + UInt64(DS_MAX_VCPUS) * DS_STACK_BYTES, DS_TIMELINE_GPA)
        XCTAssertLessThanOrEqual(DS_TIMELINE_GPA + UInt64(DS_MAX_VCPUS) * DS_TIMELINE_BYTES, DS_SYSTEM_BYTES)
        XCTAssertLessThanOrEqual(DS_MAX_VCPUS, 1 << DS_STAMP_VCPU_BITS)
        // The system area's pieces do not overlap and data starts above it.
        XCTAssertLessThanOrEqual(DS_CONTROL_GPA + DS_CONTROL_BYTES, DS_PAGETABLE_GPA)
        XCTAssertLessThanOrEqual(DS_PAGETABLE_GPA + DS_PAGETABLE_BYTES, DS_LOAD_GPA)
        XCTAssertLessThanOrEqual(DS_LOAD_GPA + DS_MAX_GUEST_BYTES, DS_STACK_GPA)
        XCTAssertLessThanOrEqual(DS_STACK_GPA + UInt64(DS_MAX_VCPUS) * DS_STACK_BYTES, DS_SYSTEM_BYTES)
        XCTAssertLessThanOrEqual(DS_SYSTEM_BYTES, DS_DATA_GPA)
        XCTAssertLessThan(DS_DATA_GPA, DS_MMIO_HOLE_GPA)
        XCTAssertLessThanOrEqual(UInt64(LongMode.pageTableBytes(mapping: DS_MAX_GPA)), DS_PAGETABLE_BYTES)
    }

    func testWorkloadNumbersMatchTheGuest() {
        let guest: [Workload: ds_workload] = [
            .idle: DS_WL_IDLE, .sweep: DS_WL_SWEEP, .random: DS_WL_RANDOM,
            .hotset: DS_WL_HOTSET, .stripes: DS_WL_STRIPES, .wave: DS_WL_WAVE,
        ]
        for w in Workload.allCases {
            XCTAssertEqual(w.abiValue, guest[w]?.rawValue, "\(w)")
        }
        XCTAssertEqual(DS_WL_COMMAND.rawValue, 6)
        XCTAssertEqual(Set(Workload.allCases.map(\.abiValue)).count, Workload.allCases.count)
    }
}

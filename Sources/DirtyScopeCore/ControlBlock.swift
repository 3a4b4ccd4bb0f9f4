import CKVM
import DirtyScopeModel
import KVM

/// The guest's `struct ds_control` (Guests/include/dirtyscope_abi.h), read and written
/// through the system slot's mapping. Fields the guest may touch concurrently go through
/// atomic loads and stores, never plain Swift accesses.
struct ControlBlock: @unchecked Sendable {
    /// The system slot's memory, held so `base` stays mapped as long as the block is used.
    let memory: GuestMemory
    let base: UnsafeMutableRawPointer

    /// The block at `offset` bytes into `memory`.
    init(memory: GuestMemory, offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<ds_control>.size <= memory.byteCount, "control block outside its memory")
        self.memory = memory
        base = memory.base + offset
    }

    /// Offsets within `struct ds_vcpu`, from the imported C layout.
    /// The 64-bit fields only: `workload` and `generation` (two u32s) are written as one
    /// word by `configure`, so no field here can be a misaligned 8-byte access.
    enum Field: CaseIterable {
        case seed, param0, param1, rate, batch, firstPage, numPages, passWrites
        case commandPage, commandSeq, writes, passes, heartbeat, commandAck
        /// `flags` (u32) and its padding, as one word.
        case flags
        case clockRequest, chunkTicks, timelineHead, clockBefore, clockAfter, clockServed

        var offset: Int {
            let l = MemoryLayout<ds_vcpu>.self
            switch self {
            case .seed: return l.offset(of: \.seed)!
            case .param0: return l.offset(of: \.param)!
            case .param1: return l.offset(of: \.param)! + 8
            case .rate: return l.offset(of: \.rate)!
            case .batch: return l.offset(of: \.batch)!
            case .firstPage: return l.offset(of: \.first_page)!
            case .numPages: return l.offset(of: \.num_pages)!
            case .passWrites: return l.offset(of: \.pass_writes)!
            case .commandPage: return l.offset(of: \.command_page)!
            case .commandSeq: return l.offset(of: \.command_seq)!
            case .writes: return l.offset(of: \.writes)!
            case .passes: return l.offset(of: \.passes)!
            case .heartbeat: return l.offset(of: \.heartbeat)!
            case .commandAck: return l.offset(of: \.command_ack)!
            case .flags: return l.offset(of: \.flags)!
            case .clockRequest: return l.offset(of: \.clock_request)!
            case .chunkTicks: return l.offset(of: \.chunk_ticks)!
            case .timelineHead: return l.offset(of: \.timeline_head)!
            case .clockBefore: return l.offset(of: \.clock_before)!
            case .clockAfter: return l.offset(of: \.clock_after)!
            case .clockServed: return l.offset(of: \.clock_served)!
            }
        }
    }

    private var control: UnsafeMutablePointer<ds_control> { base.assumingMemoryBound(to: ds_control.self) }

    /// Writes the header: magic, version, page size, regions and vCPU count.
    func initialize(pageSize: Int, vcpus: Int, regions: [(gpa: UInt64, pages: Int)]) {
        base.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<ds_control>.size)
        control.pointee.magic = DS_ABI_MAGIC
        control.pointee.version = DS_ABI_VERSION
        control.pointee.page_size = UInt32(pageSize)
        control.pointee.nr_vcpus = UInt32(vcpus)
        control.pointee.nr_regions = UInt32(regions.count)
        control.pointee.total_pages = UInt64(regions.reduce(0) { $0 + $1.pages })
        let regionBase = base + MemoryLayout<ds_control>.offset(of: \.region)!
        for (i, r) in regions.enumerated() {
            let p = (regionBase + i * MemoryLayout<ds_region>.stride).assumingMemoryBound(to: ds_region.self)
            p.pointee = ds_region(gpa: r.gpa, pages: UInt64(r.pages))
        }
    }

    private func pointer(_ vcpu: Int, _ field: Field) -> UnsafeMutablePointer<UInt64> {
        let vcpus = base + MemoryLayout<ds_control>.offset(of: \.vcpu)!
        // Safe: every field read through here is 8-byte aligned (ds_vcpu is 256 bytes of u64s
        // after two u32s, which are handled as a pair by `workloadAndGeneration`).
        return (vcpus + vcpu * MemoryLayout<ds_vcpu>.stride + field.offset).assumingMemoryBound(to: UInt64.self)
    }

    /// Reads a 64-bit field with acquire ordering.
    func load(_ vcpu: Int, _ field: Field) -> UInt64 { ckvm_load_acquire_u64(pointer(vcpu, field)) }

    /// Writes a 64-bit field with release ordering.
    func store(_ vcpu: Int, _ field: Field, _ value: UInt64) { ckvm_store_release_u64(pointer(vcpu, field), value) }

    /// Sets workload, parameters and flags, then bumps `generation` (release) so the guest re-reads.
    func configure(_ vcpu: Int, workload: UInt32, settings: WorkloadSettings, passWrites: UInt64, flags: UInt32,
                   chunkTicks: UInt64 = 0) {
        store(vcpu, .flags, UInt64(flags))
        store(vcpu, .chunkTicks, chunkTicks)
        store(vcpu, .seed, settings.seed &+ UInt64(vcpu) &* 0x9e37_79b9_7f4a_7c15)
        store(vcpu, .param0, settings.param0)
        store(vcpu, .param1, settings.param1)
        setRate(vcpu, settings.rate)
        store(vcpu, .passWrites, passWrites)
        // workload (u32) and generation (u32) share the first 8 bytes: generation in the high half.
        let word = (base + MemoryLayout<ds_control>.offset(of: \.vcpu)! + vcpu * MemoryLayout<ds_vcpu>.stride)
            .assumingMemoryBound(to: UInt64.self)
        let generation = (ckvm_load_acquire_u64(word) >> 32) &+ 1
        ckvm_store_release_u64(word, (generation << 32) | UInt64(workload))
    }

    /// What vCPU `vcpu` was told to run, as its control block holds it (a guest migrated
    /// here brings its own); nil for a workload this tool does not know.
    func workload(_ vcpu: Int) -> WorkloadSettings? {
        let word = (base + MemoryLayout<ds_control>.offset(of: \.vcpu)! + vcpu * MemoryLayout<ds_vcpu>.stride)
            .assumingMemoryBound(to: UInt64.self)
        let id = UInt32(truncatingIfNeeded: ckvm_load_acquire_u64(word))
        guard let workload = Workload.allCases.first(where: { $0.abiValue == id }) else { return nil }
        return WorkloadSettings(workload: workload, rate: load(vcpu, .rate), param0: load(vcpu, .param0), param1: load(vcpu, .param1),
                                seed: load(vcpu, .seed) &- UInt64(vcpu) &* 0x9e37_79b9_7f4a_7c15)
    }

    /// Sets the target rate and a batch that makes pacing calls about every 2 ms.
    func setRate(_ vcpu: Int, _ rate: UInt64) {
        store(vcpu, .rate, rate)
        store(vcpu, .batch, rate == 0 ? 256 : max(1, rate / 500))
    }
}

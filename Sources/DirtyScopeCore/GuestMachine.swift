import CKVM
import DirtyScopeModel
import Foundation
import GuestImages
import KVM

/// Which program runs in the guest.
public enum GuestProgram: Equatable, Sendable {
    /// A guest built from Guests/ (by folder name), normally "workload".
    case builtin(String)
    /// A user's flat binary, loaded at DS_LOAD_GPA and entered at its first byte.
    case file(String)

    /// Loads the image, checking size limits; errors name the value and the limit.
    func load() throws(SessionError) -> (name: String, bytes: [UInt8], stamps: Bool) {
        switch self {
        case .builtin(let name):
            guard let bytes = GuestImages.image(named: name) else {
                throw .invalidArgument("no built-in guest named '\(name)' (have: \(GuestImages.names.joined(separator: ", ")))")
            }
            return (name, bytes, true)
        case .file(let path):
            let limit = Int(DS_MAX_GUEST_BYTES)
            var st = stat()
            guard stat(path, &st) == 0 else {
                throw .invalidArgument("guest file '\(path)' cannot be read: \(String(cString: strerror(errno)))")
            }
            guard st.st_mode & S_IFMT == S_IFREG else {
                throw .invalidArgument("guest file '\(path)' is not a regular file (a directory, FIFO or device)")
            }
            guard let handle = FileHandle(forReadingAtPath: path) else {
                throw .invalidArgument("guest file '\(path)' cannot be read: \(String(cString: strerror(errno)))")
            }
            defer { try? handle.close() }
            let data = (try? handle.read(upToCount: limit + 1)) ?? Data()
            guard !data.isEmpty else { throw .invalidArgument("guest file '\(path)' is empty") }
            guard data.count <= limit else {
                throw .invalidArgument("guest file '\(path)' is larger than the \(limit)-byte limit (\(limit / 1024) KiB)")
            }
            return ((path as NSString).lastPathComponent, [UInt8](data), false)
        }
    }
}

/// A guest that stopped with a fault, with the registers at the time.
public struct GuestFault: Error, Equatable, Sendable, CustomStringConvertible {
    public let vcpu: Int
    public let reason: String
    public let rip: UInt64
    public let rsp: UInt64
    public let cr3: UInt64

    public var description: String {
        "vCPU \(vcpu): \(reason) at rip=0x\(String(rip, radix: 16)) rsp=0x\(String(rsp, radix: 16)) cr3=0x\(String(cr3, radix: 16))"
    }
}

/// How the VM is built.
public struct MachineConfig: Sendable {
    /// Sizes of the data memslots in bytes (each a multiple of the page size).
    public var slotBytes: [Int]
    public var vcpus: Int
    public var guest: GuestProgram
    /// Per-vCPU dirty ring entries; 0 turns rings off.
    public var ringEntries: Int
    /// Manual-protect flags enabled before the memslots exist (INITIALLY_SET only
    /// matters then); `[]` starts in legacy mode.
    public var initialManualProtect: ManualProtectFlags
    public var workload: WorkloadSettings
    /// dirty_log_perf_test style: vCPUs stop after each pass until the host starts the next.
    public var lockstep: Bool
    /// Writes per pass in lockstep mode (0 = the workload's natural pass).
    public var passWrites: UInt64
    /// The guest logs its timeline (ABI 3); off only to measure what logging costs.
    public var guestTimeline: Bool
    /// The data slots log dirty pages from the start (false: the untracked baseline).
    public var trackDirtyPages: Bool

    public init(slotBytes: [Int], vcpus: Int, guest: GuestProgram = .builtin("workload"), ringEntries: Int = 0,
                initialManualProtect: ManualProtectFlags = [], workload: WorkloadSettings, lockstep: Bool = false,
                passWrites: UInt64 = 0, guestTimeline: Bool = true, trackDirtyPages: Bool = true) {
        self.guestTimeline = guestTimeline
        self.trackDirtyPages = trackDirtyPages
        self.slotBytes = slotBytes
        self.vcpus = vcpus
        self.guest = guest
        self.ringEntries = ringEntries
        self.initialManualProtect = initialManualProtect
        self.workload = workload
        self.lockstep = lockstep
        self.passWrites = passWrites
    }
}

/// The VM with its guest: the system slot (code, page tables, control block, stacks),
/// the data slots DirtyScope watches, and one thread per vCPU. It handles the guest's
/// port calls (pacing, passes, idling, console, panic), stops the world on request,
/// and reports faults instead of crashing.
public final class GuestMachine: @unchecked Sendable {
    public let system: KVMSystem
    public let vm: VirtualMachine
    public let config: MachineConfig
    public let dataSlots: [MemorySlot]
    public let guestName: String
    /// Whether the guest stamps pages (the built-in one does; a user's may not).
    public let guestStamps: Bool
    let systemMemory: GuestMemory
    let control: ControlBlock
    let vcpus: [VCPU]
    private let vcpuStats: [BinaryStats]
    private let vmStats: BinaryStats?
    /// The `ds_vcpu.flags` the guest gets (DS_VCPU_F_TIMELINE unless turned off).
    private let vcpuFlags: UInt32
    /// Each vCPU's TSC frequency (KVM_GET_TSC_KHZ, in ticks per second; 0 if KVM did not say).
    public let tscTicksPerSecond: [UInt64]
    /// Whether KVM keeps each vCPU's steal time in guest memory (MSR_KVM_STEAL_TIME was accepted).
    public let stealTime: Bool
    /// How long an unpaced chunk of guest writes should take (`ds_vcpu.chunk_ticks`): the
    /// timeline's resolution, whatever a write costs. 2 ms keeps the guest's own cost of
    /// logging small on a host that emulates guest instructions (README).
    public static let chunkNanos: UInt64 = 2_000_000

    private func chunkTicks(vcpu i: Int) -> UInt64 { tscTicksPerSecond[i] * Self.chunkNanos / 1_000_000_000 }

    /// The vCPU threads and everything they share; they hold it, not the machine, so
    /// dropping the machine's last reference stops them (deinit).
    private let threads: VCPUThreads

    /// Linear page offset of each data slot.
    let slotFirstLinear: [Int]

    /// Called (from a vCPU thread) when the guest faults or a ring fills. Set before `start`.
    public var onFault: (@Sendable (GuestFault) -> Void)? {
        get { threads.onFault }
        set { threads.onFault = newValue }
    }
    public var onRingFull: (@Sendable (Int, UInt64) -> Void)? {
        get { threads.onRingFull }
        set { threads.onRingFull = newValue }
    }
    /// Called (from a vCPU thread) with each line the guest writes to DS_PORT_PUTC.
    public var onConsoleLine: (@Sendable (String) -> Void)? {
        get { threads.onConsoleLine }
        set { threads.onConsoleLine = newValue }
    }

    /// Builds the VM, loads the guest and creates the vCPUs; does not start them.
    /// Everything made is released again if a later step fails.
    public init(system: KVMSystem, config: MachineConfig) throws(SessionError) {
        self.system = system
        self.config = config
        let page = PageSize.system
        let program = try config.guest.load()
        guestName = program.name
        guestStamps = program.stamps

        let maxVCPUs = min(system.maxVCPUs, Int(DS_MAX_VCPUS))
        guard config.vcpus >= 1, config.vcpus <= maxVCPUs else {
            throw .invalidArgument("\(config.vcpus) vCPUs: allowed 1 to \(maxVCPUs) (host KVM limit \(system.maxVCPUs), ABI limit \(DS_MAX_VCPUS))")
        }
        let maxSlots = min(Int(DS_MAX_REGIONS), max(0, system.maxMemslots - 1))
        guard !config.slotBytes.isEmpty, config.slotBytes.count <= maxSlots else {
            throw .invalidArgument("\(config.slotBytes.count) memslots: allowed 1 to \(maxSlots) (host limit \(system.maxMemslots) including the system slot, ABI limit \(DS_MAX_REGIONS))")
        }
        for (i, bytes) in config.slotBytes.enumerated() {
            guard bytes > 0, bytes % page == 0 else {
                throw .invalidArgument("memslot \(i) size \(bytes) bytes is not a positive multiple of the page size \(page)")
            }
        }
        let placed = Self.placeDataSlots(config.slotBytes)
        let layout = zip(placed.addresses, config.slotBytes).map { (gpa: $0, bytes: $1) }
        let gpa = placed.end
        guard gpa <= DS_MAX_GPA else {
            let total = UInt64(config.slotBytes.reduce(0, +))
            throw .invalidArgument("guest memory of \(formatBytes(total)) reaches guest-physical \(formatBytes(gpa)) (data starts at \(formatBytes(DS_DATA_GPA)), no data in the \(formatBytes(DS_MMIO_HOLE_END - DS_MMIO_HOLE_GPA)) APIC hole below 4 GiB), above the \(formatBytes(DS_MAX_GPA)) the guest layout maps")
        }
        let vm: VirtualMachine
        do {
            vm = try system.makeVM()
            if config.ringEntries > 0 {
                try vm.enableDirtyRing(bytes: config.ringEntries * Int(CKVM_SIZEOF_DIRTY_GFN))
            }
            if !config.initialManualProtect.isEmpty {
                try vm.setManualProtect(config.initialManualProtect)
            }
            systemMemory = try GuestMemory(bytes: Int(DS_SYSTEM_BYTES), what: "system memory")
            try vm.addSlot(id: SlotID.system, guestPhysicalAddress: 0, memory: systemMemory, logDirtyPages: false)
            var slots: [MemorySlot] = []
            for (i, l) in layout.enumerated() {
                let memory = try GuestMemory(bytes: l.bytes, what: "memslot \(i)")
                slots.append(try vm.addSlot(id: SlotID.kvm(dataSlot: i), guestPhysicalAddress: l.gpa, memory: memory,
                                            logDirtyPages: config.trackDirtyPages))
            }
            dataSlots = slots
        } catch {
            throw .kvm(error)
        }
        self.vm = vm
        var first: [Int] = []
        var linear = 0
        for s in dataSlots { first.append(linear); linear += s.pageCount }
        slotFirstLinear = first

        // System slot: GDT, page tables, control block, code.
        let host = systemMemory.base
        let gdtLimit = LongMode.writeGDT(hostBase: host, gdtGPA: DS_GDT_GPA)
        let cr3 = LongMode.writeIdentityMap(hostBase: host, tableGPA: DS_PAGETABLE_GPA, mapping: gpa)
        control = ControlBlock(memory: systemMemory, offset: Int(DS_CONTROL_GPA))
        control.initialize(pageSize: page, vcpus: config.vcpus,
                           regions: dataSlots.map { ($0.guestPhysicalAddress, $0.pageCount) })
        program.bytes.withUnsafeBytes { (host + Int(DS_LOAD_GPA)).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }

        let totalPages = linear
        var made: [VCPU] = []
        var stats: [BinaryStats] = []
        var ticks: [UInt64] = []
        var steal = true
        let flags = config.guestTimeline ? DS_VCPU_F_TIMELINE : 0
        vcpuFlags = flags
        do {
            let cpuid = try system.supportedCPUID()
            for i in 0..<config.vcpus {
                let vcpu = try vm.makeVCPU(id: i)
                try vcpu.setCPUID(cpuid)
                let sregs = LongMode.specialRegisters(from: try vcpu.specialRegisters(), cr3: cr3, gdtGPA: DS_GDT_GPA, gdtLimit: gdtLimit)
                try vcpu.setSpecialRegisters(sregs)
                let stackTop = DS_STACK_GPA + UInt64(i + 1) * DS_STACK_BYTES - 8
                try vcpu.setRegisters(LongMode.registers(rip: DS_LOAD_GPA, rsp: stackTop, rdi: UInt64(i), rsi: DS_CONTROL_GPA))
                if let s = try? vcpu.stats() { stats.append(s) }
                ticks.append(((try? vcpu.tscKHz()) ?? 0) * 1000)
                // KVM keeps the vCPU's steal time (how long its thread waited for a CPU) in
                // a 64-byte record the guest reads each chunk; a host without it leaves 0.
                let record = DS_STEAL_GPA + UInt64(i) * DS_STEAL_BYTES
                do { try vcpu.setMSRs([(ckvm_MSR_KVM_STEAL_TIME, record | ckvm_KVM_MSR_ENABLED)]) } catch { steal = false }
                made.append(vcpu)
                // Each vCPU owns a contiguous share of the linear data pages.
                let lo = totalPages * i / config.vcpus, hi = totalPages * (i + 1) / config.vcpus
                control.store(i, .firstPage, UInt64(lo))
                control.store(i, .numPages, UInt64(hi - lo))
                control.configure(i, workload: config.workload.workload.abiValue, settings: config.workload, passWrites: config.passWrites,
                                  flags: flags, chunkTicks: ticks[i] * Self.chunkNanos / 1_000_000_000)
            }
        } catch {
            throw .kvm(error)
        }
        vcpus = made
        tscTicksPerSecond = ticks
        stealTime = steal
        threads = VCPUThreads(vcpus: made, control: control, lockstep: config.lockstep)
        vcpuStats = stats
        vmStats = try? vm.stats()
    }

    deinit { stop() }

    /// Guest-physical addresses of data slots of `slotBytes` bytes, in order from
    /// DS_DATA_GPA, each 2 MiB aligned; a slot that would overlap the APIC/IOAPIC hole
    /// `[DS_MMIO_HOLE_GPA, DS_MMIO_HOLE_END)` starts at its end instead. `end` is the
    /// first address above the last slot (rounded up to 2 MiB): what the guest must map.
    public static func placeDataSlots(_ slotBytes: [Int]) -> (addresses: [UInt64], end: UInt64) {
        let align: UInt64 = 2 << 20
        var gpa = DS_DATA_GPA
        var addresses: [UInt64] = []
        for bytes in slotBytes {
            let size = (UInt64(bytes) + align - 1) & ~(align - 1)
            if gpa < DS_MMIO_HOLE_END && gpa + size > DS_MMIO_HOLE_GPA { gpa = DS_MMIO_HOLE_END }
            addresses.append(gpa)
            gpa += size
        }
        return (addresses, gpa)
    }

    /// Total data pages.
    public var totalPages: Int { dataSlots.reduce(0) { $0 + $1.pageCount } }

    // MARK: Lifecycle

    /// Starts one thread per vCPU.
    public func start() { threads.start() }

    /// Stops the vCPU threads and waits for them. Idempotent.
    public func stop() { threads.stop() }

    /// Stops the world: returns once every vCPU is out of KVM_RUN and parked. `reason`
    /// says what the guest's timeline counts the time as.
    public func pause(reason: ParkReason = .paused) { threads.pause(reason: reason) }

    /// The longest a guest's pace call may make a vCPU thread sleep (the harvest interval;
    /// 0 means 100 ms): no value the guest writes makes the host sleep longer.
    public var paceCapNanos: UInt64 {
        get { threads.paceCapNanos }
        set { threads.paceCapNanos = newValue }
    }

    /// Console lines and ring-full reports the rate limit dropped.
    public var droppedReports: (consoleLines: UInt64, ringFull: UInt64) { threads.dropped }

    /// Lets the vCPUs run again.
    public func resume() { threads.resume() }

    /// The fault that stopped the guest, if any.
    public var currentFault: GuestFault? { threads.fault }


    // MARK: Workload

    /// Changes the workload of every vCPU while the guest runs.
    /// The workload the guest's control block holds for its first vCPU: the host's
    /// settings, or those of the host it was migrated from.
    public var workloadInControlBlock: WorkloadSettings? { control.workload(0) }

    public func setWorkload(_ settings: WorkloadSettings, passWrites: UInt64? = nil) {
        for i in 0..<vcpus.count {
            control.configure(i, workload: settings.workload.abiValue, settings: settings, passWrites: passWrites ?? config.passWrites,
                              flags: vcpuFlags, chunkTicks: chunkTicks(vcpu: i))
        }
        threads.wakeIdle()
    }

    /// Changes the write rate of every vCPU.
    public func setRate(_ rate: UInt64) {
        for i in 0..<vcpus.count { control.setRate(i, rate) }
        threads.wakeIdle()
    }

    /// Page writes the guest has done in total (from its own counters).
    public var guestWrites: UInt64 { (0..<vcpus.count).reduce(0) { $0 &+ control.load($1, .writes) } }

    /// Guest writes between two readings of `guestWrites` taken `nanos` apart, bounded:
    /// the counters are guest-written, and a scribbling guest can step them back or to
    /// 2^64 - 2. No vCPU stores to more than one page a nanosecond, so the count is at most
    /// `nanos` per vCPU.
    public func writes(from old: UInt64, to new: UInt64, overNanos nanos: UInt64) -> UInt64 {
        let (limit, overflow) = nanos.multipliedReportingOverflow(by: UInt64(vcpus.count))
        return min(new &- old, overflow ? .max : limit)
    }


    /// Makes vCPU `vcpu` (running the command workload) write linear page `linearPage`
    /// once, and waits until it has. Returns false on timeout or fault.
    public func commandWrite(vcpu: Int, linearPage: Int, timeout: Double = 10) -> Bool {
        let seq = control.load(vcpu, .commandSeq) &+ 1
        control.store(vcpu, .commandPage, UInt64(linearPage))
        control.store(vcpu, .commandSeq, seq)
        threads.wakeIdle()
        let deadline = monotonicNanos() + UInt64(timeout * 1e9)
        while control.load(vcpu, .commandAck) != seq {
            if monotonicNanos() > deadline || currentFault != nil { return false }
            usleep(100)
        }
        return true
    }

    /// Switches every vCPU to the host-driven command workload and waits until each
    /// has acknowledged the switch (so no other workload's write is still in flight).
    public func enterCommandMode() {
        for i in 0..<vcpus.count {
            control.store(i, .commandAck, control.load(i, .commandSeq))
            control.configure(i, workload: UInt32(DS_WL_COMMAND.rawValue), settings: config.workload, passWrites: 0, flags: vcpuFlags,
                              chunkTicks: chunkTicks(vcpu: i))
        }
        threads.wakeIdle()
        // A heartbeat advancing twice after the switch means the guest has re-read its block.
        for i in 0..<vcpus.count {
            let beat = control.load(i, .heartbeat)
            let deadline = monotonicNanos() + 5_000_000_000
            while control.load(i, .heartbeat) < beat &+ 2 && monotonicNanos() < deadline && currentFault == nil { usleep(200) }
        }
    }

    // MARK: Lockstep iterations (dirty_log_perf_test style)

    /// Waits until every vCPU has finished the pass of the current iteration, calling
    /// `poll` about every 2 ms meanwhile (ring mode drains the rings there, so a vCPU
    /// stopped on a full ring can finish its pass). With `.spin` the calling thread
    /// busy-waits (and polls every millisecond) instead of sleeping.
    public func waitForPass(_ wait: PassWait = .sleep, poll: (() -> Void)? = nil) {
        threads.waitForPass(poll: poll, spin: wait == .spin)
    }

    /// Starts the next iteration: every vCPU does one more pass.
    public func startNextIteration() { threads.startNextIteration() }

    // MARK: Dirty rings

    /// Called by the harvester after KVM_RESET_DIRTY_RINGS: vCPUs stopped on a full ring go on.
    public func ringsWereReset() { threads.ringsWereReset() }

    /// Times a vCPU stopped on a full ring, in total.
    public var ringFullExits: UInt64 { threads.ringFullExits }

    /// DS_PORT_PACE calls the guest has made, all vCPUs (it makes them only while a rate is set).
    public var paceCalls: UInt64 { threads.paceCalls }

    /// The vCPUs' dirty rings (ring mode).
    public var rings: [DirtyRing] { vcpus.compactMap(\.dirtyRing) }

    // MARK: The guest's timeline (ABI 3)

    /// Each vCPU's timeline ring in guest memory, to read from `head` on.
    func timelineRing(vcpu: Int) -> TimelineRing {
        // Safe: the ring lies inside the system slot (DS_TIMELINE_GPA + vcpu * DS_TIMELINE_BYTES
        // + DS_TIMELINE_BYTES <= DS_SYSTEM_BYTES, by the ABI's static assertions), which
        // `systemMemory` keeps mapped as long as the machine lives.
        precondition(vcpu >= 0 && vcpu < vcpus.count)
        let base = UnsafeRawPointer(systemMemory.base + Int(DS_TIMELINE_GPA) + vcpu * Int(DS_TIMELINE_BYTES))
        return TimelineRing(records: base, capacity: UInt64(DS_TIMELINE_RECORDS), tail: timelineHead(vcpu: vcpu))
    }

    /// Timeline records vCPU `vcpu` has written (guest-written: untrusted).
    func timelineHead(vcpu: Int) -> UInt64 { control.load(vcpu, .timelineHead) }

    /// Asks vCPU `vcpu` for clock exchanges until it has done `count` in all.
    func requestClockExchanges(vcpu: Int, count: UInt64) { control.store(vcpu, .clockRequest, count) }

    /// Clock exchanges vCPU `vcpu` says it has done, and asked for.
    func clockExchanges(vcpu: Int) -> (served: UInt64, requested: UInt64) {
        (control.load(vcpu, .clockServed), control.load(vcpu, .clockRequest))
    }

    /// The clock exchanges each vCPU finished since the last call.
    func takeClockSamples() -> [[ClockSample]] { threads.takeClockSamples() }

    /// When each vCPU finished its passes (DS_PORT_PASS) since the last call: the host's
    /// view of the guest's progress, independent of the guest's own timeline.
    public func takePassTimes() -> [[UInt64]] { threads.takePassTimes() }

    /// The spans the vCPUs were held out of KVM_RUN, since the last call.
    func takeParks() -> [Park] { threads.takeParks() }

    /// Turns dirty logging of every data slot on or off (KVM_SET_USER_MEMORY_REGION).
    func setDirtyLogging(_ on: Bool) throws(KVMError) {
        for s in dataSlots { try vm.setDirtyLogging(slot: s.id, on) }
    }

    /// Whether the data slots log dirty pages now.
    var logsDirtyPages: Bool { dataSlots.first.map { vm.slots[$0.id]?.logsDirtyPages ?? false } ?? false }

    // MARK: Migration

    /// The system slot's memory (GDT, control block, page tables, code, stacks, timelines):
    /// what a migration sends besides the data slots.
    public var systemSlotMemory: GuestMemory { systemMemory }

    /// Every vCPU's state (the vCPUs paused by the caller): what a migration sends to
    /// let the guest go on elsewhere.
    public func captureVCPUStates() throws(SessionError) -> [VCPUState] {
        let msrs: [UInt32]
        do { msrs = try system.msrIndexList() } catch { throw .kvm(error) }
        let xsaveBytes = max(Int(CKVM_SIZEOF_XSAVE), vm.check(.xsave2))
        var states: [VCPUState] = []
        for v in vcpus {
            do { states.append(try v.captureState(msrIndices: msrs, xsaveBytes: xsaveBytes)) } catch { throw .kvm(error) }
        }
        return states
    }

    /// Loads vCPU states another machine captured (before `start`, after its memory has
    /// been copied here). Returns the MSRs KVM refused, per vCPU.
    @discardableResult
    public func restoreVCPUStates(_ states: [VCPUState]) throws(SessionError) -> [[UInt32]] {
        guard states.count == vcpus.count else {
            throw .invalidArgument("\(states.count) vCPU states for a machine of \(vcpus.count) vCPUs")
        }
        var refused: [[UInt32]] = []
        for (v, state) in zip(vcpus, states) {
            do { refused.append(try v.restoreState(state)) } catch { throw .kvm(error) }
        }
        return refused
    }

    // MARK: Statistics

    /// Sum over vCPUs of the binary statistics `names` (missing ones count 0).
    public func vcpuStatSum(_ names: [String]) -> UInt64 {
        vcpuStats.reduce(0) { total, s in total &+ s.values(names).reduce(0, &+) }
    }

    /// A VM binary statistic.
    public func vmStat(_ name: String) -> UInt64 { vmStats?.value(name) ?? 0 }

    /// Names of the vCPU statistics this host offers.
    public var vcpuStatNames: [String] { vcpuStats.first?.names ?? [] }

    // MARK: Pages

    /// The data slot and page of a linear page number.
    public func locate(linearPage: Int) -> (slot: Int, page: Int) {
        var s = slotFirstLinear.count - 1
        while slotFirstLinear[s] > linearPage { s -= 1 }
        return (s, linearPage - slotFirstLinear[s])
    }

    /// The stamp at the start of page `page` of data slot `slot`.
    public func stamp(slot: Int, page: Int) -> UInt64 {
        dataSlots[slot].memory.page(page).load(as: UInt64.self)
    }
}

/// Joins `threads`, except the calling thread itself, which is detached (a last release,
/// and so a deinit that stops its owner, may happen on one of the owner's own threads).
func joinOrDetach(_ threads: [pthread_t]) {
    for t in threads {
        if pthread_equal(t, pthread_self()) != 0 { pthread_detach(t) } else { pthread_join(t, nil) }
    }
}

/// Starts a joinable pthread running `body`.
func spawnThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        box.body()
        return nil
    }, context)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    return thread
}

/// KVM memslot ids, in one place: the system slot is 0 and data slot i (the index users
/// and files see) is i + 1, all in address space 0.
enum SlotID {
    static let system: UInt32 = 0

    static func kvm(dataSlot i: Int) -> UInt32 { UInt32(i + 1) }

    /// The data slot that a dirty ring entry's `slot` field (`as_id << 16 | id`) names,
    /// or nil for the system slot, another address space or an id past `count` slots.
    static func dataSlot(ringSlot: UInt32, count: Int) -> Int? {
        guard ringSlot >> 16 == 0, ringSlot & 0xffff >= 1 else { return nil }
        let i = Int(ringSlot & 0xffff) - 1
        return i < count ? i : nil
    }
}

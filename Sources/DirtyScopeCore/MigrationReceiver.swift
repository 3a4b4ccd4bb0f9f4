import CKVM
import DirtyScopeModel
import DirtyScopeRecording
import Foundation
import KVM
import Pages
#if canImport(Glibc)
import Glibc
#endif

/// Per-page 64-bit hashes of a slot, in chunks allocated as pages arrive: a large sparse
/// guest costs only the chunks its pages fall in.
struct SparsePageHashes {
    static let chunkPages = 4096
    let pages: Int
    private var chunks: [[UInt64]?]
    /// Pages that hold a hash (that were received).
    private(set) var count = 0

    init(pages: Int) {
        self.pages = pages
        chunks = Array(repeating: nil, count: (pages + Self.chunkPages - 1) / Self.chunkPages)
    }

    /// A page's hash; nil for a page never set.
    subscript(page: Int) -> UInt64? {
        get {
            guard let chunk = chunks[page / Self.chunkPages] else { return nil }
            let h = chunk[page % Self.chunkPages]
            return h == 0 ? nil : h
        }
        set {
            let c = page / Self.chunkPages
            if chunks[c] == nil { chunks[c] = [UInt64](repeating: 0, count: Self.chunkPages) }
            let old = chunks[c]![page % Self.chunkPages]
            // 0 marks "never set" (a real hash of 0 is stored as 1: one hash in 2^64 shifted).
            let stored = newValue.map { $0 == 0 ? 1 : $0 } ?? 0
            chunks[c]![page % Self.chunkPages] = stored
            count += (old == 0 ? 0 : -1) + (stored == 0 ? 0 : 1)
        }
    }

    /// Every page that holds a hash, in order.
    func forEachSet(_ body: (Int, UInt64) -> Void) {
        for (c, chunk) in chunks.enumerated() {
            guard let chunk else { continue }
            for (i, h) in chunk.enumerated() where h != 0 { body(c * Self.chunkPages + i, h) }
        }
    }
}

/// What the destination does with each frame before the guest resumes: pages into
/// memory (checked against their hashes), each round's arrivals for the UI, the vCPU
/// states kept, the source's hashes compared at the switch-over. No KVM call: the fuzzer
/// drives it with forged frames over plain memory.
final class MigrationIntake {
    /// What a frame led to, for the receiver to act on.
    enum Step {
        case none
        case round(MigrationReceiver.Round)
        case verified(MigrationWire.Verified)
        case resume([MigrationWire.State])
    }

    let hello: MigrationWire.Hello
    /// The data slots' memory, then the system slot's.
    let memories: [GuestMemory]
    private var hashes: [SparsePageHashes]
    private var sourceHashes: [SparsePageHashes]
    private var received: [DirtyBitmap]
    private var unchanged: [DirtyBitmap]
    private(set) var states: [MigrationWire.State?]
    private(set) var rounds: UInt64 = 0
    private(set) var pages: UInt64 = 0
    private(set) var zeroPages: UInt64 = 0
    private(set) var unchangedPages: UInt64 = 0
    private var roundZero: UInt64 = 0, roundBytes: UInt64 = 0
    /// The switch-over found every page as the source has it.
    private(set) var verified = false
    private let zeroHash: UInt64

    init(hello: MigrationWire.Hello, memories: [GuestMemory]) {
        precondition(memories.count == hello.slots.count + 1, "a memory per slot and the system slot")
        self.hello = hello
        self.memories = memories
        hashes = memories.map { SparsePageHashes(pages: $0.pageCount) }
        sourceHashes = hashes
        received = memories.dropLast().map { DirtyBitmap(pageCount: $0.pageCount) }
        unchanged = received
        states = Array(repeating: nil, count: hello.vcpus)
        zeroHash = MigrationWire.zeroHash(bytes: hello.pageSize)
    }

    private func index(_ slot: UInt32) -> Int { slot == MigrationWire.systemSlot ? memories.count - 1 : Int(slot) }

    private func name(_ slot: UInt32) -> String { slot == MigrationWire.systemSlot ? "the system slot" : "slot \(slot)" }

    /// Applies what the channel received: a pages frame in place, or any other frame.
    func apply(_ incoming: MigrationChannel.Incoming) throws(MigrationError) -> Step {
        switch incoming {
        case .pages(let view):
            try apply(view)
            return .none
        case .frame(let frame):
            return try apply(frame)
        }
    }

    /// Loads a pages frame's pages: each checked against its hash, zero pages given back.
    func apply(_ p: MigrationWire.PagesView) throws(MigrationError) {
        let pageSize = hello.pageSize
        let s = index(p.slot)
        let memory = memories[s]
        var data = p.data
        for i in 0..<p.count {
            let page = Int(p.firstPage) + i
            let target = memory.page(page)
            // A page that holds no hash here is zero: never arrived, or arrived as zeros. It
            // is not read (that would map it for nothing, then fault again on the write).
            let held = hashes[s][page]
            if p.isZero(i) {
                guard p.hash(i) == zeroHash else { throw MigrationError("page \(page) of \(name(p.slot)) arrived as zeros with another page's hash") }
                if held != nil {
                    _ = madvise(target, pageSize, MADV_DONTNEED)   // zero again, and its memory given back
                } else if s < received.count, received[s][page] {
                    unchanged[s][page] = true
                }
                hashes[s][page] = nil
                roundZero += 1
            } else {
                let h = p.hash(i)
                guard MigrationWire.hash(data, bytes: pageSize) == h else {
                    throw MigrationError("page \(page) of \(name(p.slot)) arrived corrupted: its bytes do not match its hash")
                }
                if s < received.count, held == h, memcmp(target, data, pageSize) == 0 { unchanged[s][page] = true }
                memcpy(target, data, pageSize)
                hashes[s][page] = h
                data += pageSize
                roundBytes += UInt64(pageSize)
            }
            if s < received.count { received[s][page] = true }
            pages += 1
        }
    }

    /// Applies one frame from the source (already checked against the hello's layout).
    func apply(_ frame: MigrationWire.Frame) throws(MigrationError) -> Step {
        switch frame {
        case .pages(let p):
            // An owned pages frame (the fuzzer's): the same path, through a view of its arrays.
            var failure: MigrationError?
            p.data.withUnsafeBytes { raw in
                p.zeroBits.withUnsafeBytes { bits in
                    p.hashes.withUnsafeBytes { h in
                        do throws(MigrationError) {
                            try apply(MigrationWire.PagesView(slot: p.slot, firstPage: p.firstPage, count: p.count, zeroBits: bits.baseAddress!,
                                                              hashes: h.baseAddress!, data: raw.baseAddress ?? h.baseAddress!))
                        } catch { failure = error }
                    }
                }
            }
            if let failure { throw failure }
            return .none
        case .roundEnd(let r):
            rounds += 1
            zeroPages += roundZero
            unchangedPages += UInt64(unchanged.reduce(0) { $0 + $1.count })
            let round = MigrationReceiver.Round(index: r.round, received: received, unchanged: unchanged, zeroPages: roundZero,
                                                bytes: roundBytes, sourceFalsePositives: r.falsePositivePages)
            for i in received.indices { received[i].clearAll(); unchanged[i].clearAll() }
            roundZero = 0
            roundBytes = 0
            return .round(round)
        case .state(let st):
            states[st.vcpu] = st
            return .none
        case .hashes(let slot, let pages, let list):
            let s = index(slot)
            for (page, h) in zip(pages, list) { sourceHashes[s][Int(page)] = h }
            return .none
        case .switchOver:
            zeroPages += roundZero
            roundZero = 0
            let v = Self.compare(received: hashes, source: sourceHashes, zeroHash: zeroHash, slots: hello.slots.count)
            verified = v.differingPages == 0
            return .verified(v)
        case .resume:
            guard verified else { throw MigrationError("resume before a switch-over that found every page") }
            let all = states.compactMap { $0 }
            guard all.count == states.count else {
                throw MigrationError("resume without the state of vCPU \(states.firstIndex { $0 == nil }!)")
            }
            return .resume(all)
        case .abort(let reason):
            throw MigrationError("the source gave up: \(reason)")
        case .hello, .ready, .verified, .resumed:
            throw MigrationError("the source sent a \(frame.name) frame, which only comes from a destination or once")
        }
    }

    /// Every page of both ends by hash: a page the source listed must hold that hash here;
    /// any other page must be zero on both.
    static func compare(received: [SparsePageHashes], source: [SparsePageHashes], zeroHash: UInt64, slots: Int) -> MigrationWire.Verified {
        var differing: UInt64 = 0
        var blocks: [MigrationWire.Verified.Block] = []
        for s in received.indices {
            let slot = s < slots ? UInt32(s) : MigrationWire.systemSlot
            var bad = Set<Int>()
            source[s].forEachSet { page, h in
                if (received[s][page] ?? zeroHash) != h { bad.insert(page) }
            }
            received[s].forEachSet { page, h in
                if source[s][page] == nil, h != zeroHash { bad.insert(page) }
            }
            differing += UInt64(bad.count)
            for block in Set(bad.map { $0 / DirtyBitmap.pagesPerBlock }).sorted() where blocks.count < MigrationWire.maxListedBlocks {
                blocks.append(.init(slot: slot, block: UInt64(block)))
            }
        }
        return MigrationWire.Verified(differingPages: differing, blocks: blocks)
    }
}

/// The destination of a migration: builds a VM with the layout the source announces,
/// lets a `MigrationIntake` load every page and vCPU state it sends and compare every page
/// with the source's hashes at the switch-over, and resumes the guest. Nothing of the
/// guest runs before the source says resume; a stream that breaks, lies or times out
/// before that is discarded (the VM and its memory freed) and said in one line.
public final class MigrationReceiver {
    /// What arrived in one pre-copy round, for the destination's UI.
    public struct Round: Sendable {
        public var index: UInt64
        /// Per data slot, the pages that arrived, and those that arrived with the content
        /// the destination already had (sent for nothing: the false positives seen here).
        public var received: [DirtyBitmap]
        public var unchanged: [DirtyBitmap]
        public var zeroPages: UInt64
        public var bytes: UInt64
        /// The source's count of this round's false positives (from its ground truth).
        public var sourceFalsePositives: UInt64
    }

    /// How the migration went, from the destination.
    public struct Outcome {
        public var machine: GuestMachine
        public var hello: MigrationWire.Hello
        public var rounds: UInt64
        public var pages: UInt64
        public var zeroPages: UInt64
        /// Pages that arrived with the content the destination already had.
        public var unchangedPages: UInt64
        public var bytesReceived: UInt64
        public var loadNanos: UInt64
        public var resumeNanos: UInt64
        public var refusedMSRs: [[UInt32]]
    }

    private let system: KVMSystem
    private let channel: MigrationChannel
    /// Each pre-copy round as it ends.
    public var onRound: ((Round) -> Void)?
    /// A line for each step worth saying (the layout built, the switch-over).
    public var onNote: ((String) -> Void)?
    /// The source's hello, once its layout is built here.
    public var onHello: ((MigrationWire.Hello) throws(MigrationError) -> Void)?

    public init(system: KVMSystem, channel: MigrationChannel) {
        self.system = system
        self.channel = channel
    }

    /// Runs the migration to the end: the guest resumed here, or an error (the VM discarded).
    public func run(frameTimeoutNanos: UInt64 = 30_000_000_000) throws(MigrationError) -> Outcome {
        try channel.greet(as: .destination)
        guard case .hello(let hello) = try channel.receiveFrame(layout: nil, timeoutNanos: frameTimeoutNanos) else {
            throw MigrationError("the source did not begin with its hello")
        }
        let machine = try build(hello)
        var discard = true
        defer { if discard { machine.stop() } }
        onNote?("building the guest: \(hello.slots.count) slots, \(formatBytes(UInt64(hello.slots.reduce(0) { $0 + $1.pages }) * UInt64(hello.pageSize))), \(hello.vcpus) vCPUs")
        try channel.send(.ready)
        try onHello?(hello)
        let intake = MigrationIntake(hello: hello, memories: machine.dataSlots.map(\.memory) + [machine.systemSlotMemory])
        while true {
            switch try channel.receive(layout: hello, timeoutNanos: frameTimeoutNanos, { (incoming) throws(MigrationError) in try intake.apply(incoming) }) {
            case .none:
                continue
            case .round(let round):
                onRound?(round)
            case .verified(let v):
                try channel.send(.verified(v))
                guard v.differingPages == 0 else {
                    throw MigrationError("\(v.differingPages) pages differ between the two ends at the switch-over (blocks: "
                        + v.blocks.prefix(8).map { "\($0.slot == MigrationWire.systemSlot ? "system" : "slot \($0.slot)") #\($0.block)" }
                            .joined(separator: ", ") + (v.blocks.count > 8 ? ", ..." : "") + "): the guest stays on the source")
                }
                onNote?("every page matches the source's hashes")
            case .resume(let states):
                let t0 = monotonicNanos()
                let kvmStates = states.map { s in
                    VCPUState(regs: s.parts[0], sregs: s.parts[1], xsave: s.parts[2], xcrs: s.parts[3], events: s.parts[4],
                              debugRegs: s.parts[5], mpState: s.mpState, msrs: s.msrs.map { VCPUState.MSR(index: $0.index, value: $0.value) })
                }
                let refused: [[UInt32]]
                do { refused = try machine.restoreVCPUStates(kvmStates) } catch { throw MigrationError("loading the vCPU state failed: \(error)") }
                let t1 = monotonicNanos()
                machine.start()
                let t2 = monotonicNanos()
                discard = false
                // The guest runs here now; the source's reply is best effort.
                try? channel.send(.resumed(loadNanos: t1 - t0, resumeNanos: t2 - t1))
                return Outcome(machine: machine, hello: hello, rounds: intake.rounds, pages: intake.pages, zeroPages: intake.zeroPages,
                               unchangedPages: intake.unchangedPages, bytesReceived: channel.bytesReceived, loadNanos: t1 - t0,
                               resumeNanos: t2 - t1, refusedMSRs: refused)
            }
        }
    }

    private func slotName(_ slot: UInt32) -> String { slot == MigrationWire.systemSlot ? "the system slot" : "slot \(slot)" }

    static func isZero(_ p: UnsafeMutableRawPointer, _ bytes: Int) -> Bool {
        let words = p.assumingMemoryBound(to: UInt64.self)
        for i in 0..<(bytes / 8) where words[i] != 0 { return false }
        return true
    }

    /// The machine for `hello`'s layout: the same slots at the same addresses, the same
    /// system slot and vCPUs; its guest is what the system slot will bring.
    private func build(_ hello: MigrationWire.Hello) throws(MigrationError) -> GuestMachine {
        guard hello.pageSize == PageSize.system else {
            throw MigrationError("the source uses \(hello.pageSize)-byte pages, this host \(PageSize.system)")
        }
        guard hello.systemBytes == Int(DS_SYSTEM_BYTES) else {
            throw MigrationError("the source's system slot is \(hello.systemBytes) bytes, this dirtyscope's \(DS_SYSTEM_BYTES): another ABI version")
        }
        let sizes = hello.slots.map { $0.pages * hello.pageSize }
        let placed = GuestMachine.placeDataSlots(sizes)
        guard placed.addresses == hello.slots.map(\.gpa) else {
            throw MigrationError("the source's slots sit at " + hello.slots.map { "0x" + String($0.gpa, radix: 16) }.joined(separator: ", ")
                + ", where this dirtyscope would place them at " + placed.addresses.map { "0x" + String($0, radix: 16) }.joined(separator: ", "))
        }
        do {
            return try GuestMachine(system: system, config: MachineConfig(
                slotBytes: sizes, vcpus: hello.vcpus, workload: WorkloadSettings(workload: .idle, rate: 0), trackDirtyPages: false))
        } catch {
            throw MigrationError("cannot build the guest here: \(error)")
        }
    }

}

extension MigrationReceiver {
    /// The header of the destination's view: the source's layout, nothing tracked here.
    public static func sessionInfo(_ hello: MigrationWire.Hello, system: KVMSystem, intervalNanos: UInt64, bandwidth: UInt64) -> SessionInfo {
        return SessionInfo(
            toolVersion: dirtyScopeVersion, hostKernel: hostKernelRelease(), pageSize: hello.pageSize,
            slots: hello.slots.enumerated().map { SlotInfo(index: $0, kvmSlot: SlotID.kvm(dataSlot: $0), guestPhysicalAddress: $1.gpa, pages: $1.pages) },
            vcpus: hello.vcpus, guestName: "\(hello.guestName) (migrating here)", capabilities: dirtyTrackingCapabilities(system),
            mode: .untracked, clearChunk: .pages(64), workload: WorkloadSettings(workload: .idle, rate: 0), intervalNanos: intervalNanos,
            bandwidth: bandwidth, ringEntries: 0, falsePositiveMethod: hello.stamps ? .stamp : .content, startTime: Date().timeIntervalSince1970)
    }
}

extension MigrationReceiver.Outcome {
    /// What the destination knows of the migration, as the figures event its recording holds:
    /// the rounds and pages that arrived, those that arrived unchanged (the false positives
    /// seen here), the bytes, and its part of the downtime.
    public func figures(from source: String) -> MigrationFigures {
        var f = MigrationFigures(phase: .completed, to: "here, from \(source)", setting: "destination")
        f.iterations = Int(rounds)
        f.pagesSent = pages
        f.zeroPages = zeroPages
        f.bytesSent = bytesReceived
        f.falsePositivePages = unchangedPages
        f.falsePositiveBytes = unchangedPages &* UInt64(hello.pageSize)
        f.loadNanos = loadNanos
        f.resumeNanos = resumeNanos
        return f
    }
}

extension MigrationReceiver.Round {
    /// The round as the heatmap folds it: the pages that arrived are its reported pages,
    /// those that arrived with the content already here its false positives.
    public func record(index: UInt64, startNanos: UInt64, durationNanos: UInt64) -> DirtyScopeModel.Round {
        var m = RoundMetrics(mode: .untracked, clearChunk: .pages(64))
        m.index = index
        m.startNanos = startNanos
        m.slots = received.indices.map { i in
            var s = SlotMetrics(slot: i)
            s[.reportedPages] = received[i].count
            s[.falsePositivePages] = unchanged[i].count
            s[.copiedPages] = received[i].count
            return s
        }
        m[.durationNanos] = durationNanos
        m[.copiedBytes] = bytes
        return DirtyScopeModel.Round(metrics: m, bitmaps: received.indices.map { SlotBitmaps(reported: received[$0], falsePositives: unchanged[$0]) })
    }
}

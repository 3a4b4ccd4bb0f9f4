import CKVM
import DirtyScopeModel
import DirtyScopeRecording
import Foundation
import KVM
import Pages
#if canImport(Glibc)
import Glibc
#endif

/// The source's side of the migration stream: the hello, pages (zero pages as a bit,
/// every page with its hash), rounds, the system slot, the vCPUs' state, and the hashes
/// of every page as last sent, which the destination compares with what it holds. It
/// keeps each page's hash at its last send: what the destination must have.
public final class MigrationSender {
    let channel: MigrationChannel
    let hello: MigrationWire.Hello
    /// The data slots' memory, then the system slot's.
    private let memories: [GuestMemory]
    /// Reads the vCPUs' state at the switch-over.
    private let captureStates: () throws(SessionError) -> [VCPUState]
    private let pageSize = PageSize.system
    private let zeroHash: UInt64
    /// Per data slot, then the system slot: each page's hash when it was last sent.
    var sent: [SparsePageHashes]
    /// Pages queued for the next frame (one run of one slot at a time), in buffers kept
    /// from frame to frame: the run's slot and first page, its zero bits, hashes and bytes.
    private var runSlot: UInt32 = 0
    private var runFirst = 0
    private var runZeroBits: [UInt8] = []
    private var runHashes: [UInt64] = []
    private var runData: [UInt8] = []
    /// This round's counts.
    public private(set) var roundPages: UInt64 = 0
    public private(set) var roundZeroPages: UInt64 = 0
    public private(set) var roundBytes: UInt64 = 0
    public private(set) var totalPages: UInt64 = 0
    public private(set) var totalZeroPages: UInt64 = 0
    /// Consumer bandwidth in bytes per second (0: as fast as the socket goes).
    public var bandwidth: UInt64 = 0
    private var pacingStart: UInt64 = 0
    private var pacedBytes: UInt64 = 0

    public convenience init(channel: MigrationChannel, machine: GuestMachine) {
        self.init(channel: channel, hello: MigrationWire.Hello(
            pageSize: PageSize.system, vcpus: machine.config.vcpus, systemBytes: machine.systemSlotMemory.byteCount,
            slots: machine.dataSlots.map { ($0.guestPhysicalAddress, $0.pageCount) }, guestName: machine.guestName,
            stamps: machine.guestStamps), memories: machine.dataSlots.map(\.memory) + [machine.systemSlotMemory],
            captureStates: { () throws(SessionError) in try machine.captureVCPUStates() })
    }

    /// A sender of `memories` (the data slots', then the system slot's) as `hello` describes them.
    init(channel: MigrationChannel, hello: MigrationWire.Hello, memories: [GuestMemory],
         captureStates: @escaping () throws(SessionError) -> [VCPUState]) {
        self.channel = channel
        self.hello = hello
        self.memories = memories
        self.captureStates = captureStates
        zeroHash = MigrationWire.zeroHash(bytes: PageSize.system)
        sent = memories.map { SparsePageHashes(pages: $0.pageCount) }
    }

    /// Greets, sends the hello and waits for the destination to be ready.
    public func open(timeoutNanos: UInt64 = 30_000_000_000) throws(MigrationError) {
        try channel.greet(as: .source)
        try channel.send(.hello(hello))
        switch try channel.receiveFrame(layout: hello, timeoutNanos: timeoutNanos) {
        case .ready: return
        case .abort(let reason): throw MigrationError("the destination refused: \(reason)")
        case let other: throw MigrationError("the destination answered the hello with a \(other.name) frame")
        }
    }

    private func memory(_ slot: UInt32) -> GuestMemory { memories[index(slot)] }

    private func index(_ slot: UInt32) -> Int { slot == MigrationWire.systemSlot ? sent.count - 1 : Int(slot) }

    /// Queues page `page` of `slot` as it is now (sent when its frame fills or `flush`):
    /// returns the hash of the bytes queued and their first word (the guest's stamp), both
    /// of the copy taken, which the guest can no longer change.
    @discardableResult
    public func send(slot: UInt32, page: Int) throws(MigrationError) -> (hash: UInt64, stamp: UInt64) {
        if !runHashes.isEmpty, runSlot != slot || runFirst + runHashes.count != page || runHashes.count == MigrationWire.maxPagesPerFrame {
            try flush()
        }
        if runHashes.isEmpty {
            runSlot = slot
            runFirst = page
            if runData.capacity == 0 { runData.reserveCapacity(MigrationWire.maxPagesPerFrame * pageSize) }
        }
        let src = memory(slot).page(page)
        let i = runHashes.count
        if i % 8 == 0 { runZeroBits.append(0) }
        let h: UInt64, stamp: UInt64
        if MigrationReceiver.isZero(src, pageSize) {
            runZeroBits[i >> 3] |= 1 << UInt8(i & 7)
            h = zeroHash
            stamp = 0
            roundZeroPages += 1
        } else {
            let at = runData.count
            runData.append(contentsOf: UnsafeRawBufferPointer(start: src, count: pageSize))
            // The hash of the bytes queued, not of the page (the guest may write it meanwhile).
            (h, stamp) = runData.withUnsafeBytes {
                (MigrationWire.hash($0.baseAddress! + at, bytes: pageSize), $0.loadUnaligned(fromByteOffset: at, as: UInt64.self))
            }
            roundBytes += UInt64(pageSize)
        }
        runHashes.append(h)
        sent[index(slot)][page] = h
        roundPages += 1
        return (h, stamp)
    }

    /// Sends the queued pages: header, fields and the pages' bytes in one vectored write.
    public func flush() throws(MigrationError) {
        guard !runHashes.isEmpty else { return }
        let meta = MigrationWire.pagesMeta(slot: runSlot, firstPage: UInt64(runFirst), count: runHashes.count,
                                           zeroBits: runZeroBits, hashes: runHashes)
        let header = MigrationWire.header(type: 3, length: meta.count + runData.count, crc: MigrationWire.checksum(meta: meta))
        try pace(header.count + meta.count + runData.count)
        var failure: MigrationError?
        header.withUnsafeBytes { h in
            meta.withUnsafeBytes { m in
                runData.withUnsafeBytes { d in
                    do throws(MigrationError) { try channel.send(parts: [h, m, d]) } catch { failure = error }
                }
            }
        }
        runZeroBits.removeAll(keepingCapacity: true)
        runHashes.removeAll(keepingCapacity: true)
        runData.removeAll(keepingCapacity: true)
        if let failure { throw failure }
    }

    /// Holds the stream to `bandwidth`: sleeps while the bytes sent are ahead of it.
    private func pace(_ bytes: Int) throws(MigrationError) {
        guard bandwidth > 0 else { return }
        if pacingStart == 0 { pacingStart = monotonicNanos() }
        pacedBytes &+= UInt64(bytes)
        let due = Consumer.due(started: pacingStart, bytes: pacedBytes, bandwidth: bandwidth)
        let now = monotonicNanos()
        if due > now + 200_000 { usleep(UInt32(min(due - now, 500_000_000) / 1000)) }
    }

    /// Ends a pre-copy round: flushes and tells the destination what it held.
    public func endRound(_ index: UInt64, falsePositives: UInt64) throws(MigrationError) {
        try flush()
        try channel.send(.roundEnd(MigrationWire.RoundEnd(round: index, pages: roundPages, zeroPages: roundZeroPages, bytes: roundBytes,
                                                          falsePositivePages: falsePositives)))
        totalPages &+= roundPages
        totalZeroPages &+= roundZeroPages
        roundPages = 0
        roundZeroPages = 0
        roundBytes = 0
    }

    /// Every resident page of `memory` (slot `slot`): a bulk copy, or the system slot.
    public func sendResident(slot: UInt32) throws(MigrationError) {
        var failure: MigrationError?
        memory(slot).residentPages().forEachSetPage { page in
            guard failure == nil else { return }
            do throws(MigrationError) { try send(slot: slot, page: page) } catch { failure = error }
        }
        if let failure { throw failure }
        try flush()
    }

    /// The vCPUs' state (paused by the caller).
    public func sendStates() throws(MigrationError) {
        let states: [VCPUState]
        do { states = try captureStates() } catch { throw MigrationError("capturing the vCPU state failed: \(error)") }
        try sendStates(states)
    }

    /// The vCPUs' state as captured.
    public func sendStates(_ states: [VCPUState]) throws(MigrationError) {
        for (v, s) in states.enumerated() {
            try channel.send(.state(MigrationWire.State(vcpu: v, mpState: s.mpState,
                                                         parts: [s.regs, s.sregs, s.xsave, s.xcrs, s.events, s.debugRegs],
                                                         msrs: s.msrs.map { ($0.index, $0.value) })))
        }
    }

    /// The hash of every page as last sent, then the switch-over: the destination's verdict.
    public func switchOver(timeoutNanos: UInt64 = 60_000_000_000) throws(MigrationError) -> MigrationWire.Verified {
        try flush()
        var listed: UInt64 = 0
        for s in sent.indices {
            let slot = s == sent.count - 1 ? MigrationWire.systemSlot : UInt32(s)
            var pages: [UInt64] = [], hashes: [UInt64] = []
            pages.reserveCapacity(MigrationWire.maxHashesPerFrame)
            hashes.reserveCapacity(MigrationWire.maxHashesPerFrame)
            func flushHashes() throws(MigrationError) {
                guard !hashes.isEmpty else { return }
                try channel.send(.hashes(slot: slot, pages: pages, hashes: hashes))
                listed += UInt64(hashes.count)
                pages.removeAll(keepingCapacity: true)
                hashes.removeAll(keepingCapacity: true)
            }
            var failure: MigrationError?
            sent[s].forEachSet { page, h in
                guard failure == nil else { return }
                pages.append(UInt64(page))
                hashes.append(h)
                if hashes.count == MigrationWire.maxHashesPerFrame {
                    do throws(MigrationError) { try flushHashes() } catch { failure = error }
                }
            }
            if let failure { throw failure }
            try flushHashes()
        }
        try channel.send(.switchOver(pages: listed))
        switch try channel.receiveFrame(layout: hello, timeoutNanos: timeoutNanos) {
        case .verified(let v): return v
        case .abort(let reason): throw MigrationError("the destination gave up: \(reason)")
        case let other: throw MigrationError("the destination answered the switch-over with a \(other.name) frame")
        }
    }

    /// Tells the destination to resume the guest; its time to load the state and resume.
    public func resume(timeoutNanos: UInt64 = 30_000_000_000) throws(MigrationError) -> (load: UInt64, resume: UInt64) {
        try channel.send(.resume)
        switch try channel.receiveFrame(layout: hello, timeoutNanos: timeoutNanos) {
        case .resumed(let load, let resume): return (load, resume)
        case .abort(let reason): throw MigrationError("the destination could not resume the guest: \(reason)")
        case let other: throw MigrationError("the destination answered resume with a \(other.name) frame")
        }
    }

    /// Gives up, telling the destination why (best effort: the connection may be gone).
    public func abort(_ reason: String) {
        try? channel.send(.abort(reason))
    }
}

import CKVM
import DirtyScopeModel
import Foundation
import KVM
import Synchronization

/// One thread per vCPU and everything they share: pause and stop flags, pacing, lockstep
/// iterations, ring-full waits, the console, and the first fault. The threads hold this
/// object, never the `GuestMachine`, so the machine's deinit can stop them.
///
/// The guest is untrusted: nothing it writes (pace counts, its own `rate`, console bytes,
/// ring-full exits) can make a host thread sleep longer than `paceCapNanos`, miss a pause
/// or stop, or flood the session: console lines and ring-full reports are rate-limited and
/// what is dropped is counted. Every timed wait runs on the monotonic clock.
final class VCPUThreads: @unchecked Sendable {
    /// Console lines and ring-full reports passed on per second (all vCPUs together); a
    /// burst of this many passes at once.
    static let reportsPerSecond: UInt64 = 20
    /// Longest console line kept; the rest of a longer line is cut.
    static let consoleLineBytes = 200

    private let vcpus: [VCPU]
    private let control: ControlBlock
    private let lockstep: Bool

    private let lock = MonotonicCondition()
    private var threads: [pthread_t] = []
    private var started = false
    private var stopping = false
    private var pauseRequested = false
    /// Why the vCPUs are being paused: what their parks are counted as.
    private var pauseReason: ParkReason = .paused
    /// Parks that ended since the last `takeParks` (ring-full waits included).
    private var finishedParks: [Park] = []
    /// Clock exchanges: the first call's exchange number, TSC before and host time, per
    /// vCPU; and the finished exchanges since the last `takeClockSamples`.
    private var pendingClock: [(id: UInt32, before: UInt64, host: UInt64)?]
    private var clockSamples: [[ClockSample]]
    /// When each vCPU finished a pass (DS_PORT_PASS), since the last `takePassTimes`.
    private var passTimes: [[UInt64]]
    private var parked = 0
    private var running = 0
    private var iteration: UInt64 = 1
    private var passDone: [UInt64]
    /// The lowest of `passDone`, stored whenever a vCPU finishes a pass, so a spinning
    /// `waitForPass` reads one word and never takes the lock the vCPUs report under.
    private let everyPassDone = Atomic<UInt64>(0)
    private var ringResets: UInt64 = 0
    private var ringFullCount: UInt64 = 0
    private var paceCallCount: UInt64 = 0
    private var firstFault: GuestFault?
    /// Each vCPU's console line being written (DS_PORT_PUTC), until a newline or
    /// `consoleLineBytes`, so lines from several vCPUs do not interleave byte by byte.
    private var consoleLines: [[UInt8]]
    /// Longest sleep a guest's pace call may cause: one harvest interval (100 ms when the
    /// session harvests back to back).
    private var paceCap: UInt64 = 100_000_000
    /// Token bucket for console lines and ring-full reports: tokens, last refill.
    private var reportTokens = VCPUThreads.reportsPerSecond
    private var reportRefill: UInt64 = 0
    private var droppedLines: UInt64 = 0
    private var droppedRingFull: UInt64 = 0
    /// Called from a vCPU thread; set before `start`.
    var onFault: (@Sendable (GuestFault) -> Void)?
    /// A vCPU stopped on a full dirty ring: its index, and the ring-full reports the rate
    /// limit dropped since the last one reported.
    var onRingFull: (@Sendable (Int, UInt64) -> Void)?
    var onConsoleLine: (@Sendable (String) -> Void)?

    init(vcpus: [VCPU], control: ControlBlock, lockstep: Bool) {
        self.vcpus = vcpus
        self.control = control
        self.lockstep = lockstep
        passDone = [UInt64](repeating: 0, count: vcpus.count)
        consoleLines = Array(repeating: [], count: vcpus.count)
        pendingClock = Array(repeating: nil, count: vcpus.count)
        clockSamples = Array(repeating: [], count: vcpus.count)
        passTimes = Array(repeating: [], count: vcpus.count)
    }

    /// When each vCPU finished its passes since the last call (monotonic ns).
    func takePassTimes() -> [[UInt64]] {
        lock.lock(); defer { lock.unlock() }
        let t = passTimes
        for i in passTimes.indices { passTimes[i].removeAll(keepingCapacity: true) }
        return t
    }

    /// Most parks and clock samples kept between two takes (the harvester takes them
    /// every round; a session that stops harvesting must not pile them up).
    static let keptParks = 4096
    static let keptClockSamples = 64

    /// The parks that ended since the last call.
    func takeParks() -> [Park] {
        lock.lock(); defer { lock.unlock() }
        let p = finishedParks
        finishedParks.removeAll(keepingCapacity: true)
        return p
    }

    /// Each vCPU's clock exchanges finished since the last call.
    func takeClockSamples() -> [[ClockSample]] {
        lock.lock(); defer { lock.unlock() }
        let s = clockSamples
        for i in clockSamples.indices { clockSamples[i].removeAll(keepingCapacity: true) }
        return s
    }

    /// Notes a park (lock held).
    private func noteParkLocked(_ p: Park) {
        if finishedParks.count >= Self.keptParks { finishedParks.removeFirst(finishedParks.count / 2) }
        finishedParks.append(p)
    }

    /// The longest a guest's pace call may make its vCPU thread sleep; the session sets it
    /// to its harvest interval (0, back to back, means 100 ms).
    var paceCapNanos: UInt64 {
        get { lock.lock(); defer { lock.unlock() }; return paceCap }
        set { lock.lock(); paceCap = newValue == 0 ? 100_000_000 : newValue; lock.broadcast(); lock.unlock() }
    }

    /// Console lines and ring-full reports dropped by the rate limit.
    var dropped: (consoleLines: UInt64, ringFull: UInt64) {
        lock.lock(); defer { lock.unlock() }; return (droppedLines, droppedRingFull)
    }

    /// Starts one thread per vCPU (once).
    func start() {
        lock.lock()
        guard !started else { lock.unlock(); return }
        started = true
        running = vcpus.count
        lock.unlock()
        VCPUKick.installHandler()
        for vcpu in vcpus {
            threads.append(spawnThread { [self] in
                var deadline = monotonicNanos()
                while runOnce(vcpu, deadline: &deadline) {}
            })
        }
    }

    /// Stops the threads and waits for them. Idempotent.
    func stop() {
        lock.lock()
        stopping = true
        lock.broadcast()
        lock.unlock()
        kickAll()
        joinOrDetach(threads)
        threads.removeAll()
    }

    /// Returns once every running vCPU is out of KVM_RUN and parked.
    /// A vCPU thread sleeping in a pace, idle, pass or ring-full wait wakes at once (the
    /// broadcast); one in KVM_RUN is kicked out, again every 50 ms until all are parked.
    func pause(reason: ParkReason = .paused) {
        lock.lock()
        pauseRequested = true
        pauseReason = reason
        lock.broadcast()
        lock.unlock()
        kickAll()
        lock.lock()
        while started && !stopping && parked < running {
            lock.wait(nanos: 50_000_000)
            guard parked < running else { break }
            lock.unlock()
            kickAll()
            lock.lock()
        }
        lock.unlock()
    }

    func resume() {
        lock.lock()
        pauseRequested = false
        lock.broadcast()
        lock.unlock()
    }

    var fault: GuestFault? { lock.lock(); defer { lock.unlock() }; return firstFault }
    var ringFullExits: UInt64 { lock.lock(); defer { lock.unlock() }; return ringFullCount }
    var paceCalls: UInt64 { lock.lock(); defer { lock.unlock() }; return paceCallCount }

    /// Wakes vCPUs sleeping in DS_PORT_IDLE (the control block changed).
    func wakeIdle() {
        lock.lock()
        lock.broadcast()
        lock.unlock()
    }

    func waitForPass(poll: (() -> Void)?, spin: Bool) {
        if spin { return spinForPass(poll: poll) }
        lock.lock()
        while !stopping && firstFault == nil && passDone.contains(where: { $0 < iteration }) {
            lock.wait(nanos: poll == nil ? 100_000_000 : 2_000_000)
            if let poll {
                lock.unlock()
                poll()
                lock.lock()
            }
        }
        lock.unlock()
    }

    /// `waitForPass` busy-waiting, as dirty_log_perf_test's main thread does: the thread
    /// stays on its CPU and calls GET the moment the last vCPU is done, where a thread
    /// woken from a sleep starts on a CPU that has been idle. Stop and faults are checked,
    /// and `poll` called, every millisecond.
    private func spinForPass(poll: (() -> Void)?) {
        lock.lock()
        let target = iteration
        lock.unlock()
        var deadline: UInt64 = 0
        var loads: UInt64 = 0
        while everyPassDone.load(ordering: .acquiring) < target {
            // The clock every 256 loads: a load costs a few nanoseconds, the clock more.
            loads &+= 1
            guard loads & 0xff == 0, monotonicNanos() >= deadline else { continue }
            lock.lock()
            let over = stopping || firstFault != nil
            lock.unlock()
            if over { return }
            poll?()
            deadline = monotonicNanos() + 1_000_000
        }
    }

    func startNextIteration() {
        lock.lock()
        iteration += 1
        lock.broadcast()
        lock.unlock()
    }

    func ringsWereReset() {
        lock.lock()
        ringResets &+= 1
        lock.broadcast()
        lock.unlock()
    }

    private func kickAll() {
        for v in vcpus { v.requestImmediateExit() }
        for t in threads { VCPUKick.signal(t) }
    }

    // MARK: The vCPU thread

    /// One turn of a vCPU thread: park while paused, enter the guest, handle the exit.
    /// Returns false when the thread should end (stop requested, or the guest faulted).
    private func runOnce(_ vcpu: VCPU, deadline: inout UInt64) -> Bool {
        lock.lock()
        if stopping { running -= 1; lock.broadcast(); lock.unlock(); return false }
        if pauseRequested {
            parked += 1
            lock.broadcast()
            let since = monotonicNanos()
            let reason = pauseReason
            while pauseRequested && !stopping { lock.wait() }
            parked -= 1
            deadline = monotonicNanos()
            noteParkLocked(Park(vcpu: vcpu.id, start: since, end: deadline, reason: reason))
        }
        lock.unlock()

        let exit: VCPUExit
        do {
            exit = try vcpu.run()
        } catch {
            reportFault(vcpu, error.description)
            return false
        }
        switch exit {
        case .interrupted:
            return true
        case .portOut(let port, _, let value):
            handlePort(vcpu, port: port, value: value, deadline: &deadline)
            if port == DS_PORT_PANIC {
                reportFault(vcpu, "guest panic (DS_PORT_PANIC, code \(value))")
                return false
            }
            return true
        case .portIn:
            vcpu.completePortIn(0)
            return true
        case .halt:
            reportFault(vcpu, "guest halted (HLT)")
            return false
        case .dirtyRingFull:
            lock.lock()
            ringFullCount += 1
            let seen = ringResets
            lock.unlock()
            lock.lock()
            let report = takeReportToken()
            var droppedBefore: UInt64 = 0
            if report {
                droppedBefore = droppedRingFull
                droppedRingFull = 0
            } else {
                droppedRingFull += 1
            }
            lock.unlock()
            // Unreported, the ring waits for the next round's reset (at most one interval).
            let since = monotonicNanos()
            if report { onRingFull?(vcpu.id, droppedBefore) }
            lock.lock()
            while ringResets == seen && !stopping && !pauseRequested {
                lock.wait(nanos: 50_000_000)
            }
            noteParkLocked(Park(vcpu: vcpu.id, start: since, end: monotonicNanos(), reason: .ringFull))
            lock.unlock()
            return true
        case .shutdown:
            reportFault(vcpu, "KVM_EXIT_SHUTDOWN (triple fault)")
        case .internalError(let sub):
            reportFault(vcpu, "KVM_EXIT_INTERNAL_ERROR (suberror \(sub))")
        case .failEntry(let reason):
            reportFault(vcpu, "KVM_EXIT_FAIL_ENTRY (hardware reason 0x\(String(reason, radix: 16)))")
        case .mmio(let address, let length, let isWrite):
            reportFault(vcpu, "KVM_EXIT_MMIO: \(length)-byte \(isWrite ? "write to" : "read of") unbacked guest-physical address 0x\(String(address, radix: 16))")
        case .other(let reason):
            reportFault(vcpu, "unhandled exit reason \(reason)")
        }
        return false
    }

    private func handlePort(_ vcpu: VCPU, port: UInt16, value: UInt32, deadline: inout UInt64) {
        switch port {
        case UInt16(DS_PORT_PACE):
            lock.lock()
            paceCallCount += 1
            lock.unlock()
            // Both the count and the rate come from the guest: the debt is capped at one
            // harvest interval, so no value (0xffffffff writes at rate 1) sleeps longer.
            let rate = control.load(vcpu.id, .rate)
            guard rate > 0 else { return }
            let now = monotonicNanos()
            let cap = paceCapNanos
            let owed = UInt64(value) * 1_000_000_000 / rate   // below 2^32 * 10^9: no overflow
            deadline = min(max(deadline, now &- 50_000_000) &+ owed, now &+ cap)   // far behind: no burst
            if deadline > now { sleep(until: deadline) }
        case UInt16(DS_PORT_PASS):
            let now = monotonicNanos()
            lock.lock()
            if passTimes[vcpu.id].count >= Self.keptParks { passTimes[vcpu.id].removeFirst(Self.keptParks / 2) }
            passTimes[vcpu.id].append(now)
            passDone[vcpu.id] = iteration
            everyPassDone.store(passDone.min() ?? 0, ordering: .releasing)
            lock.broadcast()
            while lockstep && passDone[vcpu.id] >= iteration && !stopping && !pauseRequested {
                lock.wait(nanos: 50_000_000)
            }
            lock.unlock()
            deadline = monotonicNanos()
        case UInt16(DS_PORT_CLOCK):
            // The host's clock first, as close to the guest's TSC read as this exit allows.
            let now = monotonicNanos()
            let id = value & ~DS_CLOCK_AFTER
            lock.lock()
            if value & DS_CLOCK_AFTER == 0 {
                pendingClock[vcpu.id] = (id, control.load(vcpu.id, .clockBefore), now)
            } else if let p = pendingClock[vcpu.id], p.id == id {
                pendingClock[vcpu.id] = nil
                if clockSamples[vcpu.id].count >= Self.keptClockSamples { clockSamples[vcpu.id].removeFirst() }
                clockSamples[vcpu.id].append(ClockSample(before: p.before, host: p.host, after: control.load(vcpu.id, .clockAfter)))
            }
            lock.unlock()
        case UInt16(DS_PORT_IDLE):
            lock.lock()
            if !stopping && !pauseRequested { lock.wait(nanos: 1_000_000) }
            lock.unlock()
            deadline = monotonicNanos()
        case UInt16(DS_PORT_PUTC):
            let byte = UInt8(truncatingIfNeeded: value)
            lock.lock()
            if byte != 10 { consoleLines[vcpu.id].append(byte) }
            var line: [UInt8]?
            var droppedBefore: UInt64 = 0
            if byte == 10 || consoleLines[vcpu.id].count >= Self.consoleLineBytes {
                if takeReportToken() {
                    line = consoleLines[vcpu.id]
                    droppedBefore = droppedLines
                    droppedLines = 0
                } else {
                    droppedLines += 1
                }
                consoleLines[vcpu.id].removeAll(keepingCapacity: true)
            }
            lock.unlock()
            if let line {
                let prefix = droppedBefore > 0 ? "(\(droppedBefore) console lines dropped) " : ""
                onConsoleLine?(prefix + (vcpus.count > 1 ? "vCPU \(vcpu.id): " : "") + Self.printable(line))
            }
        default:
            break
        }
    }

    /// Sleeps until `deadline` (monotonic ns), waking early for pause or stop.
    private func sleep(until deadline: UInt64) {
        lock.lock()
        while !stopping && !pauseRequested {
            let now = monotonicNanos()
            if now >= deadline { break }
            lock.wait(nanos: deadline - now)
        }
        lock.unlock()
    }

    /// Takes a token for one report (lock held); false when the rate limit is reached.
    private func takeReportToken() -> Bool {
        let now = monotonicNanos()
        let earned = (now &- reportRefill) / (1_000_000_000 / Self.reportsPerSecond)
        if earned > 0 {
            reportTokens = min(Self.reportsPerSecond, reportTokens &+ earned)
            reportRefill = now
        }
        guard reportTokens > 0 else { return false }
        reportTokens -= 1
        return true
    }

    /// Console bytes as text that cannot drive a terminal: C0 controls and DEL become caret
    /// notation (ESC is "^["), C1 controls and invalid UTF-8 become "?".
    static func printable(_ bytes: [UInt8]) -> String {
        var ascii: [UInt8] = []
        ascii.reserveCapacity(bytes.count)
        for b in bytes {
            switch b {
            case 0x09: ascii.append(0x20)
            case 0..<0x20: ascii += [UInt8(ascii: "^"), b + 0x40]
            case 0x7f: ascii += [UInt8(ascii: "^"), UInt8(ascii: "?")]
            default: ascii.append(b)
            }
        }
        let text = String(decoding: ascii, as: UTF8.self)
        return String(String.UnicodeScalarView(text.unicodeScalars.map {
            (0x80...0x9f).contains($0.value) || $0 == "\u{FFFD}" ? "?" : $0
        }))
    }

    private func reportFault(_ vcpu: VCPU, _ reason: String) {
        let regs = try? vcpu.registers()
        let sregs = try? vcpu.specialRegisters()
        let f = GuestFault(vcpu: vcpu.id, reason: reason, rip: regs?.rip ?? 0, rsp: regs?.rsp ?? 0, cr3: sregs?.cr3 ?? 0)
        lock.lock()
        if firstFault == nil { firstFault = f }
        running -= 1
        lock.broadcast()
        lock.unlock()
        onFault?(f)
    }
}

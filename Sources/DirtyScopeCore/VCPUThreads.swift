import CKVM
import Foundation
import KVM

/// One thread per vCPU and everything they share: pause and stop flags, pacing, lockstep
/// iterations, ring-full waits, the console, and the first fault. The threads hold this
/// object, never the `GuestMachine`, so the machine's deinit can stop them.
final class VCPUThreads: @unchecked Sendable {
    private let vcpus: [VCPU]
    private let control: ControlBlock
    private let lockstep: Bool

    private let lock = NSCondition()
    private var threads: [pthread_t] = []
    private var started = false
    private var stopping = false
    private var pauseRequested = false
    private var parked = 0
    private var running = 0
    private var iteration: UInt64 = 1
    private var passDone: [UInt64]
    private var ringResets: UInt64 = 0
    private var ringFullCount: UInt64 = 0
    private var paceCallCount: UInt64 = 0
    private var firstFault: GuestFault?
    /// The console line being written (DS_PORT_PUTC), until a newline or 200 bytes.
    private var consoleLine: [UInt8] = []
    /// Called from a vCPU thread; set before `start`.
    var onFault: (@Sendable (GuestFault) -> Void)?
    var onRingFull: (@Sendable (Int) -> Void)?
    var onConsoleLine: (@Sendable (String) -> Void)?

    init(vcpus: [VCPU], control: ControlBlock, lockstep: Bool) {
        self.vcpus = vcpus
        self.control = control
        self.lockstep = lockstep
        passDone = [UInt64](repeating: 0, count: vcpus.count)
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
    func pause() {
        lock.lock()
        pauseRequested = true
        lock.unlock()
        kickAll()
        lock.lock()
        while started && !stopping && parked < running {
            if !lock.wait(until: Date().addingTimeInterval(0.05)) {
                lock.unlock()
                kickAll()
                lock.lock()
            }
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

    func waitForPass(poll: (() -> Void)?) {
        lock.lock()
        while !stopping && firstFault == nil && passDone.contains(where: { $0 < iteration }) {
            lock.wait(until: Date().addingTimeInterval(poll == nil ? 0.1 : 0.002))
            if let poll {
                lock.unlock()
                poll()
                lock.lock()
            }
        }
        lock.unlock()
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
            while pauseRequested && !stopping { lock.wait() }
            parked -= 1
            deadline = monotonicNanos()
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
            onRingFull?(vcpu.id)
            lock.lock()
            while ringResets == seen && !stopping && !pauseRequested {
                lock.wait(until: Date().addingTimeInterval(0.05))
            }
            lock.unlock()
            return true
        case .shutdown:
            reportFault(vcpu, "KVM_EXIT_SHUTDOWN (triple fault)")
        case .internalError(let sub):
            reportFault(vcpu, "KVM_EXIT_INTERNAL_ERROR (suberror \(sub))")
        case .failEntry(let reason):
            reportFault(vcpu, "KVM_EXIT_FAIL_ENTRY (hardware reason 0x\(String(reason, radix: 16)))")
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
            let rate = control.load(vcpu.id, .rate)
            guard rate > 0 else { return }
            let now = monotonicNanos()
            deadline += UInt64(value) * 1_000_000_000 / rate
            if deadline + 50_000_000 < now { deadline = now }   // fell far behind: don't burst
            if deadline > now { sleep(until: deadline) }
        case UInt16(DS_PORT_PASS):
            lock.lock()
            passDone[vcpu.id] = iteration
            lock.broadcast()
            while lockstep && passDone[vcpu.id] >= iteration && !stopping && !pauseRequested {
                lock.wait(until: Date().addingTimeInterval(0.05))
            }
            lock.unlock()
            deadline = monotonicNanos()
        case UInt16(DS_PORT_IDLE):
            lock.lock()
            if !stopping && !pauseRequested { lock.wait(until: Date().addingTimeInterval(0.001)) }
            lock.unlock()
            deadline = monotonicNanos()
        case UInt16(DS_PORT_PUTC):
            let byte = UInt8(truncatingIfNeeded: value)
            lock.lock()
            if byte != 10 { consoleLine.append(byte) }
            let line = byte == 10 || consoleLine.count >= 200 ? consoleLine : nil
            if line != nil { consoleLine.removeAll() }
            lock.unlock()
            if let line { onConsoleLine?(String(decoding: line, as: UTF8.self)) }
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
            lock.wait(until: Date().addingTimeInterval(Double(deadline - now) / 1e9))
        }
        lock.unlock()
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

import DirtyScopeCore
import DirtyScopeModel
import Foundation
import KVM
import KVMTestSupport
import XCTest

/// Guests that attack the host, built here from Tests/HostileGuests/*.c with the
/// toolchain's clang and ld.lld (the flags GuestBuildPlugin uses for Guests/). Each must
/// leave the host alive, responsive (pause and stop return) and bounded, with a fault
/// that names the vCPU and the reason.
final class HostileGuestTests: XCTestCase {
    private static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("HostileGuests")
    private static let include = sources.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Guests/include")
    private static let linkerScript = sources.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Guests/guest.ld")

    private var built: [String] = []

    override func tearDown() {
        for path in built { unlink(path) }
    }

    /// The flat binary of Tests/HostileGuests/`name`.c; skips when the toolchain has no
    /// clang or ld.lld on the PATH.
    private func guest(_ name: String) throws -> String {
        let clang = try tool("clang"), lld = try tool("ld.lld")
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("dirtyscope-hostile-\(name)-\(UUID().uuidString)").path
        built += [base + ".o", base + ".bin"]
        try run(clang, ["--target=x86_64-unknown-none-elf", "-std=c11", "-ffreestanding", "-fno-pic", "-fno-pie",
                        "-mno-red-zone", "-mgeneral-regs-only", "-fno-stack-protector", "-fno-builtin", "-nostdlib",
                        "-O2", "-Wall", "-Wextra", "-Werror", "-I", Self.include.path, "-I", Self.sources.path,
                        "-c", Self.sources.appendingPathComponent("\(name).c").path, "-o", base + ".o"])
        try run(lld, ["-static", "-nostdlib", "-T", Self.linkerScript.path, "--oformat=binary", "-o", base + ".bin", base + ".o"])
        return base + ".bin"
    }

    private func tool(_ name: String) throws -> String {
        for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(folder)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw XCTSkip("\(name) is not on the PATH: the hostile guests cannot be built (the Swift toolchain ships it)")
    }

    private func run(_ tool: String, _ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        try p.run()
        p.waitUntilExit()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard p.terminationStatus == 0 else { throw NSError(domain: "build", code: Int(p.terminationStatus), userInfo: [NSLocalizedDescriptionKey: "\(tool) failed: \(message)"]) }
    }

    private func machine(_ path: String, vcpus: Int = 1, rate: UInt64 = 0) throws -> GuestMachine {
        try GuestMachine(system: try openKVM(), config: MachineConfig(slotBytes: [2 << 20], vcpus: vcpus, guest: .file(path),
                                                                       workload: WorkloadSettings(workload: .idle, rate: rate)))
    }

    /// Runs `body` on a thread of its own and fails if it has not returned within 20 s
    /// (a hang, not a timing: the bound is 200 times what it needs).
    private func returns(_ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: @escaping @Sendable () -> Void) {
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            body()
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 20), .success, "\(what) did not return: the host is stuck", file: file, line: line)
    }

    /// A fault is reported with its vCPU and reason, and the host still pauses and stops.
    private func assertFault(_ name: String, vcpus: Int = 2, reason expected: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let m = try machine(try guest(name), vcpus: vcpus)
        m.start()
        XCTAssertTrue(eventually { m.currentFault != nil }, "\(name): no fault reported", file: file, line: line)
        guard let fault = m.currentFault else { return }
        XCTAssertTrue((0..<vcpus).contains(fault.vcpu), file: file, line: line)
        for text in expected {
            XCTAssertTrue(fault.description.contains(text), "\(name): '\(fault)' lacks \(text)", file: file, line: line)
        }
        returns("pause after \(name)") { m.pause(); m.resume() }
        returns("stop after \(name)") { m.stop() }
    }

    func testHaltIsAFaultNamedHLT() throws {
        try assertFault("halt", reason: ["guest halted (HLT)", "rip=0x"])
    }

    func testDivideByZeroIsATripleFault() throws {
        try assertFault("divide", reason: ["KVM_EXIT_SHUTDOWN"])
    }

    /// The exit is named, with the address the guest touched.
    func testMMIOIsNamedWithItsAddress() throws {
        try assertFault("mmio", reason: ["KVM_EXIT_MMIO", "read", "0x30000000"])
    }

    func testPageTableWriterFaults() throws {
        let m = try machine(try guest("pagetable"))
        m.start()
        XCTAssertTrue(eventually { m.currentFault != nil })
        let reason = m.currentFault?.reason ?? ""
        XCTAssertTrue(reason.contains("SHUTDOWN") || reason.contains("INTERNAL_ERROR"), reason)
        returns("stop") { m.stop() }
    }

    /// rate = 1 and 0xffffffff writes a pace call asks for 136 years of sleep; the host
    /// sleeps at most its cap, and pause and stop wake a sleeping vCPU thread at once.
    func testHugePaceAtRateOneNeverStallsPauseOrStop() throws {
        let m = try machine(try guest("pace"), vcpus: 2, rate: 1000)
        m.paceCapNanos = 20_000_000
        m.start()
        usleep(200_000)   // both vCPUs are in their first pace sleep by now
        for _ in 0..<3 {
            returns("pause") { m.pause() }
            m.resume()
            usleep(50_000)
        }
        XCTAssertNil(m.currentFault)
        returns("stop") { m.stop() }
    }

    /// A host thread waiting for a pass, asleep or spinning, returns when the guest
    /// faults instead of finishing it, and when the machine is stopped under it.
    func testWaitingForAPassEndsOnAFaultOrAStop() throws {
        for wait in PassWait.allCases {
            let faulting = try machine(try guest("divide"), vcpus: 2)
            faulting.start()
            returns("\(wait) wait for a pass the guest never finishes, after its fault") { faulting.waitForPass(wait) }
            XCTAssertNotNil(faulting.currentFault, "\(wait)")
            faulting.stop()

            let spinning = try machine(try guest("spin"), vcpus: 2)
            spinning.start()
            let waiting = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                spinning.waitForPass(wait)
                waiting.signal()
            }
            XCTAssertEqual(waiting.wait(timeout: .now() + 0.2), .timedOut, "\(wait): returned with no pass finished")
            returns("stop") { spinning.stop() }
            XCTAssertEqual(waiting.wait(timeout: .now() + 20), .success, "\(wait): still waiting after stop")
        }
    }

    /// A guest that never makes a port call is kicked out of KVM_RUN.
    func testSpinningGuestIsPausedAndStopped() throws {
        let m = try machine(try guest("spin"), vcpus: 2)
        m.start()
        usleep(100_000)
        returns("pause") { m.pause() }
        m.resume()
        returns("stop") { m.stop() }
    }

    /// Lines reach the host whole (one buffer per vCPU), with every escape sequence made
    /// printable, at most `reportsPerSecond` a second plus the burst, and what is dropped
    /// is counted and said.
    func testConsoleFloodIsPrintablePerVCPUAndRateLimited() throws {
        let m = try machine(try guest("console"), vcpus: 2)
        let lines = Locked<[String]>([])
        m.onConsoleLine = { line in lines.withLock { $0.append(line) } }
        let start = Date()
        m.start()
        XCTAssertTrue(eventually { m.droppedReports.consoleLines > 0 && lines.withLock { $0.count } > 25 },
                      "lines: \(lines.withLock { $0.count }), dropped: \(m.droppedReports.consoleLines)")
        returns("stop") { m.stop() }
        let elapsed = Date().timeIntervalSince(start)
        let got = lines.withLock { $0 }
        XCTAssertLessThanOrEqual(Double(got.count), 20 + 20 * (elapsed + 1), "the rate limit let \(got.count) lines through in \(elapsed) s")
        XCTAssertTrue(got.contains { $0.hasPrefix("(") && $0.contains("console lines dropped)") }, "the dropped count is said")
        for line in got {
            XCTAssertFalse(line.unicodeScalars.contains { $0.value < 0x20 || (0x7f...0x9f).contains($0.value) }, "control bytes in \(line.debugDescription)")
            let body = line.drop { $0 != "v" }   // after an optional "(N console lines dropped) "
            let whole = ["vCPU 0: ^[[2J^[]0;pwned^G^[[31mRED^[[0m from vCPU 0", "vCPU 1: ^[[2J^[]0;pwned^G^[[31mRED^[[0m from vCPU 1"]
            XCTAssertTrue(whole.contains(String(body)), "a line mixed from two vCPUs or cut: \(line.debugDescription)")
        }
    }

    func testNewlineFloodIsRateLimited() throws {
        let m = try machine(try guest("newlines"), vcpus: 2)
        let count = Locked(0)
        m.onConsoleLine = { _ in count.withLock { $0 += 1 } }
        let start = Date()
        m.start()
        XCTAssertTrue(eventually { m.droppedReports.consoleLines > 1000 })
        returns("stop") { m.stop() }
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertLessThanOrEqual(Double(count.withLock { $0 }), 20 + 20 * (elapsed + 1))
    }

    /// Counters the guest writes (2^64 - 2 writes, stepping back) never reach a round
    /// unbounded: at most one write a nanosecond per vCPU over the round.
    func testScribbledCountersAreBounded() throws {
        let m = try machine(try guest("scribbler"), vcpus: 2, rate: 100_000)
        defer { m.stop() }
        let start = monotonicNanos()
        let harvester = try Harvester(machine: m, mode: .legacy, clearChunk: .pages(64), method: .content, bandwidth: 0)
        m.start()
        var elapsed: UInt64 = 0
        var writes: UInt64 = 0
        for _ in 0..<5 {
            usleep(20_000)
            let round = try harvester.harvestRound()
            writes &+= round[.guestWrites]
        }
        elapsed = monotonicNanos() - start
        XCTAssertLessThanOrEqual(writes, elapsed * 2, "guest-written counts reached the rounds unbounded")
        XCTAssertGreaterThan(harvester.clampedWriteCounts, 0, "the clamps are counted")
        XCTAssertNil(m.currentFault)
    }
}

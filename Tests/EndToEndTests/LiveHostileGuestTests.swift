import Foundation
import XCTest

/// Hostile guests under the live heatmap (tmux): the screen says what the guest did, and
/// `q` still quits. The guests of a few instructions are given as bytes with their
/// assembly; the longer ones (scribbler, pace, newlines) are built from
/// Tests/HostileGuests, the C that KVMTests' HostileGuestTests builds and tests too.
final class LiveHostileGuestTests: ScratchTestCase {
    private static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("HostileGuests")
    private static let guests = sources.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Guests")

    /// The flat binary of Tests/HostileGuests/`name`.c, built with the toolchain's clang
    /// and ld.lld and GuestBuildPlugin's flags; skips where they are not on the PATH.
    private func built(_ name: String) throws -> [UInt8] {
        func tool(_ tool: String) throws -> String {
            for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
            where FileManager.default.isExecutableFile(atPath: "\(folder)/\(tool)") {
                return "\(folder)/\(tool)"
            }
            throw XCTSkip("\(tool) is not on the PATH: the hostile guests cannot be built (the Swift toolchain ships it)")
        }
        let object = scratch.appendingPathComponent("\(name).o").path
        let binary = scratch.appendingPathComponent("\(name)-built.bin").path
        for (program, args) in [
            (try tool("clang"), ["--target=x86_64-unknown-none-elf", "-std=c11", "-ffreestanding", "-fno-pic", "-fno-pie",
                                 "-mno-red-zone", "-mgeneral-regs-only", "-fno-stack-protector", "-fno-builtin", "-nostdlib",
                                 "-O2", "-Wall", "-Wextra", "-Werror", "-I", Self.guests.appendingPathComponent("include").path,
                                 "-I", Self.sources.path, "-c", Self.sources.appendingPathComponent("\(name).c").path, "-o", object]),
            (try tool("ld.lld"), ["-static", "-nostdlib", "-T", Self.guests.appendingPathComponent("guest.ld").path,
                                  "--oformat=binary", "-o", binary, object]),
        ] {
            let outcome = try Running(program, args, in: scratch).finish(timeout: 60)
            XCTAssertEqual(outcome.status, 0, "\(program): \(outcome.stderr)")
        }
        return Array(try Data(contentsOf: URL(fileURLWithPath: binary)))
    }

    private func start(_ name: String, _ code: [UInt8]) throws -> TmuxSession {
        let tmux = try requireTmux()
        try requireKVM()
        let guest = scratch.appendingPathComponent("\(name).bin").path
        FileManager.default.createFile(atPath: guest, contents: Data(code))
        let s = try TmuxSession(tmux: tmux, scratch: scratch, name: "hostile-\(name)", width: 160, height: 48,
                                argv: [try Tool.binary(), "run", "--slots", "8M", "--vcpus", "2", "--interval", "50ms",
                                       "--guest-file", guest])
        session = s
        return s
    }

    private func quit(_ s: TmuxSession) {
        s.send("q", literal: true)
        let (code, _) = s.waitForExit(timeout: 10)
        XCTAssertEqual(code, 0)
    }

    func testMMIOFaultIsShownWithItsAddress() throws {
        // mov eax, [0x30000000]; jmp $
        let s = try start("mmio", [0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x30, 0xeb, 0xfe])
        s.waitFor(text: "KVM_EXIT_MMIO")
        XCTAssertTrue(s.capture().contains("0x30000000"), s.capture())
        quit(s)
    }

    /// HLT with interrupts off can never wake: a fault named HLT, with the guest's rip.
    func testHaltIsShownAsAFault() throws {
        let s = try start("halt", [0xf4, 0xeb, 0xfe])   // hlt; jmp $
        s.waitFor(text: "guest halted (HLT)")
        XCTAssertTrue(s.capture().contains("GUEST FAULT"), s.capture())
        quit(s)
    }

    /// A division by zero with no IDT is a triple fault: KVM_EXIT_SHUTDOWN, named.
    func testDivideByZeroIsShownAsAShutdown() throws {
        let s = try start("divide", [0x31, 0xc9, 0xf7, 0xf1, 0xeb, 0xfe])   // xor ecx, ecx; div ecx; jmp $
        s.waitFor(text: "KVM_EXIT_SHUTDOWN")
        XCTAssertTrue(s.capture().contains("GUEST FAULT"), s.capture())
        quit(s)
    }

    /// A guest that wipes its own page tables cannot fetch its next instruction: the
    /// fault is shown (KVM says shutdown or internal error, by host), and q still quits.
    func testPageTableWriterIsShownAsAFault() throws {
        // mov qword [0x100000], 0; mov rax, cr3; mov cr3, rax; jmp $
        let s = try start("pagetable", [0x48, 0xc7, 0x04, 0x25, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00,
                                        0x0f, 0x20, 0xd8, 0x0f, 0x22, 0xd8, 0xeb, 0xfe])
        s.waitFor("the fault banner") { $0.contains("GUEST FAULT") }
        let screen = s.capture()
        XCTAssertTrue(screen.contains("SHUTDOWN") || screen.contains("INTERNAL_ERROR"), screen)
        quit(s)
    }

    /// Escape sequences reach the screen as text (the screen is not cleared), and the
    /// flood leaves the UI responsive.
    func testConsoleFloodIsShownAsText() throws {
        // mov edx, 0x5d3; 1: mov al, ESC / '[' / '2' / 'J' / 'A' / '\n', out dx, al each; jmp 1b
        var code: [UInt8] = [0xba, 0xd3, 0x05, 0x00, 0x00]
        for byte: UInt8 in [0x1b, 0x5b, 0x32, 0x4a, 0x41, 0x0a] { code += [0xb0, byte, 0xee] }
        code += [0xeb, 0xec]
        let s = try start("console", code)
        s.waitFor(text: "^[[2JA")
        s.send("p", literal: true)
        s.waitFor(text: "PAUSED", timeout: 10)
        quit(s)
    }

    /// A guest that never exits to the host on its own: pause and q still work.
    func testSpinningGuestLeavesTheUIResponsive() throws {
        let s = try start("spin", [0xeb, 0xfe])   // jmp $
        s.waitFor("a harvested round") { (firstMatch($0, #"round (\d+)"#).flatMap { Int($0) } ?? 0) >= 2 }
        quit(s)
    }

    /// A guest that scribbles its control block (counts of 2^64 - 2 stepping back, bogus
    /// GPAs and stamps): the screen says the write counters were out of range and clamped,
    /// no unchecked count reaches it, and rounds go on.
    func testScribbledControlBlockIsShownClamped() throws {
        let s = try start("scribbler", try built("scribbler"))
        let screen = s.waitFor(text: "guest write counters out of range") ?? ""
        XCTAssertTrue(screen.contains("writes clamped"), screen)
        XCTAssertFalse(screen.contains("18446744073709551"), screen)
        let round = firstMatch(s.header(), #"round (\d+)"#).flatMap { Int($0) } ?? 0
        s.waitFor("rounds after the scribbles") { _ in (firstMatch(s.header(), #"round (\d+)"#).flatMap { Int($0) } ?? 0) > round + 2 }
        quit(s)
    }

    /// A pace call of 0xffffffff writes at a rate of 1 (136 years, taken at its word): the
    /// host sleeps at most one harvest interval, so the screen keeps updating and q quits
    /// at once (the time it takes is logged; the test fails only on a hang).
    func testHugePaceRequestLeavesTheScreenUpdating() throws {
        let s = try start("pace", try built("pace"))
        func round() -> Int { firstMatch(s.header(), #"round (\d+)"#).flatMap { Int($0) } ?? 0 }
        s.waitFor("a harvested round") { _ in round() >= 2 }
        let first = round()
        s.waitFor("ten more rounds on screen") { _ in round() >= first + 10 }
        let sent = Date()
        s.send("q", literal: true)
        let (code, _) = s.waitForExit(timeout: 10)
        XCTAssertEqual(code, 0)
        print("pace 0xffffffff at rate 1: q quit in \(String(format: "%.2f", Date().timeIntervalSince(sent))) s (tmux polled every 50 ms)")
    }

    /// A guest printing newlines as fast as it can: the notes are rate-limited and the
    /// screen shows how many lines were dropped.
    func testNewlineFloodShowsTheDroppedCount() throws {
        let s = try start("newlines", try built("newlines"))
        s.waitFor("a count of dropped console lines") { screen in
            (firstMatch(screen, #"\((\d+) console lines dropped\)"#).flatMap { Int($0) } ?? 0) > 0
        }
        quit(s)
    }
}

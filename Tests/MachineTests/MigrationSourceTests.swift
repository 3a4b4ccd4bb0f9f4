@testable import DirtyScopeCore
import DirtyScopeModel
import Foundation
import KVM
import KVMTestSupport
import XCTest

/// A live session migrating to a receiver in this process (a thread on a private Unix
/// socket): the guest goes on at the destination with every page matched, the figures
/// add up, and a connection dropped in the middle leaves the source's guest running.
final class MigrationSourceTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "dirtyscope-migration-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A receiver thread: accepts one connection on `address` and runs it; `onRound` sees
    /// each pre-copy round (with the channel, to drop it).
    private final class Destination: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var result: Result<MigrationReceiver.Outcome, MigrationError>?
        var rounds = 0

        init(system: KVMSystem, address: MigrationAddress, dropAfterRounds: Int? = nil) throws {
            let listener = try MigrationListener(address)
            Thread { [self] in
                defer { done.signal() }
                do throws(MigrationError) {
                    guard let channel = try listener.accept(timeoutNanos: 30_000_000_000) else {
                        result = .failure(MigrationError("no source connected"))
                        return
                    }
                    let receiver = MigrationReceiver(system: system, channel: channel)
                    receiver.onRound = { [self] _ in
                        rounds += 1
                        if let dropAfterRounds, rounds >= dropAfterRounds { channel.close() }
                    }
                    result = .success(try receiver.run(frameTimeoutNanos: 20_000_000_000))
                } catch {
                    result = .failure(error)
                }
            }.start()
        }

        func wait() -> Result<MigrationReceiver.Outcome, MigrationError>? {
            XCTAssertEqual(done.wait(timeout: .now() + 90), .success, "the receiver ends")
            return result
        }
    }

    private func session(_ system: KVMSystem, mode: HarvestMode, bandwidth: UInt64 = 0) throws -> (Session, RecordQueue) {
        var config = SessionConfig()
        config.slotBytes = [8 << 20, 16 << 20]
        config.vcpus = 2
        config.mode = mode
        config.workload = WorkloadSettings(workload: .random, rate: 20_000)
        config.intervalNanos = 20_000_000
        config.bandwidth = bandwidth
        config.ringEntries = 4096
        let s = try Session(config: config, system: system)
        let q = RecordQueue()
        s.subscribe(q)
        return (s, q)
    }

    /// Waits for the migration's last figures (completed or failed), keeping every round seen.
    private func waitForMigration(_ q: RecordQueue, rounds: inout [Round], timeout: TimeInterval = 60) -> MigrationFigures? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            for record in q.drain() {
                switch record {
                case .round(let r): rounds.append(r)
                case .event(let e):
                    if case .migration(let m) = e.event, m.phase != .started { return m }
                }
            }
            usleep(5_000)
        }
        return nil
    }

    func testEachModeMigratesAndTheGuestGoesOnThere() throws {
        let system = try openKVM()
        for mode in [HarvestMode.legacy, .manual, .ring] {
            let address = MigrationAddress.unix(directory + "/\(mode.rawValue).sock")
            let destination = try Destination(system: system, address: address)
            let (s, q) = try session(system, mode: mode)
            s.start()
            usleep(300_000)
            s.send(.migrate(MigrationPlan(to: address.description)))
            var rounds: [Round] = []
            let figures = try XCTUnwrap(waitForMigration(q, rounds: &rounds), "\(mode): the migration ends")
            s.stop()
            let outcome = try XCTUnwrap(destination.wait()).get()
            defer { outcome.machine.stop() }

            XCTAssertEqual(figures.phase, .completed, "\(mode): \(figures.reason ?? "")")
            XCTAssertEqual(figures.lostPages, 0, "\(mode)")
            XCTAssertEqual(figures.differingPages, 0, "\(mode): every page matched at the switch-over")
            // The downtime's parts add up to it, and the stream's counts agree with the destination's.
            XCTAssertEqual(figures.lastCopyNanos + figures.checkNanos + figures.stateCaptureNanos + figures.transferNanos
                           + figures.loadNanos + figures.resumeNanos, figures.downtimeNanos, "\(mode)")
            XCTAssertEqual(figures.pagesSent, outcome.pages, "\(mode): pages sent and received")
            XCTAssertEqual(figures.zeroPages, outcome.zeroPages, "\(mode)")
            XCTAssertEqual(UInt64(figures.iterations), outcome.rounds, "\(mode): a round end per pre-copy round and the last")
            XCTAssertGreaterThanOrEqual(figures.bytesSent, (figures.pagesSent - figures.zeroPages) * UInt64(PageSize.system))
            XCTAssertEqual(figures.falsePositiveBytes, figures.falsePositivePages * UInt64(PageSize.system))
            let precopy = rounds.suffix(figures.iterations)
            XCTAssertEqual(precopy.reduce(0) { $0 + $1[.falsePositivePages] }, figures.falsePositivePages,
                           "\(mode): the figures' false positives are the pre-copy rounds' own")

            // The guest runs on at the destination: its writes go on from where they stopped.
            let machine = outcome.machine
            let start = machine.guestWrites
            XCTAssertTrue(eventually(seconds: 10) { machine.guestWrites > start + 500 || machine.currentFault != nil },
                          "\(mode): the guest writes on at the destination (from \(start))")
            XCTAssertNil(machine.currentFault, "\(mode)")
        }
    }

    func testADroppedConnectionLeavesTheSourceGuestRunning() throws {
        let system = try openKVM()
        let address = MigrationAddress.unix(directory + "/drop.sock")
        let destination = try Destination(system: system, address: address, dropAfterRounds: 1)
        // Slow enough that pre-copy is still going when the destination hangs up.
        let (s, q) = try session(system, mode: .manual, bandwidth: 4 << 20)
        defer { s.stop() }
        s.start()
        usleep(300_000)
        s.send(.migrate(MigrationPlan(to: address.description, downtimeLimitNanos: 1_000_000, maxIterations: 1000)))
        var rounds: [Round] = []
        let figures = try XCTUnwrap(waitForMigration(q, rounds: &rounds))
        XCTAssertEqual(figures.phase, .failed)
        XCTAssertNotNil(figures.reason)
        guard case .failure = try XCTUnwrap(destination.wait()) else { return XCTFail("the destination must discard the stream") }

        // The source's guest goes on: rounds come with writes, and nothing is missed (the
        // copy paced up again, so the rounds are short).
        s.send(.setBandwidth(1 << 30))
        var after: [Round] = []
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && after.filter({ $0[.guestWrites] > 0 }).count < 5 {
            for record in q.drain() { if case .round(let r) = record { after.append(r) } }
            usleep(5_000)
        }
        XCTAssertGreaterThanOrEqual(after.filter { $0[.guestWrites] > 0 }.count, 5, "the source's guest writes on after the failure")
        XCTAssertEqual(after.compactMap(\.missed).reduce(0, +), 0, "the in-memory copy caught up: nothing missed")
    }
}

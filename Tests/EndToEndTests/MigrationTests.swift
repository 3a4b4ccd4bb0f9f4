import Foundation
import XCTest

/// `migrate` and `receive` as two processes over a Unix socket, as a user runs them.
final class MigrationTests: ScratchTestCase {
    /// The figures `migrate --json` printed, the last object.
    private func figures(_ outcome: Outcome) -> [String: Any]? {
        outcome.stdoutLines.last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    private func number(_ json: [String: Any]?, _ key: String) -> UInt64 { (json?[key] as? NSNumber)?.uint64Value ?? 0 }

    /// A receiver waiting on a socket in the scratch folder, ready once it says it listens.
    private func receiver(_ socket: String, runFor: String, extra: [String] = []) throws -> Running {
        let r = try Running(try Tool.binary(), ["receive", "--listen", "unix:" + socket, "--run-for", runFor, "--wait", "60s"] + extra, in: scratch)
        _ = poll(timeout: 20, "the receiver's socket") { FileManager.default.fileExists(atPath: socket) ? true : nil }
        return r
    }

    func testAGuestMigratesToAnotherProcessAndRunsOnThere() throws {
        try requireKVM()
        let socket = scratch.appendingPathComponent("receive.sock").path
        let destinationFile = scratch.appendingPathComponent("destination.dsrec").path
        let destination = try receiver(socket, runFor: "1500ms", extra: ["--record", destinationFile])
        let source = try dirtyscope(["migrate", "--to", "unix:" + socket, "--slots", "16M,16M", "--vcpus", "2", "--workload", "random",
                                     "--rate", "5000", "--bandwidth", "1G", "--interval", "20ms", "--after", "500ms", "--json",
                                     "--record", scratch.appendingPathComponent("source.dsrec").path], in: scratch, timeout: 120)
        let there = destination.finish(timeout: 60)
        XCTAssertEqual(source.status, 0, source.stderr)
        XCTAssertEqual(there.status, 0, there.stdout + there.stderr)
        let f = try XCTUnwrap(figures(source), source.stdout)
        XCTAssertEqual(f["phase"] as? String, "completed", "\(f)")
        XCTAssertEqual(number(f, "lostPages"), 0)
        XCTAssertEqual(number(f, "differingPages"), 0)
        let parts = ["lastCopyNanos", "checkNanos", "stateCaptureNanos", "transferNanos", "loadNanos", "resumeNanos"].map { number(f, $0) }
        XCTAssertEqual(parts.reduce(0, +), number(f, "downtimeNanos"), "the downtime's parts add up: \(f)")
        XCTAssertGreaterThanOrEqual(number(f, "bytesSent"), (number(f, "pagesSent") - number(f, "zeroPages")) * 4096)

        // The destination received what the source sent, and the guest ran on there.
        let resumed = try XCTUnwrap(there.stdoutLines.first { $0.hasPrefix("guest resumed here") }, there.stdout)
        XCTAssertTrue(resumed.contains("after \(number(f, "iterations")) rounds: \(number(f, "pagesSent")) pages (\(number(f, "zeroPages")) zero"),
                      "\(resumed) against \(f)")
        let stopped = try XCTUnwrap(there.stdoutLines.last { $0.hasPrefix("guest stopped here") }, there.stdout)
        let here = try XCTUnwrap(firstMatch(stopped, #": (\d+) writes here"#).flatMap { Int($0) }, stopped)
        XCTAssertGreaterThan(here, 1000, "the guest writes on at the destination: \(stopped)")

        // The source's recording holds the migration's events and figures.
        let events = try dirtyscope(["export", "--events", scratch.appendingPathComponent("source.dsrec").path], in: scratch)
        XCTAssertEqual(events.status, 0, events.stderr)
        XCTAssertEqual(events.stdoutLines.filter { $0.contains(",migration,") }.count, 2, "started and completed:\n\(events.stdout)")
        XCTAssertTrue(events.stdout.contains("migrated to unix:"), events.stdout)

        // So does the destination's: the pre-copy rounds as they arrived, its figures, then
        // the rounds of the guest running there.
        let (inspect, json) = try inspectJSON(destinationFile, in: scratch)
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertEqual(json?["finished"] as? Bool, true)
        XCTAssertGreaterThan(json?["rounds"] as? Int ?? 0, Int(number(f, "iterations")), "pre-copy rounds and the guest's own after")
        let there2 = try dirtyscope(["export", "--events", destinationFile], in: scratch)
        XCTAssertEqual(there2.stdoutLines.filter { $0.contains(",migration,") }.count, 1, there2.stdout)
    }

    /// The destination killed in the middle of pre-copy: the source says so in one line,
    /// exits 1, and its recording is finished.
    func testADestinationKilledMidStreamFailsTheMigrationCleanly() throws {
        try requireKVM()
        let socket = scratch.appendingPathComponent("receive.sock").path
        let destination = try receiver(socket, runFor: "1s")
        let file = scratch.appendingPathComponent("source.dsrec").path
        let source = try Running(try Tool.binary(), ["migrate", "--to", "unix:" + socket, "--slots", "32M", "--vcpus", "1",
                                                     "--workload", "sweep", "--rate", "0", "--bandwidth", "4M", "--after", "300ms",
                                                     "--max-iterations", "1000", "--record", file], in: scratch)
        // Pre-copy of 32 MiB at 4 MiB/s takes seconds: the destination dies in the middle.
        usleep(2_000_000)
        XCTAssertTrue(source.isRunning, "pre-copy is still going")
        kill(destination.pid, SIGKILL)
        _ = destination.finish(timeout: 10)
        let outcome = source.finish(timeout: 60)
        XCTAssertEqual(outcome.status, 1, outcome.stdout + outcome.stderr)
        let failed = try XCTUnwrap(outcome.stdoutLines.first { $0.contains("failed") }, outcome.stdout)
        XCTAssertTrue(failed.contains("the guest runs on here"), failed)
        let (inspect, json) = try inspectJSON(file, in: scratch)
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertEqual(json?["finished"] as? Bool, true, "the source's recording is finished")
    }
}

import DirtyScopeModel
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// record -> inspect -> export with the real tool, damaged files, and a record stopped by SIGTERM.
final class RecordingTests: ScratchTestCase {
    /// record's one line: the rounds, their span and settings, the file, and its figures.
    private func assertSummary(_ stdout: String, rounds: Int, file: String, modes: [String] = ["legacy"],
                               line: UInt = #line) {
        let pattern = #"^recorded (\d+) rounds \(\d+\.\d s: ([^)]*)\) to (.*): \d+ pages reported, \d+ false pos \(\d+\.\d\d%\), "#
            + #"(\d+ missed in \d+ verifications?|not verified)\n$"#
        guard let m = stdout.firstMatch(of: try! Regex(pattern)) else {
            return XCTFail("record said: \(stdout)", line: line)
        }
        XCTAssertEqual(m.output[1].substring.map(String.init), "\(rounds)", line: line)
        let names = (m.output[2].substring.map(String.init) ?? "").split(separator: ",").map { $0.split(separator: " ").first.map(String.init) ?? "" }
        XCTAssertEqual(names, modes, line: line)
        XCTAssertEqual(m.output[3].substring.map(String.init), file, line: line)
    }

    private var file: String { scratch.appendingPathComponent("session.dsrec").path }

    override func setUpWithError() throws {
        try requireKVM()
        try super.setUpWithError()
    }

    /// `--rounds 15` asks for 15 rounds: the file, inspect, export and the tool's own
    /// report must all say 15.
    func testRecordWritesExactlyTheRequestedRounds() throws {
        let record = try recordFixture(file, in: scratch)
        assertSummary(record.stdout, rounds: 15, file: file)

        let text = try dirtyscope(["inspect", file], in: scratch)
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertEqual(text.stderr, "", "a finished recording has no warnings")
        let roundsLine = text.stdoutLines.first { $0.hasPrefix("rounds ") } ?? ""
        XCTAssertTrue(matches(roundsLine, #"^rounds\s+15 \(#1\.\.\.#15\)"#), "inspect: \(roundsLine)")

        let (_, json) = try inspectJSON(file, in: scratch)
        XCTAssertEqual(json?["rounds"] as? Int, 15)

        let csv = try dirtyscope(["export", file, "--csv"], in: scratch)
        XCTAssertEqual(csv.stdoutLines.count, 1 + 15, "header plus one row per round")
    }

    /// The same limit with rounds much faster than record's 20 ms polling loop: the limit
    /// must still hold (here a late stop shows every time, not only when the timing is unlucky).
    func testRoundLimitHoldsWithFastRounds() throws {
        let fast = scratch.appendingPathComponent("fast.dsrec").path
        let record = try dirtyscope(["record", fast, "--rounds", "15", "--interval", "2ms", "--slots", "4M,4M"], in: scratch)
        XCTAssertEqual(record.status, 0, record.stderr)
        assertSummary(record.stdout, rounds: 15, file: fast)
        let (_, json) = try inspectJSON(fast, in: scratch)
        XCTAssertEqual(json?["rounds"] as? Int, 15, "--rounds 15 wrote another number of rounds")
    }

    /// after-copy, the wrong order, loses writes on a writing workload: record says how
    /// many as they happened, the verifier finds pages missed, and inspect and the CSV
    /// name the policy. Auto, recorded the same way, loses nothing.
    func testAfterCopyRecordingShowsLostAndMissedPages() throws {
        let lossy = scratch.appendingPathComponent("after-copy.dsrec").path
        let common = ["--mode", "manual", "--rounds", "30", "--verify-every", "10", "--slots", "16M", "--vcpus", "1",
                      "--interval", "50ms", "--bandwidth", "16M"]
        let record = try dirtyscope(["record", lossy, "--clear-policy", "after-copy"] + common, in: scratch)
        XCTAssertEqual(record.status, 0, record.stderr)
        XCTAssertTrue(matches(record.stdout, #"\d+ pages were written between their copy and their CLEAR"#), record.stdout)
        XCTAssertTrue(matches(record.stdout, #"verification found \d+ pages"#), record.stdout)
        let (_, json) = try inspectJSON(lossy, in: scratch)
        let total = try XCTUnwrap(json?["total"] as? [String: Any])
        XCTAssertGreaterThan(total["missed_pages"] as? Int ?? 0, 0)
        XCTAssertGreaterThan(total["lost_pages"] as? Int ?? 0, 0)
        let modes = (json?["modes"] as? [[String: Any]] ?? []).compactMap { m in (m["mode"] as? String).map { "\($0)/\(m["clear_policy"] ?? "")" } }
        XCTAssertEqual(modes, ["manual/after-copy"])
        let text = try dirtyscope(["inspect", lossy], in: scratch)
        XCTAssertTrue(text.stdout.contains("manual (clear policy after-copy)"), text.stdout)
        let csv = try dirtyscope(["export", lossy, "--csv"], in: scratch)
        let header = csv.stdoutLines.first?.split(separator: ",").map(String.init) ?? []
        let policy = try XCTUnwrap(header.firstIndex(of: "clear_policy"))
        XCTAssertTrue(csv.stdoutLines.dropFirst().allSatisfy { $0.split(separator: ",")[policy] == "after-copy" })

        let safe = scratch.appendingPathComponent("auto.dsrec").path
        let auto = try dirtyscope(["record", safe, "--clear-policy", "auto"] + common, in: scratch)
        assertSummary(auto.stdout, rounds: 30, file: safe, modes: ["manual/auto"])
        let (_, autoJSON) = try inspectJSON(safe, in: scratch)
        XCTAssertEqual((autoJSON?["total"] as? [String: Any])?["missed_pages"] as? Int, 0)
    }

    /// A scripted recording (`--at`) of the race, then `plot` of every kind and `export`
    /// rows, with the real tool: the script's steps show up as events and markers.
    func testScriptedRecordingPlotsAndExports() throws {
        let race = scratch.appendingPathComponent("race.dsrec").path
        let record = try recordFixture(race, in: scratch, extra: [
            "--rounds", "24", "--at", "6:mode=manual", "--at", "12:policy=hand", "--at", "18:clear=0:0-3"])
        assertSummary(record.stdout, rounds: 24, file: race, modes: ["legacy", "manual/auto", "manual/hand"])
        let events = try dirtyscope(["export", race, "--events"], in: scratch)
        XCTAssertEqual(events.status, 0, events.stderr)
        for kind in ["mode_changed", "clear_policy_changed", "blocks_cleared"] {
            XCTAssertTrue(events.stdout.contains("," + kind + ","), "no \(kind) event:\n\(events.stdout)")
        }
        let blocks = try dirtyscope(["export", race, "--blocks", "--json"], in: scratch)
        XCTAssertEqual(blocks.status, 0, blocks.stderr)
        XCTAssertTrue(blocks.stdoutLines.contains { $0.contains("\"cleared_by_user\":true") }, "blocks 0-3 were cleared by hand")
        for kind in ["heatmap", "fp", "latency"] {
            let out = scratch.appendingPathComponent("\(kind).svg").path
            let plot = try dirtyscope(["plot", race, "--kind", kind, "-o", out], in: scratch)
            XCTAssertEqual(plot.status, 0, plot.stderr)
            let svg = try String(contentsOfFile: out, encoding: .utf8)
            XCTAssertTrue(svg.hasPrefix("<?xml") && svg.hasSuffix("</svg>\n"), "\(kind): not a whole SVG")
            if kind != "latency" { XCTAssertTrue(svg.contains("manual/hand"), "\(kind): the policy switch is marked") }
        }
        let bad = try dirtyscope(["plot", race, "--kind", "pie"], in: scratch)
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("'pie'"), bad.stderr)
        let badSlot = try dirtyscope(["plot", race, "--slot", "7"], in: scratch)
        XCTAssertEqual(badSlot.status, 2)
        XCTAssertTrue(badSlot.stderr.contains("slot 7"), badSlot.stderr)
        for (args, named) in [(["record", race, "--at", "5:explode"], "'5:explode'"),
                              (["record", race, "--at", "5:mode=ring,legacy"], "2 modes"),
                              (["record", race, "--at", "0:pause"], "round 0"),
                              (["record", race, "--clear-policy", "hand,auto"], "2 policies"),
                              (["plot", race, "--slot", "-1"], "'-1'")] {
            let bad = try dirtyscope(args, in: scratch)
            XCTAssertEqual(bad.status, 2, "\(args)")
            XCTAssertTrue(bad.stderr.contains(named), "\(args): \(bad.stderr)")
        }
    }

    /// inspect's text and JSON, and export's CSV, describe the same recording.
    func testInspectJSONAndCSVAgree() throws {
        _ = try recordFixture(file, in: scratch)

        let text = try dirtyscope(["inspect", file], in: scratch)
        XCTAssertTrue(text.exited)
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.hasPrefix("recording  \(file) "), text.stdout)
        let textRounds = firstMatch(text.stdout, #"(?m)^rounds\s+(\d+) "#).flatMap { Int($0) }
        XCTAssertTrue(text.stdout.contains("1024 pages (4 MiB)"), "two 4 MiB slots:\n\(text.stdout)")
        XCTAssertTrue(text.stdout.contains("every 20.0ms"), text.stdout)

        let (inspect, parsed) = try inspectJSON(file, in: scratch)
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        let json = try XCTUnwrap(parsed, "inspect --json is not a JSON object:\n\(inspect.stdout)")
        let rounds = try XCTUnwrap(json["rounds"] as? Int)
        XCTAssertGreaterThanOrEqual(rounds, 15)
        XCTAssertEqual(textRounds, rounds, "text and JSON disagree")
        XCTAssertEqual(json["finished"] as? Bool, true)
        XCTAssertEqual(json["file"] as? String, file)
        XCTAssertEqual((json["warnings"] as? [Any])?.count, 0)
        let session = try XCTUnwrap(json["session"] as? [String: Any])
        XCTAssertEqual((session["slots"] as? [Any])?.count, 2)
        XCTAssertEqual(session["interval_ns"] as? Int, 20_000_000)
        let total = try XCTUnwrap(json["total"] as? [String: Any])
        XCTAssertEqual(total["rounds"] as? Int, rounds)

        let csv = try dirtyscope(["export", file, "--csv"], in: scratch)
        XCTAssertEqual(csv.status, 0, csv.stderr)
        let lines = csv.stdoutLines
        XCTAssertEqual(lines.first?.hasPrefix("round,time_s,mode,clear_policy,clear_chunk_pages,rounds,duration_ns,"), true, lines.first ?? "")
        XCTAssertEqual(lines.count, 1 + rounds, "header plus one row per round")
        let columns = lines.first?.split(separator: ",").count ?? 0
        for (i, row) in lines.dropFirst().enumerated() {
            XCTAssertEqual(row.split(separator: ",", omittingEmptySubsequences: false).count, columns, "row \(i): \(row)")
            XCTAssertTrue(row.hasPrefix("\(i + 1),"), "row \(i) is not round \(i + 1): \(row)")
        }

        // -o writes the same CSV to a file.
        let out = scratch.appendingPathComponent("rounds.csv").path
        let toFile = try dirtyscope(["export", file, "--csv", "-o", out], in: scratch)
        XCTAssertEqual(toFile.status, 0, toFile.stderr)
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), csv.stdout)
    }

    /// One naming scheme: the CSV header, `inspect --json` and `bench --json` carry the
    /// metric table's names (`Metric.columns`), from the real tool.
    func testEveryOutputUsesTheMetricTableNames() throws {
        let table = Set(Metric.columns.map(\.name))
        _ = try recordFixture(file, in: scratch)
        let csv = try dirtyscope(["export", file, "--csv"], in: scratch)
        let header = Set(csv.stdoutLines.first?.split(separator: ",").map(String.init) ?? [])
        XCTAssertEqual(header.intersection(table), table, "CSV lacks \(table.subtracting(header).sorted())")
        XCTAssertEqual(header.subtracting(table), ["round", "time_s", "mode", "clear_policy", "clear_chunk_pages", "events"])

        let (_, json) = try inspectJSON(file, in: scratch)
        XCTAssertEqual(Set((json?["total"] as? [String: Any] ?? [:]).keys), table)
        for mode in json?["modes"] as? [[String: Any]] ?? [] {
            XCTAssertEqual(Set(mode.keys), table.union(["mode", "clear_policy"]))
        }

        let bench = try dirtyscope(["bench", "--mem", "8M", "--vcpus", "1", "--iterations", "1", "--modes", "legacy,manual",
                                    "--json"], in: scratch, timeout: 120)
        XCTAssertEqual(bench.status, 0, bench.stderr)
        let results = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(bench.stdout.utf8)) as? [[String: Any]])
        XCTAssertEqual(results.count, 2)
        for result in results {
            let keys = Set(result.keys)
            XCTAssertEqual(keys.intersection(table), table, "bench lacks \(table.subtracting(keys).sorted())")
            for key in keys { XCTAssertTrue(key.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "_" }, key) }
            XCTAssertEqual(result["missed_pages"] as? Int, 0)
        }
    }

    /// A copy cut short still reads: fewer rounds and a warning on stderr, exit 0.
    func testTruncatedCopyInspectsWithAWarning() throws {
        _ = try recordFixture(file, in: scratch)
        let whole = try Data(contentsOf: URL(fileURLWithPath: file))
        let (_, full) = try inspectJSON(file, in: scratch)
        let fullRounds = try XCTUnwrap(full?["rounds"] as? Int)

        let cut = scratch.appendingPathComponent("cut.dsrec").path
        try whole.prefix(whole.count - whole.count / 4).write(to: URL(fileURLWithPath: cut))
        let text = try dirtyscope(["inspect", cut], in: scratch)
        XCTAssertTrue(text.exited)
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertFalse(text.stderrLines.isEmpty, "no warning for a truncated file")
        for line in text.stderrLines {
            XCTAssertTrue(line.hasPrefix("dirtyscope: warning: "), line)
        }
        XCTAssertTrue(text.stderr.contains("truncated"), text.stderr)

        let (inspect, json) = try inspectJSON(cut, in: scratch)
        XCTAssertEqual(inspect.status, 0)
        let rounds = try XCTUnwrap(json?["rounds"] as? Int, inspect.stdout)
        XCTAssertLessThan(rounds, fullRounds)
        XCTAssertGreaterThanOrEqual(rounds, 1)
        XCTAssertEqual(json?["finished"] as? Bool, false)

        let csv = try dirtyscope(["export", cut, "--csv"], in: scratch)
        XCTAssertEqual(csv.status, 0, csv.stderr)
        XCTAssertEqual(csv.stdoutLines.count, 1 + rounds)
    }

    /// A file with another magic is refused by every reader with exit 2 and one line.
    func testWrongMagicIsRefused() throws {
        _ = try recordFixture(file, in: scratch)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes.replaceSubrange(0..<8, with: Data("NOTDSREC".utf8))
        let bad = scratch.appendingPathComponent("bad.dsrec").path
        try bytes.write(to: URL(fileURLWithPath: bad))
        for args in [["inspect", bad], ["inspect", "--json", bad], ["export", bad, "--csv"]] {
            let outcome = try dirtyscope(args, in: scratch)
            XCTAssertTrue(outcome.exited)
            XCTAssertEqual(outcome.status, 2, "\(args): \(outcome.stderr)")
            XCTAssertEqual(outcome.stderrLines, ["dirtyscope: \(bad): not a DirtyScope recording (wrong magic)"], "\(args)")
            XCTAssertEqual(outcome.stdout, "", "\(args)")
        }
    }

    /// SIGTERM finishes the recording: the file reads back whole, and record exits 143.
    func testSIGTERMFinishesTheRecording() throws {
        let binary = try Tool.binary()
        let record = try Running(binary, ["record", file, "--duration", "60s", "--interval", "20ms", "--slots", "4M,4M"],
                                 in: scratch)
        defer { if record.isRunning { kill(record.pid, SIGKILL) } }
        // Rounds in the file mean the session runs, so the signal handlers are in place.
        let seen = poll(timeout: 20, "rounds in the file being recorded") { () -> Int? in
            guard FileManager.default.fileExists(atPath: file),
                  let rounds = (try? inspectJSON(file, in: scratch))?.json?["rounds"] as? Int, rounds >= 2 else { return nil }
            return rounds
        }
        XCTAssertNotNil(seen)
        XCTAssertTrue(record.isRunning, "record stopped on its own")
        kill(record.pid, SIGTERM)
        let outcome = record.finish(timeout: 15)
        XCTAssertTrue(outcome.exited, "record died of signal \(outcome.status) instead of finishing the file")
        XCTAssertEqual(outcome.status, 128 + SIGTERM)
        XCTAssertTrue(matches(outcome.stdout, #"^recorded \d+ rounds \([0-9.]+ s: legacy \d+\) to "#), outcome.stdout)

        let text = try dirtyscope(["inspect", file], in: scratch)
        XCTAssertEqual(text.status, 0)
        XCTAssertEqual(text.stderr, "", "the recording was not finished: \(text.stderr)")
        let (_, json) = try inspectJSON(file, in: scratch)
        XCTAssertEqual(json?["finished"] as? Bool, true)
        XCTAssertGreaterThanOrEqual(json?["rounds"] as? Int ?? 0, 1)
        let recorded = firstMatch(outcome.stdout, #"^recorded (\d+) rounds"#).flatMap { Int($0) }
        XCTAssertEqual(json?["rounds"] as? Int, recorded, "record's report and the file disagree")
    }
}

import Foundation
import XCTest

/// What the commands say about themselves: every key in the help of the commands that
/// open the heatmap, one default for one option, one meaning for one option name, and
/// the file before the terminal.
final class HelpTextTests: ScratchTestCase {
    func testRunAndReplayHelpListEveryKey() throws {
        let run = try dirtyscope(["run", "--help"], in: scratch)
        XCTAssertEqual(run.status, 0, run.stderr)
        for line in ["  m: toggle manual protect / legacy", "  c: CLEAR selected blocks (or the cursor's)", "  p: pause / resume",
                     "  ?: this help; again: what each number means", "  q: quit"] {
            XCTAssertTrue(run.stdout.contains(line), "run --help lacks \(line):\n\(run.stdout)")
        }
        let replay = try dirtyscope(["replay", "--help"], in: scratch)
        XCTAssertEqual(replay.status, 0, replay.stderr)
        for line in ["  , . arrows: one round back / forward", "  [ ] PgUp/Dn: seek 10% back / forward", "  home end: first / last round",
                     "  n N: next / previous event", "  < >: speed x0.25 ... x16"] {
            XCTAssertTrue(replay.stdout.contains(line), "replay --help lacks \(line):\n\(replay.stdout)")
        }
        XCTAssertFalse(replay.stdout.contains("arrows hjkl"), "in replay the arrows step rounds, not the cursor")
    }

    /// `--ring-entries` reads and defaults the same in run, record and bench; `--seed` is
    /// the guest's seed everywhere, and the fuzz suite's is `--fuzz-seed`.
    func testOneOptionOneMeaning() throws {
        func optionHelp(_ command: String, _ option: String) throws -> String {
            let help = try dirtyscope([command, "--help"], in: scratch).stdout
            let lines = help.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            guard let start = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix(option + " ") }) else { return "" }
            let rest = lines[(start + 1)...].prefix { $0.hasPrefix("                ") }
            return ([lines[start]] + rest).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
        }
        let ring = try ["run", "record", "bench"].map { try optionHelp($0, "--ring-entries") }
        XCTAssertTrue(ring[0].contains("default the host's maximum, at most 65536"), ring[0])
        XCTAssertEqual(Set(ring).count, 1, "\(ring)")
        let seeds = try ["run", "record", "bench"].map { try optionHelp($0, "--seed") }
        XCTAssertTrue(seeds.allSatisfy { $0.contains("Seed of the guest's random choices") }, "\(seeds)")
        XCTAssertTrue(try optionHelp("bench", "--fuzz-seed").contains("seed of the forgeries"))
        let fuzz = try dirtyscope(["bench", "--suite", "fuzz", "--inputs", "3", "--fuzz-seed", "2"], in: scratch, timeout: 120)
        XCTAssertEqual(fuzz.status, 0, fuzz.stderr)
        XCTAssertTrue(fuzz.stdout.contains("fuzz: 3 inputs"), fuzz.stdout)
    }

    /// A missing file is named first: without a terminal, replay still says the file is missing.
    func testReplayOfAMissingFileWithoutATerminalNamesTheFile() throws {
        let missing = scratch.appendingPathComponent("nowhere.dsrec").path
        let outcome = try dirtyscope(["replay", missing], in: scratch)
        XCTAssertEqual(outcome.status, 2)
        XCTAssertTrue(outcome.stderr.contains(missing) && outcome.stderr.contains("No such file"), outcome.stderr)
        XCTAssertFalse(outcome.stderr.contains("terminal"), outcome.stderr)
    }
}

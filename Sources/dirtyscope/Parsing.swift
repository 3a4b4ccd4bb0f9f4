import ArgumentParser
import DirtyScopeCore
import DirtyScopeModel
import Foundation

/// Parses sizes such as "4096", "64K", "256M", "1G", "512MiB" into bytes.
func parseSize(_ text: String, what: String) throws(SessionError) -> Int {
    let t = text.trimmingCharacters(in: .whitespaces)
    let units: [(String, Int)] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
                                  ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
    var number = t
    var scale = 1
    for (suffix, s) in units where t.uppercased().hasSuffix(suffix.uppercased()) {
        number = String(t.dropLast(suffix.count))
        scale = s
        break
    }
    guard let v = Double(number), v.isFinite, v > 0 else {
        throw .invalidArgument("\(what) '\(text)' is not a positive size (examples: 4096, 64K, 256M, 1G)")
    }
    let bytes = v * Double(scale)
    guard bytes < Double(1 << 50) else { throw .invalidArgument("\(what) '\(text)' is too large (limit 1 PiB)") }
    return Int(bytes)
}

/// Parses a bandwidth such as "64M", "1G/s", "500MiB/s" into bytes per second (> 0).
func parseBandwidth(_ text: String) throws(SessionError) -> UInt64 {
    var t = text
    if t.hasSuffix("/s") { t.removeLast(2) }
    if let v = Double(t), v <= 0 {
        throw .invalidArgument("bandwidth '\(text)' must be above 0 (examples: 64M, 1G/s)")
    }
    return UInt64(try parseSize(t, what: "bandwidth"))
}

/// Parses an interval such as "100ms", "1s", "250us", "0" (back to back); bare numbers are ms.
/// `what` names the option in the error.
func parseInterval(_ text: String, what: String = "interval") throws(SessionError) -> UInt64 {
    let units: [(String, Double)] = [("ms", 1e6), ("us", 1e3), ("ns", 1), ("s", 1e9)]
    var number = text
    var scale = 1e6
    for (suffix, s) in units where text.hasSuffix(suffix) {
        number = String(text.dropLast(suffix.count))
        scale = s
        break
    }
    guard let v = Double(number), v.isFinite, v >= 0, v * scale <= 3600e9 else {
        throw .invalidArgument("\(what) '\(text)' is not a duration between 0\(what == "interval" ? " (back to back)" : "") and 1h (examples: 100ms, 1s\(what == "interval" ? ", 0" : ""))")
    }
    return UInt64(v * scale)
}

/// Parses a comma-separated list of modes.
func parseModes(_ text: String) throws(SessionError) -> [HarvestMode] {
    var modes: [HarvestMode] = []
    for part in text.split(separator: ",") {
        guard let m = HarvestMode(rawValue: String(part)) else {
            throw .invalidArgument("mode '\(part)' is not one of \(HarvestMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        modes.append(m)
    }
    guard !modes.isEmpty else { throw .invalidArgument("no mode given (allowed: \(HarvestMode.allCases.map(\.rawValue).joined(separator: ", ")))") }
    return modes
}

/// Parses one mode: a session harvests in one mode at a time (`bench` compares several).
func parseMode(_ text: String) throws(SessionError) -> HarvestMode {
    let modes = try parseModes(text)
    guard modes.count == 1 else {
        throw .invalidArgument("mode '\(text)' names \(modes.count) modes; a session starts in one of \(HarvestMode.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return modes[0]
}

/// Parses a workload name.
func parseWorkload(_ text: String) throws(SessionError) -> Workload {
    guard let w = Workload(rawValue: text) else {
        throw .invalidArgument("workload '\(text)' is not one of \(Workload.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return w
}

/// Parses how bench waits for a pass ("sleep", "spin").
func parsePassWait(_ text: String) throws(SessionError) -> PassWait {
    guard let w = PassWait(rawValue: text) else {
        throw .invalidArgument("--wait '\(text)' is not one of \(PassWait.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return w
}

/// Parses a clear chunk ("64", "4096", "slot").
func parseChunk(_ text: String) throws(SessionError) -> ClearChunk {
    do { return try ClearChunk(parsing: text) } catch { throw .invalidArgument(error.description) }
}

/// Parses a comma-separated list of clear policies ("auto,hand"); duplicates are dropped.
func parseClearPolicies(_ text: String) throws(SessionError) -> [ClearPolicy] {
    var policies: [ClearPolicy] = []
    for part in text.split(separator: ",", omittingEmptySubsequences: false) {
        let policy: ClearPolicy
        do { policy = try ClearPolicy(parsing: String(part)) } catch { throw .invalidArgument(error.description) }
        if !policies.contains(policy) { policies.append(policy) }
    }
    return policies
}

/// `--ring-entries`, one text and one default for run, record and bench.
let ringEntriesHelp = ArgumentHelp("Dirty ring entries per vCPU in ring mode (a power of two; default the host's maximum, at most \(SessionLimits.maxRingEntries)).")

/// The ring size asked for, or the default: the host's maximum, at most the kernel's.
func resolveRingEntries(_ requested: Int?, host: KVMSystemInfo) -> Int {
    requested ?? (host.maxRingEntries > 0 ? min(SessionLimits.maxRingEntries, host.maxRingEntries) : SessionLimits.maxRingEntries)
}

/// Checks a requested mode against the host; errors name what the host lacks.
func checkHostSupports(_ modes: [HarvestMode], ringEntries: Int, system: KVMSystemInfo) throws(SessionError) {
    for m in modes {
        let entry = m.entry
        let lacks = (entry.manualProtect && !system.manualProtect) || (entry.source == .rings && system.maxRingEntries == 0)
        if lacks, let capability = entry.capability {
            throw .invalidArgument("mode \(m.rawValue): this host's KVM lacks \(capability)")
        }
        if entry.source == .rings {
            do { try SessionLimits.checkRingEntries(ringEntries, hostMax: system.maxRingEntries) } catch {
                throw .invalidArgument(error.description)
            }
        }
    }
}

/// A scripted step of `record --at`: once round `afterRound` is harvested, send `command`.
struct ScriptedStep {
    let afterRound: UInt64
    let command: SessionCommand

    /// Parses "N:ACTION": mode=legacy|manual|ring, policy=auto|hand|after-copy|at-get,
    /// clear=SLOT:A-B (64-page blocks A to B, or one block A), drop=SLOT, workload=NAME,
    /// pause, resume.
    init(parsing text: String) throws(SessionError) {
        let usage = "--at '\(text)' is not ROUND:ACTION (mode=M, policy=P, clear=SLOT:A-B, drop=SLOT, workload=W, pause, resume)"
        guard let colon = text.firstIndex(of: ":"), let round = UInt64(text[..<colon]) else {
            throw .invalidArgument(usage)
        }
        guard round >= 1 else { throw .invalidArgument("--at '\(text)': round \(round) is before the first round (1)") }
        afterRound = round
        let action = String(text[text.index(after: colon)...])
        let parts = action.split(separator: "=", maxSplits: 1).map(String.init)
        switch (parts.first ?? "", parts.count == 2 ? parts[1] : nil) {
        case ("pause", nil): command = .pause
        case ("resume", nil): command = .resume
        case ("mode", let value?):
            let modes = try parseModes(value)
            guard modes.count == 1 else { throw .invalidArgument("--at '\(text)' names \(modes.count) modes; a step sets one") }
            command = .setMode(modes[0])
        case ("policy", let value?):
            do { command = .setClearPolicy(try ClearPolicy(parsing: value)) } catch { throw .invalidArgument(error.description) }
        case ("workload", let value?): command = .setWorkload(try parseWorkload(value))
        case ("drop", let value?):
            guard let slot = Int(value), slot >= 0 else { throw .invalidArgument(usage) }
            command = .dropClearedBlocks(slot: slot)
        case ("clear", let value?):
            let slotAndBlocks = value.split(separator: ":").map(String.init)
            let range = slotAndBlocks.count == 2 ? slotAndBlocks[1].split(separator: "-").map { Int($0) } : []
            guard slotAndBlocks.count == 2, let slot = Int(slotAndBlocks[0]), slot >= 0, (1...2).contains(range.count),
                  let a = range.first ?? nil, let b = range.last ?? nil, a >= 0, a <= b, b - a < 1 << 20 else {
                throw .invalidArgument(usage)
            }
            command = .clearBlocks(slot: slot, blocks: Array(a...b))
        default:
            throw .invalidArgument(usage)
        }
    }
}

/// Parses a whole number for `option` that must lie in `range`; the error names the value and the range.
func parseCount(_ text: String, option: String, range: ClosedRange<Int>) throws(SessionError) -> Int {
    guard let v = Int(text), range.contains(v) else {
        throw .invalidArgument("\(option) '\(text)' is not a whole number in \(range.lowerBound)...\(range.upperBound)")
    }
    return v
}

/// Parses a comma-separated list of counts ("1,2"); the command's own checks name the
/// limits of what they count.
func parseCounts(_ text: String, option: String) throws(SessionError) -> [Int] {
    var counts: [Int] = []
    for part in text.split(separator: ",", omittingEmptySubsequences: false) {
        guard let n = Int(part) else { throw .invalidArgument("\(option) '\(part)' is not a number") }
        counts.append(n)
    }
    return counts
}

/// Parses a comma-separated list of clear chunks ("64,4096,slot").
func parseChunks(_ text: String) throws(SessionError) -> [ClearChunk] {
    var chunks: [ClearChunk] = []
    for part in text.split(separator: ",", omittingEmptySubsequences: false) { chunks.append(try parseChunk(String(part))) }
    return chunks
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg gives them.
func loadAverage() -> String {
    guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return "unknown" }
    return text.split(separator: " ").prefix(3).joined(separator: " ")
}

import ArgumentParser
import DirtyScopeCore
import DirtyScopeModel

/// Options shared by `run` and `record`: the VM, the guest, and how it is harvested.
struct SessionOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Memslot sizes, comma-separated (each a multiple of the page size).")
    var slots = "128M,512M"
    @Option(parsing: .unconditional, help: "vCPUs.")
    var vcpus = 2
    @Option(help: "Workload: sweep, random, hotset, stripes, wave, idle.")
    var workload = "hotset"
    @Option(parsing: .unconditional, help: "Guest writes per second per vCPU (0 = as fast as it can).")
    var rate: UInt64 = 4000
    @Option(parsing: .unconditional, help: "Workload parameter: hot pages (hotset), stride (stripes), window pages (wave).")
    var param0: UInt64?
    @Option(parsing: .unconditional, help: "Workload parameter: percent of writes to the hot set (hotset), window step (wave).")
    var param1: UInt64?
    @Option(parsing: .unconditional, help: "Seed of the guest's random choices.")
    var seed: UInt64 = 1
    @Option(help: "Harvest mode: legacy, manual, ring or untracked (no dirty tracking: the guest's baseline).")
    var mode = "legacy"
    @Option(name: .customLong("clear-chunk"), parsing: .unconditional, help: "KVM_CLEAR_DIRTY_LOG chunk in pages (a multiple of 64) or 'slot'.")
    var clearChunk = "64"
    @Option(name: .customLong("clear-policy"), help: "Who clears in manual mode, and when: auto, hand, after-copy, at-get.")
    var clearPolicy = "auto"
    @Option(parsing: .unconditional, help: "Consumer copy bandwidth (e.g. 64M, 1G/s).")
    var bandwidth = "64M"
    @Option(parsing: .unconditional, help: "Harvest interval, start to start (e.g. 100ms, 1s; 0 = back to back).")
    var interval = "100ms"
    @Option(name: .customLong("ring-entries"), parsing: .unconditional, help: ringEntriesHelp)
    var ringEntries: Int?
    @Option(name: .customLong("guest-file"), help: "Run this flat binary (see Guests/README.md) instead of the built-in guest.")
    var guestFile: String?
    @Option(name: .customLong("fp-method"), help: "False-positive check: stamp or content (default: stamp for the built-in guest).")
    var fpMethod: String?
    @Option(name: .customLong("verify-every"), parsing: .unconditional, help: "Verify every page every N rounds (0 = never).")
    var verifyEvery = 50
    @Flag(name: .customLong("initially-set"), help: "Manual mode: enable KVM_DIRTY_LOG_INITIALLY_SET.")
    var initiallySet = false
    @Flag(name: .customLong("stop-and-copy"), help: "End with stop-and-copy: one more round with the vCPUs paused, then every page compared.")
    var stopAndCopy = false
    @Option(parsing: .unconditional, help: "Harvest this many rounds, then stop harvesting (record stops there).")
    var rounds: UInt64?

    /// The session configuration, checked before KVM is opened; errors name the value and the limit.
    func sessionConfig() throws(SessionError) -> SessionConfig {
        var c = SessionConfig()
        var sizes: [Int] = []
        for part in slots.split(separator: ",") { sizes.append(try parseSize(String(part), what: "memslot size")) }
        c.slotBytes = sizes
        c.vcpus = vcpus
        let w = try parseWorkload(workload)
        c.workload = WorkloadSettings(workload: w, rate: rate, param0: param0, param1: param1, seed: seed)
        c.mode = try parseMode(mode)
        c.clearChunk = try parseChunk(clearChunk)
        let policies = try parseClearPolicies(clearPolicy)
        guard policies.count == 1 else {
            throw .invalidArgument("--clear-policy '\(clearPolicy)' names \(policies.count) policies; a session runs one at a time")
        }
        c.clearPolicy = policies[0]
        c.bandwidth = try parseBandwidth(bandwidth)
        c.intervalNanos = try parseInterval(interval)
        c.ringEntries = ringEntries ?? SessionLimits.maxRingEntries
        if let guestFile { c.guest = .file(guestFile) }
        if let fpMethod {
            guard let m = FalsePositiveMethod(rawValue: fpMethod) else {
                throw .invalidArgument("false-positive method '\(fpMethod)' is not one of stamp, content")
            }
            c.falsePositiveMethod = m
        }
        c.verifyEvery = verifyEvery
        c.initiallySet = initiallySet
        c.stopAndCopy = stopAndCopy
        c.roundLimit = rounds
        try c.validate()
        return c
    }
}

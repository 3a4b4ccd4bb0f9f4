import CKVM
import DirtyScopeModel
import KVM
import Glibc

/// Everything a session is started with; every field has a command-line option.
public struct SessionConfig: Sendable {
    public var slotBytes: [Int] = [128 << 20, 512 << 20]
    public var vcpus = 2
    public var guest: GuestProgram = .builtin("workload")
    public var mode: HarvestMode = .legacy
    public var clearChunk: ClearChunk = .pages(64)
    /// Who clears in manual mode, and when.
    public var clearPolicy: ClearPolicy = .auto
    public var workload = WorkloadSettings(workload: .hotset)
    /// Harvest interval, start to start; 0 harvests back to back.
    public var intervalNanos: UInt64 = 100_000_000
    /// Consumer bandwidth in bytes per second; 0 is unlimited.
    public var bandwidth: UInt64 = 64 << 20
    /// Dirty ring entries per vCPU, used in ring mode.
    public var ringEntries = SessionLimits.maxRingEntries
    /// nil picks stamps for the built-in guest and content for a user's guest.
    public var falsePositiveMethod: FalsePositiveMethod?
    /// A verification point every this many rounds; 0 never (stop-and-copy still verifies).
    public var verifyEvery = 50
    /// Enable KVM_DIRTY_LOG_INITIALLY_SET with manual protect (from the VM's creation).
    public var initiallySet = false
    /// End with stop-and-copy: pause the vCPUs, harvest, copy, and compare every page.
    public var stopAndCopy = false
    /// Harvest at most this many rounds (the stop-and-copy round comes on top).
    public var roundLimit: UInt64?
    /// Where `.migrate` with no destination (the UI's key) sends the guest, and how.
    public var migration: MigrationPlan?

    public init() {}

    /// Checks what can be checked without KVM; errors name the value and what is allowed.
    public func validate() throws(SessionError) {
        guard !slotBytes.isEmpty else { throw .invalidArgument("at least one memslot is needed") }
        guard slotBytes.count <= SessionLimits.maxSlots else {
            throw .invalidArgument("\(slotBytes.count) memslots: at most \(SessionLimits.maxSlots)")
        }
        var pages = 0
        for (i, b) in slotBytes.enumerated() {
            guard b > 0, b % PageSize.system == 0 else {
                throw .invalidArgument("memslot \(i) size \(b) bytes is not a positive multiple of the page size \(PageSize.system)")
            }
            pages += b / PageSize.system  // each below 2^50 bytes (the parser's limit), 32 at most: no overflow
            guard pages <= SessionLimits.maxTotalPages else {
                throw .invalidArgument("memslots of \(slotBytes.map(String.init).joined(separator: ", ")) bytes exceed the limit of \(SessionLimits.maxTotalPages) pages in all (\(SessionLimits.maxTotalPages / (1 << 30 / PageSize.system)) GiB of \(PageSize.system)-byte pages)")
            }
        }
        guard vcpus >= 1, vcpus <= SessionLimits.maxVCPUs else {
            throw .invalidArgument("\(vcpus) vCPUs: allowed 1 to \(SessionLimits.maxVCPUs)")
        }
        if case .pages(let n) = clearChunk, n <= 0 || n % DirtyBitmap.pagesPerBlock != 0 {
            throw .invalidArgument("clear chunk \(n) is not a positive multiple of 64 pages")
        }
        // Checked in every mode: the UI can switch to ring mode later.
        do { try SessionLimits.checkRingEntries(ringEntries) } catch { throw .invalidArgument(error.description) }
        if let roundLimit, roundLimit < 1 || roundLimit > SessionLimits.maxRounds {
            throw .invalidArgument("--rounds \(roundLimit): allowed 1 to \(SessionLimits.maxRounds)")
        }
        guard verifyEvery >= 0 else { throw .invalidArgument("verify interval \(verifyEvery) rounds must not be negative") }
        _ = try guest.load()   // an empty, oversized or unreadable guest file is bad input too
    }

    /// The machine this config asks for.
    func machineConfig(lockstep: Bool = false, passWrites: UInt64 = 0) -> MachineConfig {
        var flags: ManualProtectFlags = []
        if mode.entry.manualProtect {
            flags.insert(.enable)
            if initiallySet { flags.insert(.initiallySet) }
        }
        let rings = mode.entry.source == .rings ? ringEntries : 0
        return MachineConfig(slotBytes: slotBytes, vcpus: vcpus, guest: guest, ringEntries: rings,
                             initialManualProtect: flags, workload: workload, lockstep: lockstep, passWrites: passWrites,
                             trackDirtyPages: mode.entry.tracks)
    }
}

/// The tool's version, written into recordings.
public let dirtyScopeVersion = "0.1.0"

/// `uname -r`.
public func hostKernelRelease() -> String {
    var u = utsname()
    uname(&u)
    return withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}

/// The capabilities that matter to dirty tracking, by name, for headers and `caps`.
public func dirtyTrackingCapabilities(_ system: KVMSystem) -> [String: Int] {
    var caps: [String: Int] = ["KVM_API_VERSION": system.apiVersion]
    for c in Capability.allCases { caps[c.name] = system.check(c) }
    return caps
}

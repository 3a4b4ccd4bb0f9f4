/// A migration to start: where to, and when pre-copy gives way to the switch-over.
public struct MigrationPlan: Equatable, Sendable, Codable {
    /// The QEMU default for both.
    public static let defaultDowntimeLimitNanos: UInt64 = 300_000_000
    public static let defaultMaxIterations = 30

    /// The destination: `unix:PATH` or `HOST:PORT` (`MigrationAddress`).
    public var to: String
    /// Pre-copy converges once the pages the last round reported can be sent within this
    /// long at the rate the stream measured.
    public var downtimeLimitNanos: UInt64
    /// Pre-copy rounds at most (the bulk copy is the first); then the switch-over, converged or not.
    public var maxIterations: Int

    public init(to: String, downtimeLimitNanos: UInt64 = Self.defaultDowntimeLimitNanos, maxIterations: Int = Self.defaultMaxIterations) {
        self.to = to
        self.downtimeLimitNanos = downtimeLimitNanos
        self.maxIterations = maxIterations
    }
}

/// What a migration did, from the source: recorded as it starts, and once more when it
/// ends (completed or failed), with every figure the tool can know exactly.
public struct MigrationFigures: Equatable, Codable, Sendable {
    public enum Phase: String, Codable, Sendable {
        case started, completed, failed
    }

    public var phase: Phase
    public var to: String
    /// The mode and clear policy the pre-copy ran with ("legacy", "manual/auto chunk 64").
    public var setting: String
    /// Pre-copy rounds, the bulk copy included, and the final round in the downtime.
    public var iterations = 0
    /// The pages left fitted the downtime limit (else `maxIterations` ended pre-copy).
    public var converged = false
    public var totalNanos: UInt64 = 0
    /// Pages sent, zero pages among them (a bit on the wire, no bytes), and the stream's bytes.
    public var pagesSent: UInt64 = 0
    public var zeroPages: UInt64 = 0
    public var bytesSent: UInt64 = 0
    /// Pages sent again although they had not changed since their last send (the source's
    /// ground truth: stamps, or contents), and their bytes.
    public var falsePositivePages: UInt64 = 0
    public var falsePositiveBytes: UInt64 = 0
    /// Pages the last pre-copy round reported: the estimate the switch-over was decided on.
    public var remainingPages: UInt64 = 0
    /// From the vCPUs' stop on the source to the destination's word that they run there,
    /// and its parts: the last dirty pages, the check that nothing was missed, the vCPU
    /// state's capture, the transfer (system slot, states, hashes and the destination's
    /// comparison), loading the state there and starting its vCPUs.
    public var downtimeNanos: UInt64 = 0
    public var lastCopyNanos: UInt64 = 0
    public var checkNanos: UInt64 = 0
    public var stateCaptureNanos: UInt64 = 0
    public var transferNanos: UInt64 = 0
    public var loadNanos: UInt64 = 0
    public var resumeNanos: UInt64 = 0
    /// Pages whose source changed since their last send without being reported (lost by
    /// the dirty tracking), and pages the destination held differently from what was sent.
    public var lostPages: UInt64 = 0
    public var differingPages: UInt64 = 0
    /// The 64-page blocks of the lost or differing pages, per data slot (at most 4096 in all).
    public var blocks: [[Int]] = []
    /// Why it failed.
    public var reason: String?

    public init(phase: Phase, to: String, setting: String) {
        self.phase = phase
        self.to = to
        self.setting = setting
    }
}

extension MigrationFigures {
    /// The figures in one line, for notes, the status line and the exports.
    public var summary: String {
        func ms(_ n: UInt64) -> String { n >= 10_000_000 ? "\(n / 1_000_000) ms" : "\(Double(n / 10_000) / 100) ms" }
        func mib(_ b: UInt64) -> String { "\(Double(b / 10_486) / 100) MiB" }
        switch phase {
        case .started:
            return "migration to \(to) started (\(setting))"
        case .completed:
            return "migrated to \(to) (\(setting)): \(iterations) rounds\(converged ? "" : ", not converged"), "
                + "\(mib(bytesSent)) sent, \(mib(falsePositiveBytes)) for false positives, \(zeroPages) zero pages; "
                + "downtime \(ms(downtimeNanos)), total \(ms(totalNanos))"
        case .failed:
            return "migration to \(to) failed after \(iterations) rounds: \(reason ?? "no reason given")"
                + (lostPages > 0 ? " (\(lostPages) pages lost)" : "") + "; the guest runs on here"
        }
    }
}

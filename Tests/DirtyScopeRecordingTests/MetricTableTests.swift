import DirtyScopeModel
@testable import DirtyScopeRecording
import Foundation
import Testing

/// The metric table is the one declaration of every metric: these check that each output
/// uses its names, and that the file and the totals follow its rows.
@Suite struct MetricTableTests {
    let names = Metric.columns.map(\.name)

    @Test func namesAreUniqueSnakeCaseWithTheirUnit() {
        #expect(Set(names).count == names.count, "a column name is used twice")
        for metric in Metric.allCases {
            let s = metric.spec
            #expect(s.name.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "_" }, "\(s.name) is not snake_case")
            switch s.unit {
            case .pages: #expect(s.name.hasSuffix("_pages"), "\(s.name) names no unit")
            case .bytes: #expect(s.name.hasSuffix("_bytes"), "\(s.name) names no unit")
            case .nanoseconds:
                // A latency metric's columns carry the unit: get_dirty_log_ns_total.
                #expect(metric.columns.allSatisfy { $0.name.hasSuffix("_ns") || $0.name.contains("_ns_") || $0.name.hasSuffix("_calls") || $0.name.hasSuffix("_count") }, "\(s.name)")
            case .fraction: #expect(s.name.hasSuffix("_fraction"))
            case .perSecond: #expect(s.name.hasSuffix("_s") && s.name.contains("_per_"), "\(s.name) names no rate")
            case .rounds, .count: break
            }
        }
    }

    /// Presence bits never collide: round fields among themselves and with the record's own
    /// bits, slot counts among themselves and with the legacy watched bit.
    @Test func presenceBitsAreDistinct() {
        let own = [RoundField.index, RoundField.startNanos, RoundField.verification, RoundField.origins, RoundField.vcpus]
        let metricBits = Metric.allCases.map(RoundField.bit).filter { $0 != 0 }
        let all = own + metricBits
        #expect(all.allSatisfy { $0.nonzeroBitCount == 1 })
        #expect(all.reduce(0, |) .nonzeroBitCount == all.count)
        #expect(RoundField.all == all.reduce(0, |))
        let slotBits = Metric.perSlot.compactMap(\.slotBit) + [SlotField.watched]
        #expect(slotBits.reduce(0, |).nonzeroBitCount == slotBits.count)
        #expect(slotBits.allSatisfy { Int($0.trailingZeroBitCount) < SlotField.bits })
        // Round fields added after the composites keep the file order of version 1.
        #expect(RoundField.early.map(\.spec.name) == ["duration_ns", "bookkeeping_ns", "vcpu_exits", "copy_ns", "copied_bytes",
                                                    "guest_writes", "write_protect_faults", "ring_entries_harvested", "ring_full_exits"])
        #expect(RoundField.late == [.lostPages, .guestStallGet, .guestStallClear, .guestStallRing, .guestStallCopy, .guestStallVerify,
                                    .guestStallOther, .guestStallCPUWait, .guestWorkNanos, .guestTimedWrites, .guestCPUWaitNanos,
                                    .guestTimelineLost, .falsePositivesRewritten])
        #expect(RoundField.lateLatencies == [.guestStall])
    }

    /// Totals follow the table: a summed metric adds, histograms merge.
    @Test func totalsAddAsTheTableSays() {
        var a = RoundMetrics(mode: .manual, clearChunk: .pages(64))
        var b = a
        for (k, metric) in Metric.roundFields.enumerated() {
            a[metric] = UInt64(k + 1)
            b[metric] = UInt64(100 * (k + 1))
        }
        a.slots = [SlotMetrics(slot: 0, [.reportedPages: 7, .falsePositivePages: 2, .initialPages: 1, .copiedPages: 7])]
        b.slots = [SlotMetrics(slot: 0, [.reportedPages: 3, .falsePositivePages: 1, .copiedPages: 3, .missedPages: 0])]
        b.verification = Verification(missedPerSlot: [0], comparedPages: 10)
        a.getDirtyLog.record(1_000)
        b.getDirtyLog.record(5_000)
        var total = a.values
        total.add(b.values)
        for metric in Metric.allCases {
            switch metric.spec.total {
            case .sum: #expect(total[metric] == a[metric] + b[metric], "\(metric.spec.name)")
            case .merge, .derived: break
            }
        }
        #expect(total[.rounds] == 2 && total[.verifications] == 1 && total[.reportedPages] == 10)
        #expect(total.getDirtyLog.count == 2 && total.getDirtyLog.maxNanos == 5_000)
        #expect(total.falsePositiveFraction == 3.0 / 9.0)
    }

    @Test func csvHeaderIsTheTable() {
        #expect(CSVExport.columns == CSVExport.roundColumns + names + CSVExport.trailingColumns)
        #expect(Set(CSVExport.roundColumns + CSVExport.trailingColumns).isDisjoint(with: names))
    }

    /// `inspect --json`: the totals and each mode's totals carry exactly the table's names.
    @Test func inspectJSONKeysAreTheTable() throws {
        let info = SyntheticRounds.sessionInfo(slots: 2, pagesPerSlot: 4000)
        let path = try writeRecording(info, sessionRecords(mixedRounds(info, count: 30)))
        defer { unlink(path) }
        let json = RecordingSummary(try RecordingReader(path: path)).json()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let total = try #require(object["total"] as? [String: Any])
        #expect(Set(total.keys) == Set(names))
        let modes = try #require(object["modes"] as? [[String: Any]])
        #expect(!modes.isEmpty)
        for mode in modes { #expect(Set(mode.keys) == Set(names + ["mode", "clear_policy"])) }
        // Every key of the document is snake_case, the header's included ("clear_chunk": "4096").
        func keys(_ value: Any) -> [String] {
            if let d = value as? [String: Any] {
                // Capability names are the kernel's ("KVM_CAP_..."), event kinds snake_case.
                return d.keys.filter { !$0.hasPrefix("KVM_CAP_") } + d.values.flatMap(keys)
            }
            if let a = value as? [Any] { return a.flatMap(keys) }
            return []
        }
        for key in keys(object) { #expect(key.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "_" }, "\(key)") }
        let session = try #require(object["session"] as? [String: Any])
        #expect(session["clear_chunk"] as? String == "4096")
    }

    /// Headers written before the metric table stored the chunk as `{"pages":{"_0":64}}`.
    @Test func oldClearChunkEncodingStillDecodes() throws {
        let decoder = JSONDecoder()
        #expect(try decoder.decode(ClearChunk.self, from: Data(#"{"pages":{"_0":64}}"#.utf8)) == .pages(64))
        #expect(try decoder.decode(ClearChunk.self, from: Data(#"{"wholeSlot":{}}"#.utf8)) == .wholeSlot)
        #expect(try decoder.decode(ClearChunk.self, from: Data(#""slot""#.utf8)) == .wholeSlot)
        #expect(String(decoding: try JSONEncoder().encode(ClearChunk.pages(128)), as: UTF8.self) == #""128""#)
    }
}

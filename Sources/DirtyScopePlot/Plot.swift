import DirtyScopeModel
import DirtyScopeRecording
import Foundation

/// `dirtyscope plot`: self-contained SVG pictures of a recording, made from the file alone.
public enum Plot {
    public enum Kind: String, CaseIterable, Sendable {
        /// Address (64-page blocks) across, rounds down, coloured by pages reported, false
        /// positives in red.
        case heatmap
        /// The false-positive fraction per round, log scale, a colour per mode and policy.
        case fp
        /// GET and CLEAR latency per round, and their histograms.
        case latency
        /// What tracking cost the guest: each vCPU's throughput per round, one panel per
        /// mode and policy, with the host's GET and CLEAR time and the guest's stalls.
        case stall
    }

    public struct Options: Sendable {
        public var kind: Kind = .heatmap
        /// Data slot index (as `inspect` lists them).
        public var slot = 0
        /// Round numbers to draw (as the UI and `inspect` number them); nil draws all.
        public var rounds: ClosedRange<UInt64>?
        /// Most raster columns and rows of the heatmap.
        public var maxColumns = 1000
        public var maxRows = 800

        public init() {}
    }

    /// A problem with the request, naming the value and what is allowed.
    public struct PlotError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The SVG text for `reader`.
    public static func render(_ reader: RecordingReader, _ options: Options) throws -> String {
        let info = reader.info
        guard options.slot >= 0, options.slot < info.slots.count else {
            throw PlotError(description: "slot \(options.slot) is not in this recording (it has slots 0 to \(info.slots.count - 1))")
        }
        let selection = try Selection(reader, rounds: options.rounds)
        switch options.kind {
        case .heatmap: return try HeatmapPlot.render(reader, selection, options)
        case .fp: return FalsePositivePlot.render(reader, selection)
        case .latency: return LatencyPlot.render(reader, selection)
        case .stall: return StallPlot.render(reader, selection)
        }
    }
}

/// The rounds a plot draws (file positions with their metrics) and the markers between them.
struct Selection {
    struct Marker {
        /// Index into `positions`: the marker sits just before that round.
        var at: Int
        var label: String
        var isClear: Bool
    }

    let positions: [Int]
    let metrics: [RoundMetrics]
    let markers: [Marker]

    init(_ reader: RecordingReader, rounds: ClosedRange<UInt64>?) throws {
        var positions: [Int] = []
        var metrics: [RoundMetrics] = []
        for i in 0..<reader.roundCount {
            guard let m = try? reader.metrics(at: i) else { continue }  // the reader warned already
            if let rounds, !rounds.contains(m.index) { continue }
            positions.append(i)
            metrics.append(m)
        }
        guard !positions.isEmpty else {
            let range = rounds.map { " in rounds \($0.lowerBound)..\($0.upperBound)" } ?? ""
            throw Plot.PlotError(description: "no rounds to plot\(range): the recording has \(reader.roundCount) rounds")
        }
        var markers: [Marker] = []
        for (k, p) in positions.enumerated() {
            if k > 0, metrics[k].setting != metrics[k - 1].setting {
                markers.append(Marker(at: k, label: metrics[k].setting.description, isClear: false))
            }
            for timed in reader.events(at: p) {
                switch timed.event {
                case .workloadChanged(let w): markers.append(Marker(at: k, label: "workload \(w.workload.rawValue)", isClear: false))
                case .blocksCleared(let c):
                    markers.append(Marker(at: k, label: "CLEAR slot \(c.slot): \(c.blocks.count) blk", isClear: true))
                case .restarted: markers.append(Marker(at: k, label: "restart", isClear: false))
                default: break
                }
            }
        }
        // One marker per round: what happened there, together.
        var merged: [Marker] = []
        for m in markers {
            if let last = merged.last, last.at == m.at {
                merged[merged.count - 1].label += ", " + m.label
                merged[merged.count - 1].isClear = last.isClear || m.isClear
            } else {
                merged.append(m)
            }
        }
        self.positions = positions
        self.metrics = metrics
        self.markers = merged
    }

    var firstRound: UInt64 { metrics.first!.index }
    var lastRound: UInt64 { metrics.last!.index }
}

import CZlib
import DirtyScopeModel
import DirtyScopePlot
import DirtyScopeRecording
import Foundation
import Pages
import XCTest

/// Every plot kind of a small recording, rendered by a real SVG renderer (rsvg-convert):
/// a valid image of the expected size, and a heatmap whose pixels differ where the
/// recording's blocks differ.
final class PlotTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("dirtyscope-plot-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let scratch { try? FileManager.default.removeItem(at: scratch) }
    }

    /// One slot of 64 blocks; 40 rounds: blocks 0-7 fully dirty, 8-15 dirty with every
    /// page a false positive, the rest clean; a mode switch at round 21 and a CLEAR before it.
    private func recording() throws -> RecordingReader {
        let pages = 64 * 64
        let info = SessionInfo(toolVersion: "test", hostKernel: "test", pageSize: PageSize.system,
                               slots: [SlotInfo(index: 0, kvmSlot: 1, guestPhysicalAddress: 1 << 30, pages: pages)],
                               vcpus: 1, guestName: "workload", capabilities: [:], mode: .legacy, clearChunk: .pages(64),
                               workload: WorkloadSettings(workload: .hotset), intervalNanos: 100_000_000,
                               bandwidth: 1 << 26, ringEntries: 0, falsePositiveMethod: .stamp, startTime: 0)
        let path = scratch.appendingPathComponent("plot.dsrec").path
        let writer = try RecordingWriter(path: path, info: info)
        for i in 1...40 {
            var reported = DirtyBitmap(pageCount: pages), fps = DirtyBitmap(pageCount: pages)
            reported.set(0..<(16 * 64))
            fps.set((8 * 64)..<(16 * 64))
            if i == 21 {
                try writer.append(.event(TimedEvent(nanos: UInt64(i) * 100_000_000 - 1, event: .blocksCleared(
                    BlockClear(slot: 0, blocks: [0, 1], calls: 1, pagesCleared: 128, pagesCopied: 128, clearNanos: 1000)))))
            }
            var m = RoundMetrics(mode: i > 20 ? .manual : .legacy, clearChunk: .pages(64), clearPolicy: .hand)
            m.index = UInt64(i)
            m.startNanos = UInt64(i) * 100_000_000
            m[.durationNanos] = 5_000_000
            m.getDirtyLog.record(20_000 + UInt64(i) * 100)
            if i > 20 { m.clearDirtyLog.record(3_000) }
            m.slots = [SlotMetrics(slot: 0, [.copiedPages: reported.count])]
            try writer.append(.round(Round(counting: m, bitmaps: [SlotBitmaps(reported: reported, falsePositives: fps)])))
        }
        try writer.finish()
        return try RecordingReader(path: path)
    }

    private func rsvg() throws -> String {
        for dir in ["/usr/bin", "/usr/local/bin"] where FileManager.default.isExecutableFile(atPath: dir + "/rsvg-convert") {
            return dir + "/rsvg-convert"
        }
        throw XCTSkip("rsvg-convert not installed (Debian: librsvg2-bin; .ci/run installs it)")
    }

    /// Renders `svg` to PNG with rsvg-convert and decodes it.
    private func rasterize(_ svg: String, name: String) throws -> Image {
        let tool = try rsvg()
        let input = scratch.appendingPathComponent("\(name).svg"), output = scratch.appendingPathComponent("\(name).png")
        try Data(svg.utf8).write(to: input)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = ["-o", output.path, input.path]
        let errors = Pipe()
        p.standardError = errors
        try p.run()
        p.waitUntilExit()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0, "rsvg-convert rejected the SVG: \(message)")
        return try Image(png: [UInt8](Data(contentsOf: output)))
    }

    func testEveryKindRendersToAnImageOfItsSize() throws {
        let reader = try recording()
        // The stall plot: a panel per setting (legacy, manual/hand), 392 px each.
        let sizes: [Plot.Kind: (Int, Int)] = [.heatmap: (1100, 620), .fp: (1080, 526), .latency: (1040, 626), .stall: (1076, 908)]
        for kind in Plot.Kind.allCases {
            var options = Plot.Options()
            options.kind = kind
            let svg = try Plot.render(reader, options)
            XCTAssertTrue(svg.hasPrefix("<?xml"), "\(kind)")
            let image = try rasterize(svg, name: kind.rawValue)
            XCTAssertEqual(image.width, sizes[kind]!.0, "\(kind) width")
            XCTAssertEqual(image.height, sizes[kind]!.1, "\(kind) height")
            XCTAssertGreaterThan(image.distinctColors, 4, "\(kind): more than a blank page")
        }
    }

    func testHeatmapPixelsFollowTheBlocks() throws {
        let reader = try recording()
        let image = try rasterize(try Plot.render(reader, Plot.Options()), name: "blocks")
        // The raster spans x 80...880 (64 blocks, 12.5 px each) and y 56...536 (40 rounds).
        func pixel(block: Int, round: Int) -> (UInt8, UInt8, UInt8) {
            image.pixel(x: 80 + Int((Double(block) + 0.5) * 12.5), y: 56 + Int((Double(round) - 0.5) * 12))
        }
        let dirty = pixel(block: 3, round: 10), falsePositive = pixel(block: 12, round: 10), clean = pixel(block: 40, round: 10)
        XCTAssertEqual(clean.0, 255, "clean blocks are white: \(clean)")
        XCTAssertEqual(clean.2, 255)
        XCTAssertGreaterThan(dirty.2, dirty.0, "dirty blocks are blue: \(dirty)")
        XCTAssertGreaterThan(falsePositive.0, falsePositive.2, "false positives are red: \(falsePositive)")
        XCTAssertTrue(dirty != clean && dirty != falsePositive && falsePositive != clean)
        XCTAssertEqual(pixel(block: 3, round: 30).0, dirty.0, "the same blocks look the same in other rounds")
    }

    func testMarkersAndLabelsAreInTheSVG() throws {
        let reader = try recording()
        let svg = try Plot.render(reader, Plot.Options())
        XCTAssertTrue(svg.contains("manual/hand"), "the mode switch is marked")
        XCTAssertTrue(svg.contains("CLEAR slot 0: 2 blk"), "the CLEAR is marked")
        XCTAssertTrue(svg.contains("pages reported"), "the colour scale has units")
        var fp = Plot.Options()
        fp.kind = .fp
        let fpSVG = try Plot.render(reader, fp)
        XCTAssertTrue(fpSVG.contains("legacy: 50%") && fpSVG.contains("manual/hand: 50%"), "each setting with its rate")
    }

    /// The guest's cost: a panel per setting with its throughput against the untracked
    /// baseline, the stalls by cause, and a line per vCPU.
    func testStallPlotComparesEachSettingWithUntracked() throws {
        let info = SessionInfo(toolVersion: "test", hostKernel: "test", pageSize: PageSize.system,
                               slots: [SlotInfo(index: 0, kvmSlot: 1, guestPhysicalAddress: 1 << 30, pages: 4096)],
                               vcpus: 2, guestName: "workload", capabilities: [:], mode: .untracked, clearChunk: .pages(64),
                               workload: WorkloadSettings(workload: .sweep, rate: 0), intervalNanos: 100_000_000,
                               bandwidth: 0, ringEntries: 0, falsePositiveMethod: .stamp, startTime: 0)
        let path = scratch.appendingPathComponent("stall.dsrec").path
        let writer = try RecordingWriter(path: path, info: info)
        for i in 1...30 {
            // 10 untracked rounds at 4,000 writes/s a vCPU, then 10 legacy and 10 manual ones at half that.
            let mode: HarvestMode = i <= 10 ? .untracked : i <= 20 ? .legacy : .manual
            var m = RoundMetrics(mode: mode, clearChunk: .pages(64))
            m.index = UInt64(i)
            m.slots = [SlotMetrics(slot: 0)]
            let writes: UInt64 = mode == .untracked ? 400 : 200
            m.vcpus = [VCPUCost(vcpu: 0, writes: writes, workNanos: 100_000_000), VCPUCost(vcpu: 1, writes: writes, workNanos: 100_000_000)]
            m[.guestTimedWrites] = 2 * writes
            m[.guestWorkNanos] = 200_000_000
            if mode != .untracked {
                m.getDirtyLog.record(1_000_000)
                m.guestStall.record(50_000_000)
                m[mode == .legacy ? .guestStallGet : .guestStallClear] = 50_000_000
            }
            try writer.append(.round(Round(counting: m, bitmaps: [SlotBitmaps(pages: 4096)])))
        }
        try writer.finish()
        var options = Plot.Options()
        options.kind = .stall
        let svg = try Plot.render(try RecordingReader(path: path), options)
        XCTAssertTrue(svg.contains("untracked: 10 rounds, 4k/s a vCPU"), "the baseline's panel")
        XCTAssertTrue(svg.contains("legacy: 10 rounds, 2k/s a vCPU (0.500 of untracked), guest stall 50 ms a round"))
        XCTAssertTrue(svg.contains("manual/auto: 10 rounds, 2k/s a vCPU (0.500 of untracked)"))
        XCTAssertTrue(svg.contains("vCPU 1") && svg.contains("guest stalled beside:") && svg.contains("host in GET"), "the legend")
        XCTAssertEqual(svg.components(separatedBy: "stroke-dasharray=\"6 4\"").count - 1, 3 + 1, "the baseline in each panel and the legend")
        let image = try rasterize(svg, name: "stall")
        XCTAssertEqual(image.width, 1076)
        XCTAssertEqual(image.height, 84 + 3 * 392 + 40)
    }

    func testBadRequestsNameTheValue() throws {
        let reader = try recording()
        var options = Plot.Options()
        options.slot = 3
        XCTAssertThrowsError(try Plot.render(reader, options)) { XCTAssertTrue("\($0)".contains("slot 3"), "\($0)") }
        options.slot = 0
        options.rounds = 100...200
        XCTAssertThrowsError(try Plot.render(reader, options)) { XCTAssertTrue("\($0)".contains("100..200"), "\($0)") }
        options.rounds = 5...9
        XCTAssertTrue(try Plot.render(reader, options).contains("rounds 5–9"))
    }

    func testSVGEscapesText() {
        XCTAssertEqual(SVG.escape("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;")
    }
}

/// A decoded 8-bit RGB or RGBA PNG (what rsvg-convert writes), enough for pixel checks.
struct Image {
    let width: Int, height: Int, channels: Int
    let data: [UInt8]

    struct DecodeError: Error { let reason: String }

    init(png: [UInt8]) throws {
        guard png.count > 33, Array(png[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else { throw DecodeError(reason: "not a PNG") }
        func be32(_ i: Int) -> Int { Int(png[i]) << 24 | Int(png[i + 1]) << 16 | Int(png[i + 2]) << 8 | Int(png[i + 3]) }
        var at = 8, w = 0, h = 0, ch = 0
        var idat: [UInt8] = []
        while at + 8 <= png.count {
            let length = be32(at), type = String(decoding: png[(at + 4)..<(at + 8)], as: UTF8.self)
            let body = Array(png[(at + 8)..<min(png.count, at + 8 + length)])
            if type == "IHDR" {
                w = be32(at + 8); h = be32(at + 12)
                guard body[8] == 8, body[12] == 0 else { throw DecodeError(reason: "depth \(body[8]), interlace \(body[12])") }
                ch = body[9] == 6 ? 4 : body[9] == 2 ? 3 : 0
                guard ch > 0 else { throw DecodeError(reason: "colour type \(body[9])") }
            } else if type == "IDAT" {
                idat += body
            }
            at += 12 + length
        }
        var raw = [UInt8](repeating: 0, count: (w * ch + 1) * h)
        var size = uLongf(raw.count)
        let status = raw.withUnsafeMutableBufferPointer { r in idat.withUnsafeBufferPointer { uncompress(r.baseAddress, &size, $0.baseAddress, uLong(idat.count)) } }
        guard status == Z_OK else { throw DecodeError(reason: "inflate \(status)") }
        let stride = w * ch
        var out = [UInt8](repeating: 0, count: stride * h)
        for y in 0..<h {
            let filter = raw[y * (stride + 1)]
            for x in 0..<stride {
                let v = raw[y * (stride + 1) + 1 + x]
                let a = x >= ch ? Int(out[y * stride + x - ch]) : 0
                let b = y > 0 ? Int(out[(y - 1) * stride + x]) : 0
                let c = x >= ch && y > 0 ? Int(out[(y - 1) * stride + x - ch]) : 0
                let predictor: Int
                switch filter {
                case 0: predictor = 0
                case 1: predictor = a
                case 2: predictor = b
                case 3: predictor = (a + b) / 2
                case 4:
                    let p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
                    predictor = pa <= pb && pa <= pc ? a : (pb <= pc ? b : c)
                default: throw DecodeError(reason: "filter \(filter)")
                }
                out[y * stride + x] = UInt8(truncatingIfNeeded: Int(v) + predictor)
            }
        }
        width = w; height = h; channels = ch; data = out
    }

    func pixel(x: Int, y: Int) -> (UInt8, UInt8, UInt8) {
        let i = (y * width + x) * channels
        return (data[i], data[i + 1], data[i + 2])
    }

    var distinctColors: Int {
        var seen = Set<UInt32>()
        for i in stride(from: 0, to: data.count, by: channels) {
            seen.insert(UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]))
        }
        return seen.count
    }
}

import DirtyScopeModel
import DirtyScopeRecording
import Foundation
import Pages

/// Address across (64-page blocks, downsampled), rounds down, coloured by the pages
/// reported per block per round on a log scale; cells with false positives are red,
/// the redder the larger their share. The raster is an embedded PNG, the axes, scale
/// and markers are vector.
enum HeatmapPlot {
    static let plotWidth = 800.0, plotHeight = 480.0
    static let left = 80.0, top = 56.0, right = 220.0, bottom = 84.0
    /// Pages reported per block per round at the ends of the colour scale.
    static let scaleLow = 0.01, scaleHigh = Double(DirtyBitmap.pagesPerBlock)

    static func render(_ reader: RecordingReader, _ selection: Selection, _ options: Plot.Options) throws -> String {
        let info = reader.info
        let slot = info.slots[options.slot]
        let blocks = max(1, slot.blocks)
        let columns = max(1, min(blocks, options.maxColumns))
        let n = selection.positions.count
        let rows = max(1, min(n, options.maxRows))
        var reported = [UInt32](repeating: 0, count: rows * columns)
        var falsePositives = [UInt32](repeating: 0, count: rows * columns)
        // Blocks per column: column c holds blocks [c * blocks / columns, (c + 1) * blocks / columns).
        var columnOf = [Int32](repeating: 0, count: blocks)
        for b in 0..<blocks { columnOf[b] = Int32(b * columns / blocks) }
        var decodeFailures = 0
        for (k, position) in selection.positions.enumerated() {
            let row = k * rows / n
            guard let round = try? reader.entry(at: position).round else { decodeFailures += 1; continue }
            guard let i = round.slots.firstIndex(where: { $0.slot == options.slot }) else { continue }
            accumulate(round.bitmaps[i].reported, into: &reported, row: row, columns: columns, columnOf: columnOf)
            accumulate(round.bitmaps[i].falsePositives, into: &falsePositives, row: row, columns: columns, columnOf: columnOf)
        }

        // Colour each cell by the mean pages reported per block per round in it.
        var rgb = [UInt8](repeating: 255, count: rows * columns * 3)
        let logLow = log10(scaleLow), logSpan = log10(scaleHigh) - logLow
        for row in 0..<rows {
            let roundsInRow = (row + 1) * n / rows - row * n / rows
            for c in 0..<columns {
                let blocksInColumn = (c + 1) * blocks / columns - c * blocks / columns
                let i = row * columns + c
                guard reported[i] > 0 else { continue }
                let perBlockRound = Double(reported[i]) / Double(max(1, blocksInColumn * roundsInRow))
                var color = Palette.density(0.08 + 0.92 * max(0, (log10(perBlockRound) - logLow) / logSpan))
                if falsePositives[i] > 0 {
                    let share = max(0.45, min(1, Double(falsePositives[i]) / Double(reported[i])))
                    color = blend(color, Palette.falsePositive, share)
                }
                rgb[i * 3] = color.0
                rgb[i * 3 + 1] = color.1
                rgb[i * 3 + 2] = color.2
            }
        }
        // Small rasters are enlarged by whole pixels, so viewers that smooth images keep cells sharp.
        let zoomX = max(1, min(8, Int(plotWidth) / columns)), zoomY = max(1, min(8, Int(plotHeight) / rows))
        let png = PNG.encode(width: columns * zoomX, height: rows * zoomY,
                             rgb: enlarge(rgb, width: columns, height: rows, zoomX: zoomX, zoomY: zoomY))

        var svg = SVG(width: Int(left + plotWidth + right), height: Int(top + plotHeight + bottom))
        svg.comment("dirtyscope plot --kind heatmap --slot \(options.slot): \(reader.path)")
        let bytes = Double(slot.pages) * Double(info.pageSize)
        svg.text("Dirty pages of slot \(options.slot) (\(formatBytes(UInt64(bytes))) at 0x\(String(slot.guestPhysicalAddress, radix: 16))), "
                 + "rounds \(selection.firstRound)–\(selection.lastRound)", x: left, y: 24, size: 16, bold: true)
        svg.text("\(info.guestName), \(info.vcpus) vCPUs, \(info.workload.summary); recorded on Linux \(info.hostKernel)",
                 x: left, y: 42, size: 11, fill: "#555555")
        svg.image(pngBase64: Data(png).base64EncodedString(), x: left, y: top, width: plotWidth, height: plotHeight)
        svg.rect(x: left, y: top, width: plotWidth, height: plotHeight, fill: "none", stroke: "#444444")

        // Address axis: offsets into the slot.
        for t in Ticks.byteTicks(bytes) {
            let x = left + plotWidth * t / bytes
            svg.line(x1: x, y1: top + plotHeight, x2: x, y2: top + plotHeight + 5, stroke: "#444444")
            svg.text(formatBytes(UInt64(t)), x: x, y: top + plotHeight + 18, anchor: .middle, size: 11)
        }
        svg.text("offset in slot", x: left + plotWidth / 2, y: top + plotHeight + 36, anchor: .middle)
        // Round axis, first round on top.
        let first = Double(selection.firstRound), last = Double(selection.lastRound)
        for t in Ticks.linear(first, last) {
            let y = top + plotHeight * (last > first ? (t - first) / (last - first) : 0)
            svg.line(x1: left - 5, y1: y, x2: left, y2: y, stroke: "#444444")
            svg.text("\(Int(t))", x: left - 8, y: y + 4, anchor: .end, size: 11)
        }
        svg.text("round", x: 20, y: top + plotHeight / 2, anchor: .middle, rotate: -90)

        // Markers: a dashed line where the mode, policy or workload changed or a CLEAR ran.
        var labelled = 0
        var lastLabelY = -100.0
        for marker in selection.markers {
            let y = top + plotHeight * Double(marker.at) / Double(n)
            svg.line(x1: left, y1: y, x2: left + plotWidth + 6, y2: y, stroke: marker.isClear ? "#2ca02c" : "#000000",
                     width: 1, dash: "4 3")
            if y - lastLabelY >= 13 && labelled < 30 {
                svg.text(marker.label, x: left + plotWidth + 9, y: y + 4, size: 10, fill: marker.isClear ? "#2ca02c" : "#000000")
                lastLabelY = y
                labelled += 1
            }
        }

        // Colour scale with units.
        let scaleX = left + plotWidth + 120, scaleTop = top + 150, scaleHeight = 200.0
        svg.text("pages reported", x: scaleX - 20, y: scaleTop - 30, size: 11)
        svg.text("per block per round", x: scaleX - 20, y: scaleTop - 16, size: 11)
        let steps = 40
        for s in 0..<steps {
            let t = Double(s) / Double(steps - 1)
            let y = scaleTop + scaleHeight * (1 - Double(s + 1) / Double(steps))
            svg.rect(x: scaleX, y: y, width: 16, height: scaleHeight / Double(steps) + 0.5,
                     fill: Palette.hex(Palette.density(0.08 + 0.92 * t)))
        }
        svg.rect(x: scaleX, y: scaleTop, width: 16, height: scaleHeight, fill: "none", stroke: "#444444")
        for d in Ticks.decades(scaleLow, scaleHigh) + [scaleHigh] {
            let y = scaleTop + scaleHeight * (1 - (log10(d) - logLow) / logSpan)
            svg.text(Ticks.trim(d), x: scaleX + 22, y: y + 4, size: 10)
        }
        svg.rect(x: scaleX, y: scaleTop + scaleHeight + 18, width: 16, height: 12, fill: Palette.falsePositiveHex)
        svg.text("false positives", x: scaleX + 22, y: scaleTop + scaleHeight + 28, size: 10)

        // Caption: what one cell is.
        let blocksPerColumn = Double(blocks) / Double(columns)
        var caption = "1 column = \(Ticks.trim(blocksPerColumn)) block\(blocksPerColumn == 1 ? "" : "s") of 64 pages, "
            + "1 row = \(Ticks.trim(Double(n) / Double(rows))) round\(n == rows ? "" : "s")"
        caption += columns < blocks || rows < n ? " (downsampled: a cell shows the mean of what it covers)" : " (not downsampled)"
        if decodeFailures > 0 { caption += "; \(decodeFailures) rounds could not be decoded and are blank" }
        svg.text(caption, x: left, y: top + plotHeight + 60, size: 11, fill: "#555555")
        return svg.text
    }

    private static func accumulate(_ bitmap: DirtyBitmap, into sums: inout [UInt32], row: Int, columns: Int,
                                   columnOf: [Int32]) {
        bitmap.withUnsafeWords { words in
            sums.withUnsafeMutableBufferPointer { sums in
                let base = row * columns
                for (b, word) in words.enumerated() where word != 0 && b < columnOf.count {
                    sums[base + Int(columnOf[b])] &+= UInt32(word.nonzeroBitCount)
                }
            }
        }
    }

    private static func enlarge(_ rgb: [UInt8], width: Int, height: Int, zoomX: Int, zoomY: Int) -> [UInt8] {
        guard zoomX > 1 || zoomY > 1 else { return rgb }
        var out = [UInt8]()
        out.reserveCapacity(rgb.count * zoomX * zoomY)
        for y in 0..<height {
            var row = [UInt8]()
            row.reserveCapacity(width * zoomX * 3)
            for x in 0..<width {
                for _ in 0..<zoomX { row += rgb[(y * width + x) * 3..<(y * width + x) * 3 + 3] }
            }
            for _ in 0..<zoomY { out += row }
        }
        return out
    }

    private static func blend(_ a: (UInt8, UInt8, UInt8), _ b: (UInt8, UInt8, UInt8), _ t: Double) -> (UInt8, UInt8, UInt8) {
        func mix(_ x: UInt8, _ y: UInt8) -> UInt8 { UInt8(Double(x) + (Double(y) - Double(x)) * t) }
        return (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }
}

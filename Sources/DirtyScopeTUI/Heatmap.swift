import DirtyScopeModel
import Pages

/// One slot's panel: a title row and the heatmap (or the time view) below it.
enum Heatmap {
    static func draw(_ screen: inout Screen, state: AppState, panel: PanelPlacement, theme: Theme) {
        let slot = state.session.slots[panel.slot]
        let body = panel.body
        let geometry = HeatmapGeometry(pages: slot.info.pages, width: body.width, height: body.height,
                                       zoomedPagesPerCell: state.pagesPerZoomedCell)
        let top = geometry.topRow(cursorBlock: state.cursors[panel.slot], height: body.height)
        title(&screen, state: state, panel: panel, geometry: geometry, topRow: top, theme: theme)
        if state.view == .time {
            timeView(&screen, slot: slot, body: body, state: state, theme: theme)
        } else {
            heatmap(&screen, state: state, slotIndex: panel.slot, body: body, geometry: geometry, topRow: top, theme: theme)
        }
    }

    private static func title(_ screen: inout Screen, state: AppState, panel: PanelPlacement,
                              geometry: HeatmapGeometry, topRow: Int, theme: Theme) {
        let g = theme.glyphs
        let selected = panel.slot == state.selectedSlot
        let role = theme.role(selected ? .title : .border)
        screen.fill(x: panel.title.x, y: panel.title.y, width: panel.title.width, height: 1, with: Cell(g.horizontal, role))
        // Every panel shows the kinds of field the focused one has room for, so moving the
        // focus never changes what another title says.
        let width = panel.title.width - 4
        let focused = titleFields(state: state, slot: state.selectedSlot, geometry: geometry, topRow: topRow, height: panel.body.height)
        let kinds = Set(Format.fitting(focused.map { ($0.text, $0.priority, $0.attach) }, separator: g.separator, width: width)
            .map { focused[$0].kind })
        let parts = titleFields(state: state, slot: panel.slot, geometry: geometry, topRow: topRow, height: panel.body.height)
            .filter { kinds.contains($0.kind) }.map { ($0.text, $0.priority, $0.attach) }
        let text = " " + Format.fit(parts, separator: g.separator, width: width) + " "
        screen.put(text, x: panel.title.x + 1, y: panel.title.y, role: role, maxWidth: panel.title.width - 2)
    }

    /// A slot panel's title fields, each of a kind (lower priority: more important; 0 always shows).
    private static func titleFields(state: AppState, slot: Int, geometry: HeatmapGeometry, topRow: Int,
                                    height: Int) -> [(kind: String, text: String, priority: Int, attach: Bool)] {
        let info = state.info.slots[slot]
        let selected = slot == state.selectedSlot
        var parts: [(kind: String, text: String, priority: Int, attach: Bool)] = [
            ("slot", (selected ? "> " : "") + "slot \(info.index)", 0, false),
            ("position", " (\(slot + 1)/\(state.session.slots.count))", state.session.slots.count > 1 ? 2 : 3, true),
            ("kvm", "kvm \(info.kvmSlot)", 6, false), ("address", "0x" + String(info.guestPhysicalAddress, radix: 16), 5, false),
            ("size", formatBytes(UInt64(info.pages) * UInt64(state.info.pageSize)), 4, false),
        ]
        if state.view == .time {
            parts.append(("view", "address across, rounds down (newest on top)", 1, false))
        } else {
            let slotGeometry = HeatmapGeometry(pages: info.pages, width: geometry.columns, height: max(1, height),
                                               zoomedPagesPerCell: state.pagesPerZoomedCell)
            parts.append(("ppc", "\(slotGeometry.pagesPerCell) page\(slotGeometry.pagesPerCell == 1 ? "" : "s")/cell", 2, false))
            if slotGeometry.blocksPerCell > 1 { parts.append(("bpc", "cell = \(slotGeometry.blocksPerCell) blocks", 1, false)) }
            if slotGeometry.rowCount > height {
                let top = slotGeometry.topRow(cursorBlock: state.cursors[slot], height: height)
                parts.append(("rows", "rows \(top + 1)-\(top + height) of \(slotGeometry.rowCount)", 3, false))
            }
            if selected {
                let cursor = state.cursors[slot]
                parts.append(("cursor", "cursor block \(cursor)", 0, false))
                parts.append(("pages", " (pages \(cursor * DirtyBitmap.pagesPerBlock)-\(min(info.pages, (cursor + 1) * DirtyBitmap.pagesPerBlock) - 1))", 3, true))
            }
        }
        return parts
    }

    /// What one cell covers, summed over its blocks or pages.
    private struct CellSummary {
        var units = 0
        var dirty = 0
        var heat = 0
        var falsePositive = false
        var missed = false
    }

    private static func heatmap(_ screen: inout Screen, state: AppState, slotIndex: Int, body: Rect,
                                geometry: HeatmapGeometry, topRow: Int, theme: Theme) {
        let slot = state.session.slots[slotIndex]
        let g = theme.glyphs
        let selection = state.selectedBlocks(slot: slotIndex)
        let hasSelection = !selection.isEmpty
        let showCleared = slot.comparison != nil
        let showMissed = !slot.missed.isEmpty
        let cursor = slotIndex == state.selectedSlot ? state.cursors[slotIndex] : -1
        let showFP = state.showFalsePositives
        let roles = (missed: theme.role(.alert), dirty: theme.role(.dirty), fp: theme.role(.falsePositive),
                     cleared: theme.role(.clearedMark), clearedReported: theme.role(.cleared),
                     selected: theme.role(.selected), cursor: theme.role(.cursor), boundary: theme.role(.boundary),
                     heat: Role.heat.map(theme.role))
        // Without colours a selection has no background to show on: it gets its own glyph.
        let selectionGlyph = theme.colors == .monochrome ? g.selected : nil
        let ppc = geometry.pagesPerCell
        slot.reported.withUnsafeWords { reported in
        slot.falsePositives.withUnsafeWords { fps in
        slot.heat.withUnsafeBufferPointer { heat in
            for dy in 0..<body.height {
                let row = topRow + dy
                for dx in 0..<body.width {
                    guard let pages = geometry.pages(row: row, column: dx) else {
                        if geometry.isBoundary(column: dx), geometry.pages(row: row, column: dx - 1) != nil {
                            screen[body.x + dx, body.y + dy] = Cell(g.blockBoundary, roles.boundary)
                        }
                        continue
                    }
                    var sum = CellSummary()
                    let b0 = pages.lowerBound >> 6
                    let b1 = (pages.upperBound + 63) >> 6
                    if ppc >= 64 {
                        sum.units = b1 - b0
                        for b in b0..<b1 {
                            sum.heat += Int(heat[b])
                            if reported[b] != 0 { sum.dirty += 1 }
                            if fps[b] != 0 { sum.falsePositive = true }
                        }
                    } else {
                        let shift = UInt64(pages.lowerBound & 63)
                        let mask: UInt64 = (1 << UInt64(pages.count)) &- 1
                        sum.units = ppc
                        sum.heat = Int(heat[b0])
                        sum.dirty = ((reported[b0] >> shift) & mask).nonzeroBitCount
                        sum.falsePositive = (fps[b0] >> shift) & mask != 0
                    }
                    if showMissed, slot.missed.count(in: b0..<b1) > 0 { sum.missed = true }
                    let cleared = showCleared && slot.cleared.count(in: b0..<b1) > 0
                    var cell: Cell
                    if sum.missed {
                        cell = Cell(g.missed, roles.missed)
                    } else if showFP && sum.falsePositive {
                        cell = Cell(g.falsePositive, roles.fp)
                    } else if sum.dirty > 0 {
                        let level = min(3, (4 * sum.dirty - 1) / sum.units)
                        cell = cleared ? Cell(g.clearedReported[level], roles.clearedReported) : Cell(g.dirty[level], roles.dirty)
                    } else if cleared {
                        cell = Cell(g.cleared, roles.cleared)
                    } else if sum.heat > 0 {
                        let level = min(3, (4 * sum.heat - 1) / (heatRounds * (ppc >= 64 ? sum.units : 1)))
                        cell = Cell(g.recent[level], roles.heat[level])
                    } else {
                        cell = Cell(" ", roles.heat[0])
                    }
                    if cursor >= b0 && cursor < b1 {
                        cell = Cell(g.cursor, roles.cursor)
                    } else if hasSelection, selection.count(in: b0..<b1) > 0 {
                        cell = Cell(selectionGlyph ?? cell.char, roles.selected)
                    }
                    screen[body.x + dx, body.y + dy] = cell
                }
            }
        }
        }
        }
    }

    /// Address across, rounds down (newest on top): round numbers on the left every few
    /// rows, address offsets along the bottom row.
    private static func timeView(_ screen: inout Screen, slot: SlotView, body: Rect, state: AppState, theme: Theme) {
        let g = theme.glyphs
        let dirtyRole = theme.role(.dirty), clearedRole = theme.role(.cleared)
        let fpRole = theme.role(.falsePositive), dim = theme.role(.dim)
        let labelWidth = min(body.width / 4, max(5, "r\(state.roundIndex)".count + 1))
        let plot = Rect(x: body.x + labelWidth, y: body.y, width: body.width - labelWidth, height: max(0, body.height - 1))
        guard plot.width > 0, plot.height > 0 else { return }
        for dy in 0..<min(plot.height, slot.timeRows.count) {
            let row = slot.timeRows[slot.timeRows.count - 1 - dy]
            if dy % 4 == 0, state.roundIndex >= UInt64(dy) {
                screen.put("r\(state.roundIndex - UInt64(dy))", x: body.x, y: plot.y + dy, role: dim, maxWidth: labelWidth - 1)
            }
            let n = row.dirty.count
            guard n > 0 else { continue }
            for dx in 0..<plot.width {
                let lo = dx * n / plot.width
                let hi = max(lo + 1, (dx + 1) * n / plot.width)
                var dirty: UInt8 = 0, fp: UInt8 = 0, cleared = false
                for b in lo..<hi {
                    dirty = max(dirty, row.dirty[b])
                    fp = max(fp, row.falsePositives[b])
                    cleared = cleared || (b < row.cleared.count && row.cleared[b] != 0)
                }
                if state.showFalsePositives, fp > 0 {
                    screen[plot.x + dx, plot.y + dy] = Cell(g.falsePositive, fpRole)
                } else if dirty > 0 {
                    let level = min(3, Int(dirty) * 4 / 256)
                    screen[plot.x + dx, plot.y + dy] = cleared
                        ? Cell(g.clearedReported[level], clearedRole) : Cell(g.dirty[level], dirtyRole)
                }
            }
        }
        // The address axis: offsets into the slot at the left end, the quarters and the right end.
        let axisY = body.y + body.height - 1
        let bytes = UInt64(slot.info.pages) * UInt64(state.info.pageSize)
        screen.put("addr", x: body.x, y: axisY, role: dim, maxWidth: labelWidth - 1)
        var free = plot.x
        for q in 0...4 {
            let label = formatBytes(bytes * UInt64(q) / 4)
            let tick = plot.x + (plot.width - 1) * q / 4
            let x = q == 4 ? tick - label.count + 1 : (q == 0 ? tick : tick - label.count / 2)
            guard x >= free else { continue }
            free = screen.put(label, x: x, y: axisY, role: dim) + 1
        }
    }
}

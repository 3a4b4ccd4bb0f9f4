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
        let info = state.info.slots[panel.slot]
        let g = theme.glyphs
        let selected = panel.slot == state.selectedSlot
        let role = theme.role(selected ? .title : .border)
        screen.fill(x: panel.title.x, y: panel.title.y, width: panel.title.width, height: 1, with: Cell(g.horizontal, role))
        var parts = [
            "slot \(info.index) (\(panel.slot + 1)/\(state.session.slots.count))", "kvm \(info.kvmSlot)",
            "0x" + String(info.guestPhysicalAddress, radix: 16),
            Format.bytes(UInt64(info.pages) * UInt64(state.info.pageSize)),
        ]
        if state.view == .time {
            parts.append("address across, rounds down (newest on top)")
        } else {
            parts.append("\(geometry.pagesPerCell) page\(geometry.pagesPerCell == 1 ? "" : "s")/cell")
            if geometry.rowCount > panel.body.height {
                parts.append("rows \(topRow + 1)-\(topRow + panel.body.height) of \(geometry.rowCount)")
            }
            if selected {
                let cursor = state.cursors[panel.slot]
                parts.append("cursor block \(cursor) (pages \(cursor * 64)-\(min(info.pages, cursor * 64 + 64) - 1))")
            }
        }
        let text = (selected ? "> " : " ") + parts.joined(separator: g.separator) + " "
        screen.put(text, x: panel.title.x + 1, y: panel.title.y, role: role, maxWidth: panel.title.width - 2)
    }

    /// What one cell covers, summed over its blocks or pages.
    private struct CellSummary {
        var units = 0
        var dirty = 0
        var heat = 0
        var falsePositive = false
    }

    private static func heatmap(_ screen: inout Screen, state: AppState, slotIndex: Int, body: Rect,
                                geometry: HeatmapGeometry, topRow: Int, theme: Theme) {
        let slot = state.session.slots[slotIndex]
        let g = theme.glyphs
        let selection = state.selectedBlocks(slot: slotIndex)
        let hasSelection = !selection.isEmpty
        let showCleared = slot.clearedMarked(at: state.roundIndex)
        let cursor = slotIndex == state.selectedSlot ? state.cursors[slotIndex] : -1
        let showFP = state.showFalsePositives
        let roles = (dirty: theme.role(.dirty), fp: theme.role(.falsePositive), cleared: theme.role(.cleared),
                     selected: theme.role(.selected), cursor: theme.role(.cursor), boundary: theme.role(.boundary),
                     heat: Role.heat.map(theme.role))
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
                    var cell: Cell
                    if showFP && sum.falsePositive {
                        cell = Cell(g.falsePositive, roles.fp)
                    } else if sum.dirty > 0 {
                        cell = Cell(g.dirty[min(3, (4 * sum.dirty - 1) / sum.units)], roles.dirty)
                    } else if showCleared, slot.cleared.count(in: b0..<b1) > 0 {
                        cell = Cell(g.cleared, roles.cleared)
                    } else if sum.heat > 0 {
                        let level = min(3, (4 * sum.heat - 1) / (heatRounds * (ppc >= 64 ? sum.units : 1)))
                        cell = Cell(g.recent[level], roles.heat[level])
                    } else {
                        cell = Cell(" ", roles.heat[0])
                    }
                    if cursor >= b0 && cursor < b1 {
                        cell.role = roles.cursor
                    } else if hasSelection, selection.count(in: b0..<b1) > 0 {
                        cell.role = roles.selected
                    }
                    screen[body.x + dx, body.y + dy] = cell
                }
            }
        }
        }
        }
    }

    private static func timeView(_ screen: inout Screen, slot: SlotView, body: Rect, state: AppState, theme: Theme) {
        let g = theme.glyphs
        let heatRoles = Role.heat.map(theme.role)
        let fpRole = theme.role(.falsePositive)
        for dy in 0..<min(body.height, slot.timeRows.count) {
            let row = slot.timeRows[slot.timeRows.count - 1 - dy]
            let n = row.dirty.count
            guard n > 0 else { continue }
            for dx in 0..<body.width {
                let lo = dx * n / body.width
                let hi = max(lo + 1, (dx + 1) * n / body.width)
                var dirty: UInt8 = 0, fp: UInt8 = 0
                for b in lo..<hi {
                    dirty = max(dirty, row.dirty[b])
                    fp = max(fp, row.falsePositives[b])
                }
                if state.showFalsePositives, fp > 0 {
                    screen[body.x + dx, body.y + dy] = Cell(g.falsePositive, fpRole)
                } else if dirty > 0 {
                    let level = min(3, Int(dirty) * 4 / 256)
                    screen[body.x + dx, body.y + dy] = Cell(g.dirty[level], heatRoles[level])
                }
            }
        }
    }
}

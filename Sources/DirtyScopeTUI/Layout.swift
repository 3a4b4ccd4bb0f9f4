import Pages
/// A rectangle of cells.
struct Rect: Equatable {
    var x: Int
    var y: Int
    var width: Int
    var height: Int
}

/// Where one slot's panel goes: a title row and the heatmap body below it.
struct PanelPlacement: Equatable {
    var slot: Int
    var title: Rect
    var body: Rect
}

/// Where everything goes for a state's terminal size. Render draws into it, and the
/// keys use it to know how far a cursor row reaches.
struct Layout: Equatable {
    static let minWidth = 60
    static let minHeight = 16

    let tooSmall: Bool
    let header: Rect
    /// The guest-fault banner, when the guest stopped.
    let banner: Rect?
    let heat: Rect
    /// One line under the heat area: where this round's false positives came from.
    let race: Rect
    /// The guest strip above the race line: each vCPU's throughput round by round.
    let guest: Rect
    let metrics: Rect
    /// The glyph legend, a line of its own.
    let legend: Rect
    /// Messages and prompts.
    let status: Rect
    let keys: Rect
    let panels: [PanelPlacement]

    init(state: AppState) {
        let w = state.width, h = state.height
        tooSmall = w < Self.minWidth || h < Self.minHeight
        header = Rect(x: 0, y: 0, width: w, height: 1)
        banner = state.session.fault == nil ? nil : Rect(x: 0, y: 1, width: w, height: 1)
        let top = banner == nil ? 1 : 2
        legend = Rect(x: 0, y: h - 3, width: w, height: 1)
        status = Rect(x: 0, y: h - 2, width: w, height: 1)
        keys = Rect(x: 0, y: h - 1, width: w, height: 1)
        let bodyHeight = max(0, h - 3 - top)
        metrics = Rect(x: w - Self.metricsWidth(w), y: top, width: Self.metricsWidth(w), height: bodyHeight)
        let heatWidth = max(0, w - metrics.width - 1)
        let guestRows = GuestStrip.rows(vcpus: state.info.vcpus, height: h)
        heat = Rect(x: 0, y: top, width: heatWidth, height: max(0, bodyHeight - 1 - guestRows))
        guest = Rect(x: 0, y: top + heat.height, width: heatWidth, height: guestRows)
        race = Rect(x: 0, y: top + max(0, bodyHeight - 1), width: heatWidth, height: 1)
        panels = Self.placePanels(slots: state.session.slots.count, selected: state.selectedSlot, in: heat)
    }

    /// The metrics panel grows with the terminal: its labels are whole at 80 columns, and
    /// wide terminals get the per-setting costs and a taller history.
    static func metricsWidth(_ w: Int) -> Int {
        w >= 200 ? 64 : (w >= 150 ? 52 : (w >= 120 ? 44 : (w >= 100 ? 36 : 30)))
    }

    /// Panels share the heat area; when they do not all fit (3 rows each at least),
    /// a window of them that holds the selected slot is shown.
    private static func placePanels(slots n: Int, selected: Int, in area: Rect) -> [PanelPlacement] {
        guard n > 0, area.height >= 2 else { return [] }
        let visible = min(n, max(1, area.height / 3))
        let first = max(0, min(selected, n - visible))
        var y = area.y
        return (0..<visible).map { i in
            let rows = area.height / visible + (i < area.height % visible ? 1 : 0)
            defer { y += rows }
            return PanelPlacement(slot: first + i, title: Rect(x: area.x, y: y, width: area.width, height: 1),
                                  body: Rect(x: area.x, y: y + 1, width: area.width, height: rows - 1))
        }
    }

    /// The panel of `slot`, when it is on screen.
    func panel(of slot: Int) -> PanelPlacement? { panels.first { $0.slot == slot } }
}

/// How a slot's pages map onto the cells of its panel body.
///
/// Fit (no zoom): the smallest power-of-two pages per cell that shows the whole slot,
/// cells in reading order. Zoomed below 64 pages per cell: each 64-page block takes
/// `64 / pagesPerCell` cells followed by a boundary column, so blocks line up.
struct HeatmapGeometry: Equatable {
    let pages: Int
    let pagesPerCell: Int
    /// Columns per block including its boundary column; 0 when cells hold whole blocks
    /// or run on without boundaries.
    let blockStride: Int
    /// Blocks per row when boundaries are drawn.
    let blocksPerRow: Int
    let columns: Int
    let rowCount: Int

    init(pages: Int, width: Int, height: Int, zoomedPagesPerCell: Int?) {
        self.pages = pages
        let w = max(1, width), h = max(1, height)
        columns = w
        var ppc: Int
        if let zoomed = zoomedPagesPerCell {
            ppc = zoomed
            while ppc < DirtyBitmap.pagesPerBlock, DirtyBitmap.pagesPerBlock / ppc + 1 > w { ppc *= 2 }
        } else {
            ppc = 1
            while (pages + ppc - 1) / ppc > w * h { ppc *= 2 }
        }
        pagesPerCell = ppc
        if zoomedPagesPerCell != nil, ppc < DirtyBitmap.pagesPerBlock {
            blockStride = DirtyBitmap.pagesPerBlock / ppc + 1
            blocksPerRow = max(1, (w + 1) / blockStride)
            rowCount = (DirtyBitmap.blocks(covering: pages) + blocksPerRow - 1) / blocksPerRow
        } else {
            blockStride = 0
            blocksPerRow = 0
            rowCount = ((pages + ppc - 1) / ppc + w - 1) / w
        }
    }

    var hasBoundaries: Bool { blockStride > 0 }

    /// The pages of the cell at `row`, `column` (rows of the whole slot, not the viewport);
    /// nil for boundary columns and cells past the slot's end.
    func pages(row: Int, column: Int) -> Range<Int>? {
        let lo: Int
        if hasBoundaries {
            let blockInRow = column / blockStride, offset = column % blockStride
            guard blockInRow < blocksPerRow, offset < blockStride - 1 else { return nil }
            lo = (row * blocksPerRow + blockInRow) * DirtyBitmap.pagesPerBlock + offset * pagesPerCell
        } else {
            lo = (row * columns + column) * pagesPerCell
        }
        guard lo < pages else { return nil }
        return lo..<min(pages, lo + pagesPerCell)
    }

    /// True when `column` is a boundary between two blocks.
    func isBoundary(column: Int) -> Bool {
        hasBoundaries && column % blockStride == blockStride - 1 && column / blockStride < blocksPerRow - 1
    }

    /// The row holding block `block`.
    func row(ofBlock block: Int) -> Int {
        hasBoundaries ? block / blocksPerRow : block * DirtyBitmap.pagesPerBlock / pagesPerCell / columns
    }

    /// 64-page blocks in one cell (1 when a cell holds a block or less).
    var blocksPerCell: Int { max(1, pagesPerCell / DirtyBitmap.pagesPerBlock) }

    /// Blocks the cursor moves by for one step left/right (always one block, so a cell of
    /// several blocks takes several steps) and one row up/down.
    var horizontalStep: Int { 1 }
    var verticalStep: Int { hasBoundaries ? blocksPerRow : max(1, columns * pagesPerCell / DirtyBitmap.pagesPerBlock) }

    /// The first row to show in `height` rows so the cursor's row is in view (centered when scrolling).
    func topRow(cursorBlock: Int, height: Int) -> Int {
        guard rowCount > height else { return 0 }
        return min(max(0, row(ofBlock: cursorBlock) - height / 2), rowCount - height)
    }
}

/// One terminal cell of the in-memory screen: a character and the semantic role it is drawn in.
struct Cell: Equatable, Sendable {
    var char: Unicode.Scalar
    var role: Role

    init(_ char: Unicode.Scalar, _ role: Role = .plain) {
        self.char = char
        self.role = role
    }

    static let blank = Cell(" ")
}

/// What a frame looks like, cell by cell, before any terminal is involved: the pure
/// render function fills it and the backend draws the cells that changed.
/// Every glyph the UI uses is one column wide.
struct Screen: Equatable, Sendable {
    let width: Int
    let height: Int
    private(set) var cells: [Cell]

    init(width: Int, height: Int) {
        self.width = max(0, width)
        self.height = max(0, height)
        cells = [Cell](repeating: .blank, count: self.width * self.height)
    }

    subscript(x: Int, y: Int) -> Cell {
        get { cells[y * width + x] }
        set { if x >= 0, y >= 0, x < width, y < height { cells[y * width + x] = newValue } }
    }

    /// Writes `text` from column `x` of row `y`, clipped at `maxWidth` columns and the screen edge;
    /// returns the column after the last one written.
    @discardableResult
    mutating func put(_ text: String, x: Int, y: Int, role: Role = .plain, maxWidth: Int = .max) -> Int {
        guard y >= 0, y < height else { return x }
        let end = min(width, x + min(max(0, maxWidth), width))
        var col = x
        for scalar in text.unicodeScalars {
            if col >= end { break }
            if col >= 0 { cells[y * width + col] = Cell(scalar, role) }
            col += 1
        }
        return col
    }

    /// Fills a rectangle with one cell.
    mutating func fill(x: Int, y: Int, width w: Int, height h: Int, with cell: Cell = .blank) {
        for row in max(0, y)..<min(height, y + h) {
            for col in max(0, x)..<max(max(0, x), min(width, x + w)) { cells[row * width + col] = cell }
        }
    }

    /// Row `y` as text.
    func line(_ y: Int) -> String {
        var s = String.UnicodeScalarView()
        for x in 0..<width { s.append(cells[y * width + x].char) }
        return String(s)
    }

    /// Every row as text, trailing blanks kept.
    var lines: [String] { (0..<height).map(line) }

    /// The whole screen as one string, rows separated by newlines.
    var text: String { lines.joined(separator: "\n") }

    /// Runs of cells that differ from `old` (everything when sizes differ), row by row.
    func changes(from old: Screen?) -> [ChangedRun] {
        var runs: [ChangedRun] = []
        let full = old == nil || old!.width != width || old!.height != height
        for y in 0..<height {
            var x = 0
            while x < width {
                let i = y * width + x
                if !full, old!.cells[i] == cells[i] { x += 1; continue }
                let role = cells[i].role
                var end = x + 1
                while end < width, cells[y * width + end].role == role,
                      full || old!.cells[y * width + end] != cells[y * width + end] { end += 1 }
                runs.append(ChangedRun(x: x, y: y, count: end - x, role: role))
                x = end
            }
        }
        return runs
    }
}

/// A run of cells in one row and one role that the backend must redraw.
struct ChangedRun: Equatable {
    var x: Int
    var y: Int
    var count: Int
    var role: Role
}

/// Which characters the UI may draw.
public enum GlyphMode: Equatable, Sendable {
    /// Block, braille and box-drawing glyphs (needs a UTF-8 locale).
    case unicode
    /// Printable ASCII only.
    case ascii
}

/// Every glyph the UI draws, in one table per glyph mode. Each heatmap state has glyphs of
/// its own, so states stay apart without colours: heat, reported now, false positive,
/// cleared (reported or not), missed, and the cursor. A selection keeps the cell's glyph on
/// its own background, or, in monochrome, draws `selected`.
struct Glyphs: Sendable {
    let mode: GlyphMode
    /// Dirty this round, by density (4 levels).
    let dirty: [Unicode.Scalar]
    /// Recently dirty, by heat (4 levels).
    let recent: [Unicode.Scalar]
    let falsePositive: Unicode.Scalar
    /// A cleared block (`c`) that reported nothing this round.
    let cleared: Unicode.Scalar
    /// A cleared block reporting pages this round, by density (4 levels).
    let clearedReported: [Unicode.Scalar]
    /// The cursor's block.
    let cursor: Unicode.Scalar
    /// A selected block where no background can show it (monochrome).
    let selected: Unicode.Scalar
    /// A block where the verifier found a lost write.
    let missed: Unicode.Scalar
    /// Between 64-page blocks when zoomed in.
    let blockBoundary: Unicode.Scalar
    /// Sparkline levels, lowest first (8 levels).
    let spark: [Unicode.Scalar]
    let horizontal: Unicode.Scalar
    let recording: String
    let micro: String
    let separator: String

    static let unicode = Glyphs(
        mode: .unicode, dirty: ["░", "▒", "▓", "█"], recent: ["⠁", "⠅", "⠭", "⠿"],
        falsePositive: "╳", cleared: "○", clearedReported: ["◔", "◑", "◕", "●"], cursor: "◆", selected: "▪", missed: "!", blockBoundary: "│", spark: ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"],
        horizontal: "─", recording: "● REC", micro: "µs", separator: " │ ")

    static let ascii = Glyphs(
        mode: .ascii, dirty: [":", "+", "*", "#"], recent: [".", ",", "-", "="],
        falsePositive: "x", cleared: "o", clearedReported: ["c", "c", "O", "O"], cursor: "@", selected: "%", missed: "!", blockBoundary: "|", spark: ["_", ".", ",", "-", "~", "=", "+", "#"],
        horizontal: "-", recording: "* REC", micro: "us", separator: " | ")

    /// Text from outside (guest names, paths, messages) made safe to draw: control
    /// characters become spaces and, in ASCII mode, other characters become `?`.
    func sanitize(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            if s.value < 0x20 || s.value == 0x7f { out.append(" ") }
            else if mode == .ascii, s.value > 0x7e { out.append("?") }
            else { out.append(s) }
        }
        return String(out)
    }
}

/// Which characters the UI may draw.
public enum GlyphMode: Equatable, Sendable {
    /// Block, braille and box-drawing glyphs (needs a UTF-8 locale).
    case unicode
    /// Printable ASCII only.
    case ascii
}

/// Every glyph the UI draws, in one table per glyph mode. In monochrome the heatmap's
/// states stay apart by glyph alone, so each state has its own set.
struct Glyphs: Sendable {
    let mode: GlyphMode
    /// Dirty this round, by density (4 levels).
    let dirty: [Unicode.Scalar]
    /// Recently dirty, by heat (4 levels).
    let recent: [Unicode.Scalar]
    let falsePositive: Unicode.Scalar
    let cleared: Unicode.Scalar
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
        falsePositive: "╳", cleared: "○", missed: "!", blockBoundary: "│", spark: ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"],
        horizontal: "─", recording: "● REC", micro: "µs", separator: " │ ")

    static let ascii = Glyphs(
        mode: .ascii, dirty: [":", "+", "*", "#"], recent: [".", ",", "-", "="],
        falsePositive: "x", cleared: "o", missed: "!", blockBoundary: "|", spark: ["_", ".", ",", "-", "~", "=", "+", "#"],
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

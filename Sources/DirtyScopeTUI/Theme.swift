/// What a cell means; the backend turns each role into colors or attributes.
/// The first five roles use attributes only and are all a monochrome screen contains.
enum Role: UInt8, CaseIterable, Sendable {
    case plain, bold, dim, reverse, underline
    case header, title, border, key, alert, warn, good
    /// Recently dirty, by heat (1 coolest ... 4 hottest).
    case heat1, heat2, heat3, heat4
    case dirty, falsePositive, cleared, selected, cursor, boundary
    /// The faint mark on blocks the user cleared, kept until the next `c` or `x`; `cleared`
    /// draws those of them reporting pages.
    case clearedMark
    case sparkFalsePositive, sparkDirty
    /// The guest strip: a round the vCPU ran free, and one it stalled in beside each host activity.
    case stallNone, stallGet, stallClear, stallRing, stallCopy, stallVerify, stallOther
    /// The guest strip: a stall spent mostly waiting for a host CPU (steal time).
    case stallCPU

    /// True for roles that need colors to be drawn as meant.
    var needsColor: Bool { rawValue > Role.underline.rawValue }

    static let heat: [Role] = [.heat1, .heat2, .heat3, .heat4]
}

/// How many colors the terminal gets.
public enum ColorMode: Equatable, Sendable {
    case colors256
    case colors8
    /// NO_COLOR set, or a terminal without colors: attributes only.
    case monochrome
}

/// The glyph table and the color mode, chosen once when the UI starts.
struct Theme: Sendable {
    let glyphs: Glyphs
    let colors: ColorMode

    init(glyphs: GlyphMode, colors: ColorMode) {
        self.glyphs = glyphs == .unicode ? .unicode : .ascii
        self.colors = colors
    }

    /// The role to draw: itself with colors, its attribute-only stand-in in monochrome.
    func role(_ role: Role) -> Role {
        guard colors == .monochrome, role.needsColor else { return role }
        switch role {
        case .header, .alert, .selected, .cursor: return .reverse
        case .title, .key, .warn, .dirty, .falsePositive, .cleared: return .bold
        case .boundary, .border: return .dim
        default: return .plain
        }
    }
}

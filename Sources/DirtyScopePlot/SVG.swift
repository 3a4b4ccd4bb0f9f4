/// A small SVG writer: enough shapes for plots, every attribute escaped, the document
/// self-contained (no external fonts, styles or images).
public struct SVG {
    public let width: Int
    public let height: Int
    private var body: [String] = []

    public init(width: Int, height: Int) {
        self.width = max(1, width)
        self.height = max(1, height)
    }

    /// The document, with an XML declaration and a white background.
    public var text: String {
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        out += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"\(width)\" height=\"\(height)\" "
        out += "viewBox=\"0 0 \(width) \(height)\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
        out += "<rect x=\"0\" y=\"0\" width=\"\(width)\" height=\"\(height)\" fill=\"#ffffff\"/>\n"
        out += body.joined(separator: "\n")
        out += "\n</svg>\n"
        return out
    }

    public mutating func rect(x: Double, y: Double, width: Double, height: Double, fill: String, stroke: String? = nil,
                              opacity: Double = 1) {
        var e = "<rect x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(n(max(0, width)))\" height=\"\(n(max(0, height)))\" fill=\"\(Self.escape(fill))\""
        if let stroke { e += " stroke=\"\(Self.escape(stroke))\"" }
        if opacity < 1 { e += " fill-opacity=\"\(n(opacity))\"" }
        body.append(e + "/>")
    }

    public mutating func line(x1: Double, y1: Double, x2: Double, y2: Double, stroke: String, width: Double = 1,
                              dash: String? = nil) {
        var e = "<line x1=\"\(n(x1))\" y1=\"\(n(y1))\" x2=\"\(n(x2))\" y2=\"\(n(y2))\" stroke=\"\(Self.escape(stroke))\""
        e += " stroke-width=\"\(n(width))\""
        if let dash { e += " stroke-dasharray=\"\(Self.escape(dash))\"" }
        body.append(e + "/>")
    }

    /// A line through `points`; nothing for fewer than two.
    public mutating func polyline(_ points: [(Double, Double)], stroke: String, width: Double = 1.5) {
        guard points.count >= 2 else { return }
        let list = points.map { "\(n($0.0)),\(n($0.1))" }.joined(separator: " ")
        body.append("<polyline points=\"\(list)\" fill=\"none\" stroke=\"\(Self.escape(stroke))\" stroke-width=\"\(n(width))\"/>")
    }

    public enum Anchor: String { case start, middle, end }

    public mutating func text(_ s: String, x: Double, y: Double, anchor: Anchor = .start, size: Double = 12,
                              fill: String = "#222222", bold: Bool = false, rotate: Double? = nil) {
        var e = "<text x=\"\(n(x))\" y=\"\(n(y))\" text-anchor=\"\(anchor.rawValue)\" font-size=\"\(n(size))\" fill=\"\(Self.escape(fill))\""
        if bold { e += " font-weight=\"bold\"" }
        if let rotate { e += " transform=\"rotate(\(n(rotate)) \(n(x)) \(n(y)))\"" }
        body.append(e + ">" + Self.escape(s) + "</text>")
    }

    /// A raster image, embedded as a data URL, drawn unsmoothed into the rectangle.
    public mutating func image(pngBase64: String, x: Double, y: Double, width: Double, height: Double) {
        body.append("<image x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(n(width))\" height=\"\(n(height))\" "
                    + "preserveAspectRatio=\"none\" style=\"image-rendering:pixelated\" "
                    + "href=\"data:image/png;base64,\(pngBase64)\"/>")
    }

    /// A comment in the document (settings, provenance).
    public mutating func comment(_ s: String) {
        body.append("<!-- " + s.replacingOccurrences(of: "--", with: "- -") + " -->")
    }

    /// Text made safe for XML content and attribute values; control characters dropped.
    public static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                if c.value < 0x20 && c != "\t" { continue }
                if (0xD800...0xDFFF).contains(c.value) || c.value == 0xFFFE || c.value == 0xFFFF { continue }
                out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// A coordinate with at most two decimals, no exponent.
    private func n(_ v: Double) -> String {
        guard v.isFinite else { return "0" }
        let r = (v * 100).rounded() / 100
        if r == r.rounded() { return String(Int(r)) }
        return String(format2(r))
    }

    private func format2(_ v: Double) -> String {
        let scaled = Int((abs(v) * 100).rounded())
        let sign = v < 0 ? "-" : ""
        let frac = scaled % 100
        return "\(sign)\(scaled / 100)." + (frac < 10 ? "0\(frac)" : "\(frac)")
    }
}

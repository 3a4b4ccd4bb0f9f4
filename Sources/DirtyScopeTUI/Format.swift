/// Numbers as the UI prints them: short, with units.
enum Format {
    /// 1234 -> "1234", 12345 -> "12.3k", 1.5e6 -> "1.50M".
    static func count<T: BinaryInteger>(_ n: T) -> String { count(Double(n)) }

    static func count(_ value: Double) -> String {
        let v = abs(value)
        if v < 10_000 { return v == v.rounded() ? "\(Int(value))" : fixed(value, 1) }
        if v < 1e6 { return fixed(value / 1e3, 1) + "k" }
        if v < 1e9 { return fixed(value / 1e6, 2) + "M" }
        return fixed(value / 1e9, 2) + "G"
    }

    /// A rate as at most four characters and a unit: "850", "5.2k", "1.50M".
    static func rate(_ perSecond: Double) -> String {
        let v = abs(perSecond)
        if v < 1_000 { return "\(Int(perSecond.rounded()))" }
        if v < 1e6 { return fixed(perSecond / 1e3, v < 1e5 ? 1 : 0) + "k" }
        return fixed(perSecond / 1e6, 2) + "M"
    }

    /// Nanoseconds as "850ns", "12.4µs", "3.1ms", "2.0s"; `micro` is the glyph table's "µs".
    static func duration(_ nanos: UInt64, micro: String = "µs") -> String {
        let n = Double(nanos)
        if nanos < 1000 { return "\(nanos)ns" }
        if n < 1e6 { return fixed(n / 1e3, n < 1e4 ? 1 : 0) + micro }
        if n < 1e9 { return fixed(n / 1e6, n < 1e7 ? 1 : 0) + "ms" }
        return fixed(n / 1e9, 1) + "s"
    }

    static func percent(_ fraction: Double) -> String { fixed(fraction * 100, 1) + "%" }

    static func interval(_ nanos: UInt64) -> String {
        nanos == 0 ? "back to back" : duration(nanos, micro: "us")
    }

    static func bandwidth(_ bytesPerSecond: UInt64) -> String {
        fixed(Double(bytesPerSecond) / 1_048_576, bytesPerSecond < 10 * 1_048_576 ? 1 : 0) + " MiB/s"
    }

    static func fixed(_ value: Double, _ decimals: Int) -> String {
        guard value.isFinite else { return "-" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let r = (value * scale).rounded() / scale
        var s = "\(r)"
        if decimals == 0 { return "\(Int(r))" }
        if let dot = s.firstIndex(of: ".") {
            let have = s.distance(from: dot, to: s.endIndex) - 1
            if have < decimals { s += String(repeating: "0", count: decimals - have) }
        }
        return s
    }

    /// A percentage with the decimals small rates need: "12.3%", "4.56%", "0.042%".
    static func percentFine(_ fraction: Double) -> String {
        let p = fraction * 100
        return fixed(p, p == 0 || p >= 10 ? 1 : (p >= 0.1 ? 2 : 3)) + "%"
    }

    /// Seconds as "0.42s", "12.3s", "950s".
    static func seconds(_ s: Double) -> String { fixed(s, s < 1 ? 2 : (s < 100 ? 1 : 0)) + "s" }

    /// Mebibytes as "0.50", "12.3", "4096".
    static func mebibytes(_ bytes: Double) -> String {
        let m = bytes / 1_048_576
        return fixed(m, m < 10 ? 2 : (m < 1000 ? 1 : 0))
    }

    /// Fields joined by `separator`, the least important dropped first until the text fits
    /// `width` columns. A field with `attach` joins its predecessor without a separator and
    /// goes with it. Lower `priority` is more important; priority 0 is never dropped.
    static func fit(_ fields: [(text: String, priority: Int, attach: Bool)], separator: String, width: Int) -> String {
        join(fields, kept: fitting(fields, separator: separator, width: width), separator: separator)
    }

    /// The indices of the fields `fit` keeps.
    static func fitting(_ fields: [(text: String, priority: Int, attach: Bool)], separator: String, width: Int) -> [Int] {
        var kept = Array(fields.indices)
        while join(fields, kept: kept, separator: separator).unicodeScalars.count > width,
              let worst = kept.map({ fields[$0].priority }).max(), worst > 0 {
            var i = kept.lastIndex { fields[$0].priority == worst }!
            kept.remove(at: i)
            while i < kept.count, fields[kept[i]].attach { kept.remove(at: i) }
            i = 0
        }
        return kept
    }

    private static func join(_ fields: [(text: String, priority: Int, attach: Bool)], kept: [Int], separator: String) -> String {
        var s = ""
        for (n, i) in kept.enumerated() { s += (n == 0 || fields[i].attach ? "" : separator) + fields[i].text }
        return s
    }
}

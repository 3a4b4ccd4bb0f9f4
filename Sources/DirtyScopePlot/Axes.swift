import Foundation

/// Tick positions and labels for plot axes.
enum Ticks {
    /// About `count` round-numbered ticks across `lo...hi` (1, 2 or 5 times a power of ten).
    static func linear(_ lo: Double, _ hi: Double, count: Int = 6) -> [Double] {
        guard hi > lo, count > 0 else { return [lo] }
        let raw = (hi - lo) / Double(count)
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        var ticks: [Double] = []
        var t = (lo / step).rounded(.up) * step
        while t <= hi + step * 1e-9 {
            ticks.append(t)
            t += step
        }
        return ticks
    }

    /// Powers of ten in `lo...hi` (both positive).
    static func decades(_ lo: Double, _ hi: Double) -> [Double] {
        guard lo > 0, hi >= lo else { return [] }
        var out: [Double] = []
        var e = floor(log10(lo))
        while pow(10, e) <= hi * (1 + 1e-9) {
            if pow(10, e) >= lo * (1 - 1e-9) { out.append(pow(10, e)) }
            e += 1
        }
        return out
    }

    /// Byte ticks at 1, 2 or 5 times a power-of-two unit, about `count` of them.
    static func byteTicks(_ total: Double, count: Int = 6) -> [Double] {
        guard total > 0 else { return [0] }
        let raw = total / Double(count)
        var unit = 1.0
        while unit * 1024 <= raw { unit *= 1024 }
        let step = [1.0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024].map { $0 * unit }.first { $0 >= raw } ?? raw
        return stride(from: 0, through: total, by: step).map { $0 }
    }

    /// Nanoseconds as "850 ns", "12 µs", "3 ms", "2 s".
    static func nanos(_ v: Double) -> String {
        switch v {
        case ..<1_000: return "\(Int(v)) ns"
        case ..<1_000_000: return "\(trim(v / 1e3)) µs"
        case ..<1_000_000_000: return "\(trim(v / 1e6)) ms"
        default: return "\(trim(v / 1e9)) s"
        }
    }

    /// A fraction as a percentage: "0.01%", "5%", "100%".
    static func percent(_ f: Double) -> String { "\(trim(f * 100))%" }

    static func trim(_ v: Double) -> String {
        if v == v.rounded() { return "\(Int(v))" }
        var s = String(format: v < 0.1 ? "%.3f" : "%.2f", v)
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return s
    }
}

/// Colours: a sequential ramp for density, and one colour per harvest setting.
enum Palette {
    /// White through blues to navy, for 0...1.
    static func density(_ t: Double) -> (UInt8, UInt8, UInt8) {
        let stops: [(Double, Double, Double)] = [(247, 251, 255), (198, 219, 239), (107, 174, 214), (33, 113, 181), (8, 48, 107)]
        let x = min(1, max(0, t)) * Double(stops.count - 1)
        let i = min(stops.count - 2, Int(x))
        let f = x - Double(i)
        let a = stops[i], b = stops[i + 1]
        return (UInt8(a.0 + (b.0 - a.0) * f), UInt8(a.1 + (b.1 - a.1) * f), UInt8(a.2 + (b.2 - a.2) * f))
    }

    static let falsePositive = (UInt8(228), UInt8(26), UInt8(28))
    static let falsePositiveHex = "#e41a1c"

    /// A colour per mode and policy label, stable across plots.
    static func setting(_ label: String) -> String {
        switch label {
        case "legacy": return "#d95f02"
        case "manual/auto": return "#1b9e77"
        case "manual/hand": return "#7570b3"
        case "manual/after-copy": return "#e7298a"
        case "manual/at-get": return "#e6ab02"
        case "ring": return "#66a61e"
        default: return "#666666"
        }
    }

    static func hex(_ c: (UInt8, UInt8, UInt8)) -> String {
        String(format: "#%02x%02x%02x", c.0, c.1, c.2)
    }
}

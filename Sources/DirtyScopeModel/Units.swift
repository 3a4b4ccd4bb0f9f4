#if canImport(Glibc)
import Glibc
#endif

/// Bytes in binary units, whole numbers bare: "512 KiB", "1.5 GiB", "640 B". Every
/// byte count the tool prints goes through here.
public func formatBytes(_ bytes: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    var v = Double(bytes)
    var unit = 0
    while v >= 1024 && unit < units.count - 1 { v /= 1024; unit += 1 }
    let rounded = (v * 10).rounded() / 10
    let text = rounded == rounded.rounded() ? "\(Int(rounded))" : "\(rounded)"
    return text + " " + units[unit]
}

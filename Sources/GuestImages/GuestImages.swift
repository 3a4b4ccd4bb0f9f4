/// The guest programs built from `Guests/` by GuestBuildPlugin, as flat binaries that are
/// loaded at `DS_LOAD_GPA` and entered at their first byte.
public enum GuestImages {
    /// Names of the built-in guests (the folder names under `Guests/`).
    public static var names: [String] { hexImages.keys.sorted() }

    /// The flat binary of the built-in guest `name`, or nil if there is none.
    public static func image(named name: String) -> [UInt8]? {
        guard let hex = hexImages[name] else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity(hex.utf8.count / 2)
        var high: UInt8 = 0
        for (i, c) in hex.utf8.enumerated() {
            let v: UInt8 = c <= 57 ? c - 48 : c - 87
            if i % 2 == 0 { high = v } else { bytes.append(high << 4 | v) }
        }
        return bytes
    }
}

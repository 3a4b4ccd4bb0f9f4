/// The keys, in one table: the help overlay lists it and the key line samples it.
enum KeyHelp {
    struct Entry: Equatable {
        var keys: String
        var action: String
    }

    static let shared: [Entry] = [
        Entry(keys: "arrows hjkl", action: "move one 64-page block"),
        Entry(keys: "tab", action: "next slot (shift-tab)"),
        Entry(keys: "z", action: "zoom: fit 64 8 1 p/cell"),
        Entry(keys: "t", action: "heatmap / time view"),
        Entry(keys: "f", action: "false positives on/off"),
        Entry(keys: "?", action: "this help (any key)"),
        Entry(keys: "q", action: "quit"),
    ]

    static let live: [Entry] = [
        Entry(keys: "m", action: "manual / legacy mode"),
        Entry(keys: "o", action: "next clear policy"),
        Entry(keys: "space", action: "mark the cursor block"),
        Entry(keys: "v", action: "start / end a range"),
        Entry(keys: "c", action: "CLEAR selected blocks"),
        Entry(keys: "a", action: "select the whole slot"),
        Entry(keys: "x", action: "drop selection / CLEAR"),
        Entry(keys: "p", action: "pause / resume"),
        Entry(keys: "n", action: "one round while paused"),
        Entry(keys: "1-6", action: "workload: sweep...idle"),
        Entry(keys: "+ -", action: "double / halve writes"),
        Entry(keys: "s", action: "harvest interval (ms)"),
        Entry(keys: "b", action: "copy bandwidth (MiB/s)"),
        Entry(keys: "r", action: "start / stop recording"),
        Entry(keys: "R", action: "restart the guest"),
    ]

    static let replay: [Entry] = [
        Entry(keys: "space p", action: "play / pause"),
        Entry(keys: ", . arrows", action: "one round back / on"),
        Entry(keys: "home end", action: "first / last round"),
        Entry(keys: "[ ] PgUp/Dn", action: "seek 10% back / on"),
        Entry(keys: "< >", action: "speed x0.25 ... x16"),
        Entry(keys: "jk up down", action: "move the cursor"),
    ]

    static func entries(replay: Bool) -> [Entry] { (replay ? Self.replay : live) + shared }

    /// The bottom line's reminders, most useful first: as many as fit in `width` columns,
    /// always ending with "? help  q quit".
    static func keyLine(replay: Bool, width: Int = .max) -> String {
        let tail = "? help  q quit"
        let hints = replay
            ? ["space play", ",. step", "[] seek", "<> speed", "z zoom", "t time", "f FP", "tab slot"]
            : ["m mode", "p pause", "c clear", "o policy", "space/v select", "x drop", "z zoom", "t time", "f FP",
               "r rec", "tab slot"]
        var line = ""
        for hint in hints where line.count + hint.count + 2 + tail.count <= width { line += hint + "  " }
        return line + tail
    }
}

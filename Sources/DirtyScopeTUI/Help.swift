/// The keys, in one table: the help overlay lists it and the key line samples it.
enum KeyHelp {
    struct Entry: Equatable {
        var keys: String
        var action: String
        /// For the two-column help of a small terminal.
        var short: String

        init(keys: String, action: String, short: String? = nil) {
            self.keys = keys
            self.action = action
            self.short = short ?? action
        }
    }

    static let shared: [Entry] = [
        Entry(keys: "arrows hjkl", action: "move the cursor one 64-page block", short: "move one 64-page block"),
        Entry(keys: "tab", action: "next slot (shift-tab: previous)", short: "next slot (shift-tab)"),
        Entry(keys: "z", action: "zoom: fit, 64, 8, 1 page per cell", short: "zoom: fit 64 8 1 p/cell"),
        Entry(keys: "t", action: "heatmap / address-by-time view", short: "heatmap / time view"),
        Entry(keys: "f", action: "false positives on/off (on at start)", short: "false positives on/off"),
        Entry(keys: "?", action: "this help; again: what each number means", short: "help; again: numbers"),
        Entry(keys: "q", action: "quit"),
    ]

    static let live: [Entry] = [
        Entry(keys: "m", action: "toggle manual protect / legacy", short: "manual / legacy mode"),
        Entry(keys: "o", action: "next clear policy (manual mode)", short: "next clear policy"),
        Entry(keys: "u", action: "untracked (dirty logging off) and back: the guest's baseline", short: "untracked and back"),
        Entry(keys: "space", action: "mark the cursor's block", short: "mark the cursor block"),
        Entry(keys: "v", action: "start / end a range of blocks", short: "start / end a range"),
        Entry(keys: "c", action: "CLEAR selected blocks (or the cursor's)", short: "CLEAR selected blocks"),
        Entry(keys: "a", action: "select the whole slot"),
        Entry(keys: "x", action: "drop the selection, then the cleared blocks", short: "drop selection / CLEAR"),
        Entry(keys: "p", action: "pause / resume"),
        Entry(keys: "n", action: "harvest one round while paused", short: "one round while paused"),
        Entry(keys: "1-6", action: "workload: sweep random hotset stripes wave idle", short: "workload: sweep...idle"),
        Entry(keys: "+ -", action: "double / halve the dirty rate", short: "double / halve writes"),
        Entry(keys: "s", action: "harvest interval in ms (0: back to back)", short: "harvest interval (ms)"),
        Entry(keys: "b", action: "copy bandwidth in MiB/s", short: "copy bandwidth (MiB/s)"),
        Entry(keys: "M", action: "migrate the guest live to --migrate-to (again: give it up)", short: "migrate / give up"),
        Entry(keys: "r", action: "start / stop recording"),
        Entry(keys: "R", action: "restart the guest (after a fault)", short: "restart the guest"),
    ]

    static let replay: [Entry] = [
        Entry(keys: "space p", action: "play / pause"),
        Entry(keys: ", . arrows", action: "one round back / forward", short: "one round back / on"),
        Entry(keys: "home end", action: "first / last round"),
        Entry(keys: "[ ] PgUp/Dn", action: "seek 10% back / forward", short: "seek 10% back / on"),
        Entry(keys: "< >", action: "speed x0.25 ... x16"),
        Entry(keys: "n N", action: "next / previous event (mode, CLEAR, note...)", short: "next / previous event"),
        Entry(keys: "hjkl up dn", action: "move the cursor one 64-page block", short: "move one 64-page block"),
    ]

    /// Replay's arrows left and right step rounds: its own line says how the cursor moves.
    static func entries(replay: Bool) -> [Entry] { replay ? Self.replay + shared.dropFirst() : live + shared }

    /// The bottom line's reminders, most useful first: as many as fit in `width` columns,
    /// always ending with "? help  q quit".
    static func keyLine(replay: Bool, width: Int = .max) -> String {
        let tail = "? help  q quit"
        let hints = replay
            ? ["space play", ",. step", "[] seek", "nN event", "<> speed", "z zoom", "t time", "f FP", "tab slot"]
            : ["m mode", "p pause", "c clear", "o policy", "space/v select", "x drop", "u untracked", "z zoom", "t time",
               "f FP", "r rec", "tab slot"]
        var line = ""
        for hint in hints where line.count + hint.count + 2 + tail.count <= width { line += hint + "  " }
        return line + tail
    }
}

/// The keys, in one table: the help overlay lists it and the key line samples it.
enum KeyHelp {
    struct Entry: Equatable {
        var keys: String
        var action: String
    }

    static let shared: [Entry] = [
        Entry(keys: "arrows hjkl", action: "move the cursor over 64-page blocks"),
        Entry(keys: "tab", action: "next slot (shift-tab: previous)"),
        Entry(keys: "z", action: "zoom: fit, 64, 8, 1 page per cell"),
        Entry(keys: "t", action: "heatmap / address-by-time view"),
        Entry(keys: "f", action: "overlay false positives"),
        Entry(keys: "?", action: "this help (any key closes)"),
        Entry(keys: "q", action: "quit"),
    ]

    static let live: [Entry] = [
        Entry(keys: "m", action: "toggle manual protect / legacy"),
        Entry(keys: "space", action: "mark the cursor's block"),
        Entry(keys: "v", action: "start / end a range of blocks"),
        Entry(keys: "c", action: "CLEAR selected blocks (or the cursor's)"),
        Entry(keys: "a", action: "select the whole slot"),
        Entry(keys: "x", action: "drop the selection"),
        Entry(keys: "p", action: "pause / resume"),
        Entry(keys: "n", action: "harvest one round while paused"),
        Entry(keys: "1-6", action: "workload: sweep random hotset stripes wave idle"),
        Entry(keys: "+ -", action: "double / halve the dirty rate"),
        Entry(keys: "s", action: "harvest interval in ms (0: back to back)"),
        Entry(keys: "b", action: "copy bandwidth in MiB/s"),
        Entry(keys: "r", action: "start / stop recording"),
        Entry(keys: "R", action: "restart the guest (after a fault)"),
    ]

    static let replay: [Entry] = [
        Entry(keys: "space p", action: "play / pause"),
        Entry(keys: "left right , .", action: "one round back / forward"),
        Entry(keys: "home end", action: "first / last round"),
        Entry(keys: "PgUp PgDn [ ]", action: "seek 10% back / forward"),
        Entry(keys: "< >", action: "speed x0.25 ... x16"),
        Entry(keys: "up down j k h l", action: "move the cursor"),
    ]

    static func entries(replay: Bool) -> [Entry] { (replay ? Self.replay : live) + shared }

    /// The bottom line's reminder.
    static func keyLine(replay: Bool) -> String {
        replay
            ? "space play  ,. step  [] seek  <> speed  z zoom  t time  f FP  tab slot  ? help  q quit"
            : "m mode  p pause  c clear  space/v select  z zoom  t time  f FP  r rec  tab slot  ? help  q quit"
    }
}

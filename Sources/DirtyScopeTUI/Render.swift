import DirtyScopeModel

/// The pure render: state and theme in, the whole screen out. No terminal involved.
enum Render {
    static func screen(_ state: AppState, theme: Theme) -> Screen {
        var screen = Screen(width: state.width, height: state.height)
        let layout = Layout(state: state)
        if layout.tooSmall {
            tooSmall(&screen, theme: theme)
            return screen
        }
        header(&screen, state, layout.header, theme)
        if let banner = layout.banner, let fault = state.session.fault {
            screen.fill(x: 0, y: banner.y, width: banner.width, height: 1, with: Cell(" ", theme.role(.alert)))
            screen.put(" GUEST FAULT: " + theme.glyphs.sanitize(fault) + " -- press R to restart the guest",
                       x: 0, y: banner.y, role: theme.role(.alert))
        }
        for panel in layout.panels { Heatmap.draw(&screen, state: state, panel: panel, theme: theme) }
        for y in layout.heat.y..<(layout.heat.y + layout.heat.height) {
            screen[layout.heat.width, y] = Cell(theme.glyphs.blockBoundary, theme.role(.border))
        }
        for y in layout.guest.y..<(layout.race.y + layout.race.height) {
            screen[layout.race.width, y] = Cell(theme.glyphs.blockBoundary, theme.role(.border))
        }
        GuestStrip.draw(&screen, state: state, in: layout.guest, theme: theme)
        RaceStrip.draw(&screen, state: state, in: layout.race, theme: theme)
        Metrics.draw(&screen, state: state, in: layout.metrics, theme: theme)
        Legend.draw(&screen, y: layout.legend.y, width: layout.legend.width, theme: theme,
                    showFalsePositives: state.showFalsePositives)
        statusLine(&screen, state, layout.status, theme)
        screen.put(KeyHelp.keyLine(replay: state.isReplay, width: layout.keys.width - 2), x: 1, y: layout.keys.y,
                   role: theme.role(.dim), maxWidth: layout.keys.width - 2)
        if let page = state.helpPage {
            if page == 0 { helpOverlay(&screen, state, theme) } else { metricsHelp(&screen, state, theme, page: page) }
        }
        return screen
    }

    static func tooSmall(_ screen: inout Screen, theme: Theme) {
        let lines = ["terminal too small: \(screen.width)x\(screen.height)",
                     "DirtyScope needs \(Layout.minWidth)x\(Layout.minHeight) or more"]
        let top = max(0, (screen.height - lines.count) / 2)
        for (i, line) in lines.enumerated() {
            screen.put(line, x: max(0, (screen.width - line.count) / 2), y: top + i, role: theme.role(.warn))
        }
    }

    /// The header: the mode label, the round and the replay/recording state always; the
    /// other fields as the width allows (the least important go first).
    private static func header(_ screen: inout Screen, _ state: AppState, _ rect: Rect, _ theme: Theme) {
        let role = theme.role(.header)
        let g = theme.glyphs
        screen.fill(x: 0, y: rect.y, width: rect.width, height: 1, with: Cell(" ", role))
        var modeText = state.setting.description
        switch state.session.mode {
        case .manual: modeText += " chunk \(state.session.clearChunk)"
        case .ring: modeText += " \(state.info.ringEntries) entries"
        case .legacy, .untracked: break
        }
        var right: [String] = []
        // The right end's room is the most its text can take in this kind of session, so
        // the fields on the left depend on the width alone, not on pausing or recording.
        let reserved: Int
        if let replay = state.replay {
            right.append("REPLAY \(replay.position + 1)/\(replay.roundCount) "
                         + (replay.playing ? "playing" : "paused") + " x" + speedText(replay.speed))
            reserved = "REPLAY \(replay.roundCount)/\(replay.roundCount) playing x0.25".count
        } else {
            if state.session.recordingPath != nil { right.append(g.recording) }
            switch state.session.migration?.phase {
            case .started: right.append("MIGRATING")
            case .completed: right.append("MIGRATED")
            case .failed, nil: break
            }
            if state.session.paused { right.append("PAUSED") }
            reserved = (g.recording + "  MIGRATING  PAUSED").unicodeScalars.count
        }
        let rightText = right.joined(separator: "  ")
        let rightX = rect.width - rightText.unicodeScalars.count - 1
        let leftWidth = rect.width - reserved - 3
        // The requested interval and what a round really took, start to start.
        var interval = "interval " + Format.interval(state.session.intervalNanos)
        if state.session.lastRound != nil {
            interval += ", real " + Format.seconds(state.session.lastRoundSeconds)
        }
        let left = Format.fit([
            ("DirtyScope", 3, false), ("guest " + g.sanitize(state.info.guestName), 6, false),
            ("\(state.info.vcpus) vCPU\(state.info.vcpus == 1 ? "" : "s")", 5, false),
            (modeText, 0, false), ("round \(state.roundIndex)", 0, false), (state.session.workload.summary, 4, false),
            (interval, 1, false), ("bw " + Format.bandwidth(state.session.bandwidth), 2, false),
        ], separator: g.separator, width: max(0, leftWidth - 1))
        screen.put(" " + left, x: 0, y: rect.y, role: role, maxWidth: max(0, min(leftWidth, rightX - 1)))
        screen.put(rightText, x: rightX, y: rect.y, role: role)
    }

    static func speedText(_ speed: Double) -> String {
        speed == speed.rounded() ? "\(Int(speed))" : "\(speed)"
    }

    private static func statusLine(_ screen: inout Screen, _ state: AppState, _ rect: Rect, _ theme: Theme) {
        if let prompt = state.prompt {
            let question = prompt.kind == .intervalMillis
                ? "harvest interval in ms (0 = back to back): " : "copy bandwidth in MiB/s: "
            let x = screen.put(" " + question, x: 0, y: rect.y, role: theme.role(.key))
            screen.put(prompt.text + "_", x: x, y: rect.y, role: theme.role(.bold))
            screen.put("   enter: set  esc: cancel", x: x + prompt.text.count + 1, y: rect.y, role: theme.role(.dim))
            return
        }
        if let message = state.message {
            screen.put(" " + theme.glyphs.sanitize(message.text), x: 0, y: rect.y, role: theme.role(message.role),
                       maxWidth: rect.width)
            return
        }
        // The hint can hold a recording's text (a migration's destination and reason): sanitised.
        screen.put(" " + theme.glyphs.sanitize(hint(state)), x: 0, y: rect.y, role: theme.role(.dim), maxWidth: rect.width)
    }

    /// What the status line says when nothing else does: who clears, and when.
    static func hint(_ state: AppState) -> String {
        // A migrated guest runs elsewhere: that stays said.
        if let m = state.session.migration, m.phase != .failed {
            return m.phase == .completed ? m.summary + "; this VM stays stopped" : m.summary + ": pre-copy, M gives it up"
        }
        let setting = state.setting
        switch setting.mode {
        case .manual: return "\(setting): \(setting.policy.explanation)"
        case .legacy: return "legacy: GET returns the bitmap and write-protects the slot in one call"
                + (state.session.clearPolicy == .auto ? "" : "; policy \(state.session.clearPolicy.rawValue) waits for manual mode")
        case .ring: return "ring: per-vCPU dirty rings, reset after each harvest"
        case .untracked: return "untracked: dirty logging off, nothing harvested: what the guest does without tracking"
        }
    }

    /// The help: every key, every glyph and (where there is room) every clear policy,
    /// in one column or two, whichever fits.
    private static func helpOverlay(_ screen: inout Screen, _ state: AppState, _ theme: Theme) {
        let g = theme.glyphs
        let keys = KeyHelp.entries(replay: state.isReplay)
        let glyphs = Legend.items(g, showFalsePositives: state.showFalsePositives, monochrome: theme.colors == .monochrome)
        let policies = ClearPolicy.allCases.map { KeyHelp.Entry(keys: $0.rawValue, action: $0.explanation) }
        let keyWidth = (keys + policies).map(\.keys.count).max()! + 2
        let entryWidth = max(keyWidth + keys.map(\.short.count).max()!, 6 + glyphs.map(\.explanation.count).max()!) + 2
        let room = screen.height - 2
        // Rows: title line, keys, a gap, glyphs title, glyphs, (gap, policies title, policies), bottom border.
        // The guest strip's explanation, wrapped to what the widest part of the box allows.
        let guestText = GuestStrip.helpLines(g, monochrome: theme.colors == .monochrome)
        func rows(_ columns: Int, policies p: Bool, guest: [String] = []) -> Int {
            let per = { (n: Int) in (n + columns - 1) / columns }
            return 2 + per(keys.count) + 2 + per(glyphs.count) + (p ? 2 + policies.count : 0) + (guest.isEmpty ? 0 : 2 + guest.count) + 1
        }
        let columns = rows(1, policies: false) <= room || screen.width < 2 * entryWidth + 4 ? 1 : 2
        let policyWidth = keyWidth + policies.map(\.action.count).max()! + 2
        let showPolicies = rows(columns, policies: true) <= room && !state.isReplay && policyWidth + 3 <= screen.width - 2
        let guestWidth = max(40, min(screen.width - 6, max(columns * entryWidth, showPolicies ? policyWidth : 0)))
        let guestLines = guestText.flatMap { Metrics.wrap($0, guestWidth) }
        let showGuest = rows(columns, policies: showPolicies, guest: guestLines) <= room
        // One column has room for the long descriptions where the terminal is wide enough.
        let longWidth = keyWidth + keys.map(\.action.count).max()! + 2
        let long = columns == 1 && longWidth + 3 <= screen.width - 2
        let boxWidth = min(screen.width - 2, max(columns * entryWidth, showPolicies ? policyWidth : 0, long ? longWidth : 0,
                                                 showGuest ? guestWidth : 0) + 3)
        let boxHeight = min(room, rows(columns, policies: showPolicies, guest: showGuest ? guestLines : []))
        let x0 = (screen.width - boxWidth) / 2, y0 = (screen.height - boxHeight) / 2
        let border = theme.role(.title)
        box(&screen, Rect(x: x0, y: y0, width: boxWidth, height: boxHeight), role: border, glyphs: g)
        screen.put(state.isReplay ? " keys (replay) " : " keys ", x: x0 + 2, y: y0, role: border)
        let pages = helpPageCount(state)
        screen.put(" ? next: what each number means (1/\(pages)) ", x: x0 + 2, y: y0 + boxHeight - 1, role: border,
                   maxWidth: boxWidth - 4)
        let bottom = y0 + boxHeight - 1
        var y = y0 + 1
        func table(_ count: Int, columns: Int = columns, _ draw: (Int, Int, Int, Int) -> Void) {
            let per = (count + columns - 1) / columns
            for i in 0..<count {
                let x = x0 + 2 + (i / per) * entryWidth, row = y + i % per
                guard row < bottom else { continue }
                draw(i, x, row, x0 + boxWidth - 1 - x)
            }
            y += per
        }
        func heading(_ text: String) {
            y += 1
            guard y < bottom else { return }
            screen.put(text, x: x0 + 2, y: y, role: border, maxWidth: boxWidth - 3)
            y += 1
        }
        y += 1
        table(keys.count) { i, x, row, room in
            screen.put(keys[i].keys, x: x, y: row, role: theme.role(.key), maxWidth: min(keyWidth, room))
            screen.put(long ? keys[i].action : keys[i].short, x: x + keyWidth, y: row, maxWidth: room - keyWidth)
        }
        heading("glyphs")
        table(glyphs.count) { i, x, row, room in
            var col = x
            for (glyph, role) in glyphs[i].sample {
                screen[col, row] = Cell(glyph, theme.role(role))
                col += 1
            }
            screen.put(glyphs[i].explanation, x: x + 6, y: row, maxWidth: room - 6)
        }
        if showPolicies {
            heading("clear policies (o cycles; manual mode only)")
            table(policies.count, columns: 1) { i, x, row, room in
                screen.put(policies[i].keys, x: x, y: row, role: theme.role(.key), maxWidth: min(keyWidth, room))
                screen.put(policies[i].action, x: x + keyWidth, y: row, maxWidth: room - keyWidth)
            }
        }
        if showGuest {
            heading("guest strip (under the heatmap): what tracking costs the guest")
            table(guestLines.count, columns: 1) { i, x, row, room in
                screen.put(guestLines[i], x: x, y: row, maxWidth: room)
            }
        }
    }

    /// The metrics panel's rows explained, as many to a page as the terminal holds.
    private static func metricsPages(width: Int, height: Int, bandwidth: UInt64) -> (pages: [[(String, String)]], labelWidth: Int) {
        let entries = Metrics.explanations(bandwidthLabel: Metrics.bandwidthCostLabel(bandwidth))
        let boxWidth = max(20, width - 2)
        let labelWidth = min(entries.map(\.label.count).max()! + 2, boxWidth / 3)
        let textWidth = max(8, boxWidth - 4 - labelWidth)
        let room = max(1, height - 5)   // the screen's margins, the borders, and the title's gap
        var pages: [[(String, String)]] = [[]]
        var used = 0
        for (label, text) in entries {
            let lines = Metrics.wrap(text, textWidth)
            if used + lines.count > room, !pages[pages.count - 1].isEmpty {
                pages.append([])
                used = 0
            }
            for (i, line) in lines.enumerated() { pages[pages.count - 1].append((i == 0 ? label : "", line)) }
            used += lines.count
        }
        return (pages, labelWidth)
    }

    /// Pages of the help: the keys and glyphs, then the metric rows.
    static func helpPageCount(_ state: AppState) -> Int {
        1 + metricsPages(width: state.width, height: state.height, bandwidth: state.session.bandwidth).pages.count
    }

    private static func metricsHelp(_ screen: inout Screen, _ state: AppState, _ theme: Theme, page: Int) {
        let g = theme.glyphs
        let (pages, labelWidth) = metricsPages(width: screen.width, height: screen.height, bandwidth: state.session.bandwidth)
        guard page - 1 < pages.count else { return }
        let lines = pages[page - 1]
        let boxWidth = screen.width - 2, boxHeight = min(screen.height - 2, lines.count + 3)
        let x0 = 1, y0 = (screen.height - boxHeight) / 2
        let border = theme.role(.title)
        box(&screen, Rect(x: x0, y: y0, width: boxWidth, height: boxHeight), role: border, glyphs: g)
        let total = pages.count + 1
        screen.put(" what each number means (\(page + 1)/\(total)) ", x: x0 + 2, y: y0, role: border)
        screen.put(page + 1 < total ? " ? next page, any other key closes " : " ? or any key closes ",
                   x: x0 + 2, y: y0 + boxHeight - 1, role: border, maxWidth: boxWidth - 4)
        for (i, (label, text)) in lines.enumerated() {
            let y = y0 + 2 + i
            guard y < y0 + boxHeight - 1 else { break }
            screen.put(label, x: x0 + 2, y: y, role: theme.role(.key), maxWidth: labelWidth)
            screen.put(g.sanitize(text), x: x0 + 2 + labelWidth, y: y, maxWidth: boxWidth - 3 - labelWidth)
        }
    }

    /// A blank box with a border, for the help's pages.
    private static func box(_ screen: inout Screen, _ r: Rect, role: Role, glyphs g: Glyphs) {
        screen.fill(x: r.x, y: r.y, width: r.width, height: r.height)
        for x in r.x..<(r.x + r.width) {
            screen[x, r.y] = Cell(g.horizontal, role)
            screen[x, r.y + r.height - 1] = Cell(g.horizontal, role)
        }
        for y in r.y..<(r.y + r.height) {
            screen[r.x, y] = Cell(g.blockBoundary, role)
            screen[r.x + r.width - 1, y] = Cell(g.blockBoundary, role)
        }
    }
}

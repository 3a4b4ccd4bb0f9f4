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
        Metrics.draw(&screen, state: state, in: layout.metrics, theme: theme)
        statusLine(&screen, state, layout.status, theme)
        screen.put(KeyHelp.keyLine(replay: state.isReplay), x: 1, y: layout.keys.y, role: theme.role(.dim),
                   maxWidth: layout.keys.width - 2)
        if state.showHelp { helpOverlay(&screen, state, theme) }
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

    private static func header(_ screen: inout Screen, _ state: AppState, _ rect: Rect, _ theme: Theme) {
        let role = theme.role(.header)
        let g = theme.glyphs
        screen.fill(x: 0, y: rect.y, width: rect.width, height: 1, with: Cell(" ", role))
        var modeText = state.session.mode.rawValue
        switch state.session.mode {
        case .manual: modeText += " chunk \(state.session.clearChunk)"
        case .ring: modeText += " \(state.info.ringEntries) entries"
        case .legacy: break
        }
        let left = [
            "DirtyScope", "guest " + g.sanitize(state.info.guestName), "\(state.info.vcpus) vCPU\(state.info.vcpus == 1 ? "" : "s")",
            modeText, "round \(state.roundIndex)", state.session.workload.summary,
            "interval " + Format.interval(state.session.intervalNanos), Format.bandwidth(state.session.bandwidth),
        ].joined(separator: g.separator)
        var right: [String] = []
        if state.session.recordingPath != nil { right.append(g.recording) }
        if let replay = state.replay {
            right.append("REPLAY \(replay.position + 1)/\(replay.roundCount) "
                         + (replay.playing ? "playing" : "paused") + " x" + speedText(replay.speed))
        } else if state.session.paused {
            right.append("PAUSED")
        }
        let rightText = right.joined(separator: "  ")
        let rightX = rect.width - rightText.unicodeScalars.count - 1
        screen.put(" " + left, x: 0, y: rect.y, role: role, maxWidth: max(0, rightX - 1))
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
        let g = theme.glyphs
        let legend: [(Unicode.Scalar, Role, String)] = [
            (g.dirty[3], .dirty, "dirty now"), (g.recent[2], .heat2, "recently dirty"),
            (g.falsePositive, .falsePositive, state.showFalsePositives ? "false positive (f)" : "false positive (f: off)"),
            (g.cleared, .cleared, "cleared"), (g.recent[3], .selected, "selected"), (" ", .cursor, "cursor"),
        ]
        var x = 1
        for (glyph, role, text) in legend where x < rect.width - 2 {
            screen[x, rect.y] = Cell(glyph, theme.role(role))
            x = screen.put(" " + text + "  ", x: x + 1, y: rect.y, role: theme.role(.dim), maxWidth: rect.width - x - 1)
        }
    }

    private static func helpOverlay(_ screen: inout Screen, _ state: AppState, _ theme: Theme) {
        let entries = KeyHelp.entries(replay: state.isReplay)
        let keyWidth = 17
        let entryWidth = keyWidth + (entries.map(\.action.count).max() ?? 0) + 2
        let columns = entries.count + 4 <= screen.height - 2 || screen.width < 2 * entryWidth + 4 ? 1 : 2
        let rows = (entries.count + columns - 1) / columns
        let boxWidth = min(screen.width - 2, columns * entryWidth + 3)
        let boxHeight = min(screen.height - 2, rows + 3)
        let x0 = (screen.width - boxWidth) / 2, y0 = (screen.height - boxHeight) / 2
        let border = theme.role(.title)
        screen.fill(x: x0, y: y0, width: boxWidth, height: boxHeight)
        for x in x0..<(x0 + boxWidth) {
            screen[x, y0] = Cell(theme.glyphs.horizontal, border)
            screen[x, y0 + boxHeight - 1] = Cell(theme.glyphs.horizontal, border)
        }
        for y in y0..<(y0 + boxHeight) {
            screen[x0, y] = Cell(theme.glyphs.blockBoundary, border)
            screen[x0 + boxWidth - 1, y] = Cell(theme.glyphs.blockBoundary, border)
        }
        screen.put(state.isReplay ? " keys (replay) " : " keys ", x: x0 + 2, y: y0, role: border)
        for (i, entry) in entries.enumerated() {
            let x = x0 + 2 + (i / rows) * entryWidth, y = y0 + 2 + i % rows
            guard y < y0 + boxHeight - 1 else { continue }
            let room = x0 + boxWidth - 1 - x
            screen.put(entry.keys, x: x, y: y, role: theme.role(.key), maxWidth: min(keyWidth, room))
            screen.put(entry.action, x: x + keyWidth, y: y, maxWidth: room - keyWidth)
        }
    }
}

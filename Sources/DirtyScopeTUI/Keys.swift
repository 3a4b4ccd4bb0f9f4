import DirtyScopeModel
#if canImport(Glibc)
import Glibc
#endif

/// The state update: one event in, the new state and the effects to carry out.
extension AppState {
    mutating func handle(_ event: UIEvent) -> [Effect] {
        switch event {
        case .key(let key):
            revision &+= 1
            return handle(key)
        case .resize(let w, let h):
            width = w
            height = h
            revision &+= 1
        case .tick(let nanos, let wall):
            nowNanos = nanos
            wallSeconds = wall
            if advanceMessages() { revision &+= 1 }
        case .record(let record):
            fold(record)
        case .signal(let number):
            return [.exit(.signal(number))]
        }
        return []
    }

    /// The geometry of the selected slot's panel.
    func selectedGeometry() -> HeatmapGeometry {
        let layout = Layout(state: self)
        let body = layout.panel(of: selectedSlot)?.body ?? Rect(x: 0, y: 0, width: 40, height: 8)
        return HeatmapGeometry(pages: info.slots[selectedSlot].pages, width: body.width, height: body.height,
                               zoomedPagesPerCell: pagesPerZoomedCell)
    }

    private mutating func handle(_ key: Key) -> [Effect] {
        if key == .char("q"), prompt == nil { return [.exit(.quit)] }
        if prompt != nil { return handlePrompt(key) }
        if let page = helpPage {
            // ? and the forward keys turn the page (closing after the last), back keys go back, others close.
            let pages = Render.helpPageCount(self)
            switch key {
            case .char("?"), .char(" "), .right, .char("l"), .pageDown, .tab: helpPage = page + 1 < pages ? page + 1 : nil
            case .left, .char("h"), .pageUp, .backTab: helpPage = max(0, page - 1)
            default: helpPage = nil
            }
            return []
        }
        if replay != nil, let effects = handleReplay(key) { return effects }
        switch key {
        case .char("?"): helpPage = 0
        case .left, .char("h"): moveCursor(by: -selectedGeometry().horizontalStep)
        case .right, .char("l"): moveCursor(by: selectedGeometry().horizontalStep)
        case .up, .char("k"): moveCursor(by: -selectedGeometry().verticalStep)
        case .down, .char("j"): moveCursor(by: selectedGeometry().verticalStep)
        case .home: moveCursor(by: -cursors[selectedSlot])
        case .end: moveCursor(by: info.slots[selectedSlot].blocks)
        case .tab: selectSlot(selectedSlot + 1)
        case .backTab: selectSlot(selectedSlot - 1)
        case .char("z"):
            zoom = (zoom + 1) % Self.zoomLevels.count
            if view == .time { view = .heatmap }
        case .char("t"): view = view == .heatmap ? .time : .heatmap
        case .char("f"): showFalsePositives.toggle()
        case .char("a"):
            selections[selectedSlot].setAll()
            rangeAnchor = nil
            say("selected all \(info.slots[selectedSlot].blocks) blocks of slot \(selectedSlot): c clears them, x drops the selection")
        case .char("x"):
            if rangeAnchor != nil || !selections[selectedSlot].isEmpty {
                selections[selectedSlot].clearAll()
                rangeAnchor = nil
            } else if session.slots[selectedSlot].comparison != nil {
                if replay != nil { say("replay: the cleared blocks are the recording's", .warn); return [] }
                say("slot \(selectedSlot): dropping the cleared blocks (no longer marked"
                    + (session.clearPolicy == .hand ? " nor re-protected)" : ")"))
                return [.send(.dropClearedBlocks(slot: selectedSlot))]
            } else {
                say("x: nothing selected and no cleared blocks in slot \(selectedSlot)")
            }
        case .char(" "):
            if rangeAnchor != nil { closeRange() } else { selections[selectedSlot][cursors[selectedSlot]].toggle() }
        case .char("v"):
            if rangeAnchor != nil { closeRange() } else { rangeAnchor = cursors[selectedSlot] }
        default:
            return handleSessionKey(key)
        }
        return []
    }

    /// Keys that steer the live session.
    private mutating func handleSessionKey(_ key: Key) -> [Effect] {
        guard case .char(let c) = key else { return [] }
        if replay != nil {
            if "mocpsbrR+-=123456uM".contains(c) { say("replay: '\(c)' steers a live session only", .warn) }
            return []
        }
        switch c {
        case "m":
            switch session.mode {
            case .ring:
                say("ring mode: switching to manual or legacy needs a restart (--mode)", .warn)
                return []
            case .manual: return [.send(.setMode(.legacy))]
            case .legacy, .untracked: return [.send(.setMode(.manual))]
            }
        case "u":
            // Untracked and back: the baseline the guest strip and the guest rows compare with.
            if session.mode == .untracked { return [.send(.setMode(trackedMode ?? .legacy))] }
            trackedMode = session.mode
            say("untracked: dirty logging off, nothing harvested; u turns tracking back on"
                + (session.mode == .ring ? " (ring mode: a new VM)" : ""), .good)
            return [.send(.setMode(.untracked))]
        case "o":
            let next = (requestedPolicy ?? session.clearPolicy).next
            requestedPolicy = next
            if session.mode != .manual {
                say("clear policy \(next.rawValue) set; it applies in manual mode (m): \(session.mode.rawValue) mode "
                    + (session.mode == .ring ? "resets rings instead" : "write-protects at GET"), .warn)
            }
            return [.send(.setClearPolicy(next))]
        case "c":
            var blocks = selectedBlocks(slot: selectedSlot).setPages
            if blocks.isEmpty { blocks = [cursors[selectedSlot]] }
            selections[selectedSlot].clearAll()
            rangeAnchor = nil
            say("CLEAR \(blocks.count) block\(blocks.count == 1 ? "" : "s") of slot \(selectedSlot)")
            return [.send(.clearBlocks(slot: selectedSlot, blocks: blocks))]
        case "p":
            let pausedNow = requestedPause ?? session.paused
            requestedPause = !pausedNow
            return [.send(pausedNow ? .resume : .pause)]
        case "n":
            if requestedPause ?? session.paused { return [.send(.step)] }
            say("n harvests one round while paused: press p first", .warn)
        case "1", "2", "3", "4", "5", "6":
            return [.send(.setWorkload(Workload.byKey[Int(String(c))! - 1]))]
        case "+", "=": return [.send(.scaleRate(2))]
        case "-": return [.send(.scaleRate(0.5))]
        case "s": prompt = Prompt(kind: .intervalMillis)
        case "b": prompt = Prompt(kind: .bandwidthMiB)
        case "r":
            if session.recordingPath != nil { return [.send(.stopRecording)] }
            return [.send(.startRecording(path: Self.defaultRecordingPath(wallSeconds: wallSeconds)))]
        case "R": return [.send(.restartGuest)]
        case "M":
            // The destination is the session's own (run --migrate-to); again while it runs gives it up.
            if session.migration?.phase == .started { return [.send(.cancelMigration)] }
            say("migrating: pre-copy rounds back to back, then the switch-over; M again gives it up", .good)
            return [.send(.migrate(MigrationPlan(to: "")))]
        default: break
        }
        return []
    }

    /// Replay transport keys; nil for keys replay shares with live.
    private mutating func handleReplay(_ key: Key) -> [Effect]? {
        guard var status = replay else { return nil }
        defer { replay = status }
        let last = status.roundCount - 1
        let tenth = max(1, status.roundCount / 10)
        func seek(_ target: Int) -> [Effect] {
            let clamped = min(max(0, target), last)
            return clamped == status.position || last < 0 ? [] : [.seek(clamped)]
        }
        switch key {
        case .char(" "), .char("p"):
            status.playing.toggle()
            if status.playing, status.position >= last { status.playing = false; say("end of recording") }
        case .left, .char(","): status.playing = false; return seek(status.position - 1)
        case .right, .char("."): status.playing = false; return seek(status.position + 1)
        case .home: return seek(0)
        case .end: return seek(last)
        case .pageUp, .char("["): return seek(status.position - tenth)
        case .pageDown, .char("]"): return seek(status.position + tenth)
        case .char("n"): status.playing = false; return [.seekEvent(forward: true)]
        case .char("N"): status.playing = false; return [.seekEvent(forward: false)]
        case .char("<"): status.speedIndex = max(0, status.speedIndex - 1)
        case .char(">"): status.speedIndex = min(ReplayStatus.speeds.count - 1, status.speedIndex + 1)
        default: return nil
        }
        return []
    }

    private mutating func handlePrompt(_ key: Key) -> [Effect] {
        guard var p = prompt else { return [] }
        switch key {
        case .escape:
            prompt = nil
        case .backspace:
            if !p.text.isEmpty { p.text.removeLast() }
            prompt = p
        case .char(let c) where c.isASCII && (c.isNumber || c == "."):
            if p.text.count < 12 { p.text.append(c) }
            prompt = p
        case .enter:
            prompt = nil
            guard let value = Double(p.text), value.isFinite, value >= 0 else {
                say("'\(p.text)' is not a number", .warn)
                return []
            }
            switch p.kind {
            case .intervalMillis:
                guard value <= 60_000 else { say("interval \(p.text) ms is over the limit of 60000 ms", .warn); return [] }
                return [.send(.setIntervalNanos(UInt64((value * 1e6).rounded())))]
            case .bandwidthMiB:
                guard value > 0, value <= 1_048_576 else {
                    say("bandwidth \(p.text) MiB/s is outside 0 < MiB/s <= 1048576", .warn)
                    return []
                }
                return [.send(.setBandwidth(UInt64((value * 1_048_576).rounded())))]
            }
        default:
            break
        }
        return []
    }

    private mutating func moveCursor(by delta: Int) {
        let blocks = info.slots[selectedSlot].blocks
        guard blocks > 0 else { return }
        cursors[selectedSlot] = min(max(0, cursors[selectedSlot] + delta), blocks - 1)
    }

    private mutating func selectSlot(_ slot: Int) {
        guard !session.slots.isEmpty else { return }
        closeRange()
        selectedSlot = (slot + session.slots.count) % session.slots.count
    }

    /// Adds the open `v` range to the selection.
    private mutating func closeRange() {
        guard rangeAnchor != nil else { return }
        selections[selectedSlot] = selectedBlocks(slot: selectedSlot)
        rangeAnchor = nil
    }

    /// `dirtyscope-YYYYMMDD-HHMMSS.dsrec` in the current directory, local time.
    static func defaultRecordingPath(wallSeconds: Double) -> String {
        var t = time_t(wallSeconds)
        var parts = tm()
        localtime_r(&t, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "dirtyscope-\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))-"
            + "\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec)).dsrec"
    }
}

@testable import DirtyScopeTUI
import DirtyScopeModel
import Pages
import Synchronization

/// A session controller that remembers what it was sent.
final class FakeController: SessionController {
    private let sent = Mutex<[SessionCommand]>([])
    func send(_ command: SessionCommand) { sent.withLock { $0.append(command) } }
    var commands: [SessionCommand] { sent.withLock { $0 } }
}

/// A recording held in memory, counting the rounds it decodes.
final class FakeRecording: RecordedSession {
    let info: SessionInfo
    let entries: [(events: [TimedEvent], round: Round)]
    let trailingEvents: [TimedEvent]
    let warnings: [String] = []
    private(set) var decoded = 0

    init(info: SessionInfo, entries: [(events: [TimedEvent], round: Round)], trailing: [TimedEvent] = []) {
        self.info = info
        self.entries = entries
        trailingEvents = trailing
    }

    var roundCount: Int { entries.count }

    func entry(at i: Int) throws -> (events: [TimedEvent], round: Round) {
        decoded += 1
        return entries[i]
    }

    func metrics(at i: Int) throws -> RoundMetrics { entries[i].round.metrics }

    func eventCount(before i: Int) -> Int { events(before: i).count }

    func events(before i: Int) -> [TimedEvent] {
        entries[0..<min(i, entries.count)].flatMap(\.events)
    }

    func totals(through i: Int) -> MetricValues {
        var totals = MetricValues()
        for entry in entries[0...i] { totals.add(entry.round.values) }
        return totals
    }
}

enum Fixture {
    /// Slots of these page counts, 4 KiB pages.
    static func info(pages: [Int] = [4096, 2048], mode: HarvestMode = .legacy) -> SessionInfo {
        var address: UInt64 = 0
        let slots = pages.enumerated().map { i, n in
            defer { address += UInt64(n) * 4096 }
            return SlotInfo(index: i, kvmSlot: UInt32(i), guestPhysicalAddress: address, pages: n)
        }
        return SessionInfo(toolVersion: "test", hostKernel: "6.8", pageSize: 4096, slots: slots, vcpus: 2,
                           guestName: "workload", capabilities: [:], mode: mode, clearChunk: .pages(64),
                           workload: WorkloadSettings(workload: .sweep), intervalNanos: 100_000_000,
                           bandwidth: 256 << 20, ringEntries: mode == .ring ? 4096 : 0,
                           falsePositiveMethod: .stamp, startTime: 0)
    }

    /// A round where slot `i` reported `dirty[i]` pages, `fps[i]` of them false positives.
    static func round(_ index: UInt64, info: SessionInfo, dirty: [[Int]], fps: [[Int]] = [], missed: Int? = nil) -> Round {
        let bitmaps = info.slots.map { slot -> SlotBitmaps in
            var b = SlotBitmaps(pages: slot.pages)
            for page in slot.index < dirty.count ? dirty[slot.index] : [] { b.reported[page] = true }
            for page in slot.index < fps.count ? fps[slot.index] : [] { b.falsePositives[page] = true }
            return b
        }
        var m = RoundMetrics(mode: info.mode, clearChunk: info.clearChunk)
        m.index = index
        m.startNanos = index * 100_000_000
        m[.durationNanos] = 2_000_000
        m[.guestWrites] = 1000
        m[.writeProtectFaults] = 50
        m.slots = info.slots.map { SlotMetrics(slot: $0.index) }
        m.verification = missed.map { Verification(missedPerSlot: [$0], comparedPages: 6144) }
        if let missed { m.slots[0][.missedPages] = missed }
        return Round(counting: m, bitmaps: bitmaps)
    }

    static func event(_ event: SessionEvent) -> UIEvent { .record(.event(TimedEvent(nanos: 0, event: event))) }
}

/// A live app with a fake controller at a terminal size.
struct Harness {
    let app: App
    let controller = FakeController()

    init(info: SessionInfo = Fixture.info(), width: Int = 160, height: Int = 40,
         glyphs: GlyphMode = .unicode, colors: ColorMode = .colors256) {
        app = App(info: info, controller: controller, theme: Theme(glyphs: glyphs, colors: colors))
        _ = app.handle(.resize(width: width, height: height))
        _ = app.handle(.tick(nanos: 1_000_000_000, wallSeconds: 1_700_000_000))
    }

    @discardableResult
    func press(_ keys: String) -> TUIExit? {
        var exit: TUIExit?
        for c in keys { exit = app.handle(.key(.char(c))) ?? exit }
        return exit
    }

    func press(_ key: Key) { _ = app.handle(.key(key)) }

    func send(_ event: UIEvent) { _ = app.handle(event) }

    var screen: Screen { app.render() }
    var text: String { screen.text }

    /// The rendered rows that contain `needle`.
    func lines(containing needle: String) -> [String] { screen.lines.filter { $0.contains(needle) } }
}

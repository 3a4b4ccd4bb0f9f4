/// A recorded session opened for replay: random access by round. Implemented by the
/// recording reader; the UI's replay view reads through it and needs no /dev/kvm.
public protocol RecordedSession: AnyObject {
    /// The header: what was recorded, on which host, with which settings.
    var info: SessionInfo { get }
    /// Whole rounds in the file.
    var roundCount: Int { get }
    /// Round `i` (0-based) with the events recorded after round `i - 1` and before it.
    func entry(at i: Int) throws -> (events: [TimedEvent], round: Round)
    /// Round `i`'s metrics alone, its bitmaps left undecoded.
    func metrics(at i: Int) throws -> RoundMetrics
    /// Events after the last round.
    var trailingEvents: [TimedEvent] { get }
    /// Totals over rounds `0...i`, without decoding their bitmaps (cheap: for seeking).
    func totals(through i: Int) -> MetricValues
    /// Every event recorded before round `i` (0-based), without decoding any round: a seek
    /// folds them, so settings changed long before its window of rounds still show.
    func events(before i: Int) -> [TimedEvent]
    /// How many events `events(before: i)` holds, without copying them.
    func eventCount(before i: Int) -> Int
    /// What went wrong while opening (truncation, corrupt records skipped), a line each.
    var warnings: [String] { get }
}

import Pages

/// One slot's false-positive bitmap, reused from round to round: a new round clears only
/// the words the last one set (false positives are few) instead of allocating and zeroing
/// a whole bitmap (256 KiB at 8 GiB). A round hands `bitmap` on in its `SlotBitmaps`; while
/// a reader still holds that round, the first write here copies the words (value
/// semantics), so a round once handed on never changes.
struct FalsePositiveBuffer {
    private(set) var bitmap: DirtyBitmap
    /// The words of `bitmap` that are not zero.
    private var setWords: [Int] = []

    init(pageCount: Int) {
        bitmap = DirtyBitmap(pageCount: pageCount)
    }

    /// Marks `bits` of word `w` as false positives.
    mutating func add(_ bits: UInt64, word w: Int) {
        let old = bitmap.word(w)
        if old == 0 { setWords.append(w) }
        bitmap.setWord(w, old | bits)
    }

    /// Pages marked: only the words set are counted (a whole-bitmap count walks 32,768
    /// words at 8 GiB).
    var count: Int { setWords.reduce(0) { $0 + bitmap.word($1).nonzeroBitCount } }

    /// Clears every mark, for a new round.
    mutating func reset() {
        for w in setWords { bitmap.setWord(w, 0) }
        setWords.removeAll(keepingCapacity: true)
    }
}

@testable import DirtyScopeTUI
import Testing

@Suite struct EscapeSequenceTests {
    private func decode(_ text: String) -> EscapeSequence {
        EscapeSequence.decode(text.unicodeScalars.map(\.value))
    }

    /// What xterm, tmux, rxvt, PuTTY and the Linux console send for the keys DirtyScope
    /// uses, after the ESC, whatever TERM's terminfo entry expects.
    @Test(arguments: [
        ("[1~", Key.home), ("[4~", .end), ("[7~", .home), ("[8~", .end), ("[H", .home), ("[F", .end),
        ("OH", .home), ("OF", .end), ("[5~", .pageUp), ("[6~", .pageDown), ("[1;5H", .home), ("[4;2~", .end),
        ("[A", .up), ("[B", .down), ("[C", .right), ("[D", .left), ("OA", .up), ("OD", .left), ("[1;5C", .right),
        ("[Z", .backTab), ("OM", .enter), ("Op", .char("0")), ("Ou", .char("5")), ("Oy", .char("9")), ("On", .char(".")),
    ])
    func knownSequencesAreKeys(sequence: String, key: Key) {
        #expect(decode(sequence) == .key(key), "ESC \(sequence)")
    }

    /// Anything else is taken whole and dropped: none of its bytes becomes a key.
    @Test(arguments: ["[2~", "[3~", "[15~", "[200~", "[201~", "[<0;12;7M", "[I", "[O", "[?1;2c", "OP", "[a", "Oa",
                      "[M !!", "x", "q", "[1;5\u{7}"])
    func otherSequencesAreDropped(sequence: String) {
        #expect(decode(sequence) == .dropped, "ESC \(sequence)")
    }

    /// A sequence cut short asks for more rather than guessing.
    @Test(arguments: ["", "[", "[1", "[1;", "[1;5", "O", "[M", "[M !", "[<0;12"])
    func partialSequencesWaitForMore(sequence: String) {
        #expect(decode(sequence) == .incomplete, "ESC \(sequence)")
    }
}

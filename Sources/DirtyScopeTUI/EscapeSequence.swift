/// What the terminal sent after an ESC that its terminfo entry did not match: the xterm,
/// rxvt and VT220 sequences for the keys DirtyScope uses are recognised whatever `TERM`
/// says (tmux sends `ESC [ 1 ~` for Home under a `TERM=xterm-256color` that expects
/// `ESC O H`), and any other sequence is consumed whole and dropped, never split into
/// keys (its `[` would seek, its `1` switch the workload).
///
/// Shapes (ECMA-48): CSI is `ESC [`, parameter bytes 0x30-0x3F, intermediate bytes
/// 0x20-0x2F, one final byte 0x40-0x7E; SS3 is `ESC O` and one byte; an X10 mouse report
/// is `ESC [ M` and three bytes; `ESC` and any other byte (Alt and a key) is two bytes.
enum EscapeSequence: Equatable {
    /// More bytes are needed to know.
    case incomplete
    case key(Key)
    /// A whole sequence that means nothing here.
    case dropped

    /// Decodes `bytes`, what followed the ESC so far.
    static func decode(_ bytes: [UInt32]) -> EscapeSequence {
        guard let first = bytes.first else { return .incomplete }
        switch first {
        case 0x5b: return csi(Array(bytes.dropFirst()))     // [
        case 0x4f:                                            // O
            guard bytes.count >= 2 else { return .incomplete }
            return ss3(bytes[1])
        default:
            return .dropped
        }
    }

    private static func csi(_ body: [UInt32]) -> EscapeSequence {
        var params: [UInt32] = []
        for (i, b) in body.enumerated() {
            switch b {
            case 0x20...0x3f:
                params.append(b)
            case 0x40...0x7e:
                // ESC [ M b x y: an X10 mouse report carries three raw bytes after its final.
                if b == 0x4d && params.isEmpty { return body.count - i - 1 >= 3 ? .dropped : .incomplete }
                return final(b, params: params)
            default:
                return .dropped   // not a CSI byte: the sequence is broken, drop what came
            }
        }
        return .incomplete
    }

    /// A CSI sequence's meaning from its final byte and parameters (modifiers such as
    /// `1;5` for Ctrl are ignored: Ctrl-Home is Home).
    private static func final(_ b: UInt32, params: [UInt32]) -> EscapeSequence {
        let text = String(String.UnicodeScalarView(params.compactMap(Unicode.Scalar.init)))
        let first = Int(text.split(separator: ";", omittingEmptySubsequences: false).first ?? "")
        if let key = cursorKey(b) { return .key(key) }
        switch Unicode.Scalar(b).map(Character.init) {
        case "Z": return .key(.backTab)
        case "~":
            switch first {
            case 1, 7: return .key(.home)      // VT220/tmux Home; rxvt Home
            case 4, 8: return .key(.end)       // VT220/tmux End; rxvt End
            case 5: return .key(.pageUp)
            case 6: return .key(.pageDown)
            default: return .dropped           // Insert, Delete, function keys, paste marks
            }
        default:
            return .dropped
        }
    }

    /// The final byte the CSI and SS3 forms of the arrows, Home and End share.
    private static func cursorKey(_ b: UInt32) -> Key? {
        switch Unicode.Scalar(b).map(Character.init) {
        case "A": return .up
        case "B": return .down
        case "C": return .right
        case "D": return .left
        case "H": return .home
        case "F": return .end
        default: return nil
        }
    }

    private static func ss3(_ b: UInt32) -> EscapeSequence {
        if (0x70...0x79).contains(b) { return .key(.char(Character(Unicode.Scalar(b - 0x40)!))) }   // keypad 0-9
        if let key = cursorKey(b) { return .key(key) }
        switch Unicode.Scalar(b).map(Character.init) {
        case "M": return .key(.enter)          // the keypad in application mode: Enter, . + -
        case "n": return .key(.char("."))
        case "k": return .key(.char("+"))
        case "m": return .key(.char("-"))
        default: return .dropped               // F1-F4, rxvt's Ctrl-arrows
        }
    }
}

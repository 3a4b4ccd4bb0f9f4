import ArgumentParser
import DirtyScopeTUI

/// How the heatmap draws, for `run` and `replay`.
struct DisplayOptions: ParsableArguments {
    @Flag(help: "Draw with ASCII only.")
    var ascii = false
    @Flag(help: "Draw without colors (as with NO_COLOR).")
    var mono = false

    /// The UI's options; what is not forced here is detected from the locale and terminal.
    var tuiOptions: TUIOptions {
        var options = TUIOptions()
        if ascii { options.glyphs = .ascii }
        if mono { options.colors = .monochrome }
        return options
    }
}

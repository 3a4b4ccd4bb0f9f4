import ArgumentParser
import Glibc

@main
struct DirtyScopeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dirtyscope",
        abstract: "See KVM dirty-page tracking: a live heatmap of every memslot's dirty bitmap, with ground-truth false positives.",
        discussion: """
            With no subcommand, `dirtyscope` is `dirtyscope run`: it starts a small guest on /dev/kvm and opens the live heatmap.
            Keys in the heatmap: m manual protect, o clear policy, arrows/hjkl move, space mark, v range, c CLEAR, p pause, ? help, q quit.
            """,
        version: "0.1.0",
        subcommands: [RunCommand.self, BenchCommand.self, RecordCommand.self, ReplayCommand.self, InspectCommand.self,
                      ExportCommand.self, PlotCommand.self, CapsCommand.self, ReceiveCommand.self, MigrateCommand.self],
        defaultSubcommand: RunCommand.self
    )

    /// Like ParsableCommand's main, but bad command lines exit with 2, as every other bad
    /// input does (swift-argument-parser's own code for them is 64).
    static func main() {
        // A closed pipe (`export | head`) is a write error that commands report or end on,
        // not a signal that kills the process mid-line.
        signal(SIGPIPE, SIG_IGN)
        // Past `ulimit -f`, write(2) fails with EFBIG and the recording reports it.
        signal(SIGXFSZ, SIG_IGN)
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                let message = fullMessage(for: error)
                _ = (message + "\n").withCString { write(2, $0, strlen($0)) }
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}

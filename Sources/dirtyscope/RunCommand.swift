import ArgumentParser
import DirtyScopeCore
import DirtyScopeModel
import DirtyScopeRecording
import DirtyScopeTUI
import Foundation

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a guest and open the live heatmap (the default command).",
        discussion: "Defaults: two memslots (128 MiB and 512 MiB), two vCPUs, the hotset workload, legacy mode, the consumer copying at 64 MiB/s.\n\nKeys in the heatmap:\n" + TerminalUI.keyList(replay: false))

    @OptionGroup var session: SessionOptions
    @Option(help: "Record the session to this replay file from the start.")
    var record: String?
    @Option(name: .customLong("migrate-to"), help: ArgumentHelp("Where M migrates the guest: unix:PATH or HOST:PORT (a `dirtyscope receive --listen`).", valueName: "ADDR"))
    var migrateTo: String?
    @Option(name: .customLong("downtime-limit"), parsing: .unconditional, help: "With --migrate-to: switch over once the pages left could be sent within this long.")
    var downtimeLimit = "300ms"
    @OptionGroup var display: DisplayOptions

    func run() throws {
        // A bad value is named first, terminal or not: it is what the user must change.
        var config = try reportingErrors { () throws(SessionError) -> SessionConfig in
            var c = try self.session.sessionConfig()
            if let migrateTo {
                _ = try MigrationAddress(parsing: migrateTo)
                let limit = try parseInterval(downtimeLimit, what: "--downtime-limit")
                guard limit > 0 else { throw .invalidArgument("--downtime-limit \(downtimeLimit) must be above 0") }
                c.migration = MigrationPlan(to: migrateTo, downtimeLimitNanos: limit)
            }
            return c
        }
        guard isatty(STDOUT_FILENO) == 1, isatty(STDIN_FILENO) == 1 else {
            printError(TUIError.notATerminal.description)
            throw ExitCode(2)
        }
        let (session, queue) = try reportingErrors { () throws(SessionError) -> (Session, RecordQueue) in
            let host = try KVMSystemInfo.open()
            config.ringEntries = resolveRingEntries(self.session.ringEntries, host: host)
            try checkHostSupports([config.mode], ringEntries: config.ringEntries, system: host)
            let s = try Session(config: config, system: host.system)
            s.recorderFactory = { path, info in try RecordingWriter(path: path, info: info) }
            let q = RecordQueue()
            s.subscribe(q)
            if let path = record {
                do {
                    s.attachRecorder(try RecordingWriter(path: path, info: s.info), path: path)
                } catch {
                    throw .invalidArgument("cannot record: \(error)")
                }
            }
            return (s, q)
        }
        session.start()
        let exit: TUIExit
        do {
            exit = try TerminalUI.runLive(info: session.info, controller: session, records: queue, options: display.tuiOptions)
        } catch {
            session.stop()
            printError("\(error)")
            throw ExitCode(1)
        }
        session.stop()
        if case .signal(let n) = exit { throw ExitCode(128 + n) }
    }
}

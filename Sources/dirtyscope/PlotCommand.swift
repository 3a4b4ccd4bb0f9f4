import ArgumentParser
import DirtyScopePlot
import DirtyScopeRecording
import Foundation

struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Draw a recording as a self-contained SVG: heatmap, false positives, latency or guest stalls (needs no /dev/kvm).")

    @Argument(help: "The replay file.")
    var file: String
    @Option(name: .shortAndLong, help: "The SVG to write ('-' for stdout); default: FILE's name with -KIND.svg, here.")
    var output: String?
    @Option(help: "What to draw: heatmap (address x round), fp (false-positive fraction), latency (GET and CLEAR), stall (what tracking cost the guest: throughput per vCPU, one panel per mode).")
    var kind = "heatmap"
    @Option(parsing: .unconditional, help: "Data slot to draw (heatmap), as inspect lists them.")
    var slot = "0"
    @Option(parsing: .unconditional, help: "Round numbers to draw, A..B (as the UI and inspect number them); default: all.")
    var rounds: String?

    func run() throws {
        var options = Plot.Options()
        guard let k = Plot.Kind(rawValue: kind) else {
            printError("--kind '\(kind)' is not one of \(Plot.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
            throw ExitCode(2)
        }
        options.kind = k
        guard let s = Int(slot), s >= 0 else {
            printError("--slot '\(slot)' is not a slot number (0 or more)")
            throw ExitCode(2)
        }
        options.slot = s
        if let rounds {
            let parts = rounds.components(separatedBy: "..")
            guard parts.count == 2, let a = UInt64(parts[0]), let b = UInt64(parts[1]), a <= b else {
                printError("--rounds '\(rounds)' is not A..B with round numbers A <= B (for example 100..200)")
                throw ExitCode(2)
            }
            options.rounds = a...b
        }
        let reader = try openRecording(file)
        let svg: String
        do {
            svg = try Plot.render(reader, options)
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
        let path = output ?? defaultPath(kind: k)
        if path == "-" {
            FileHandle.standardOutput.write(Data(svg.utf8))
            return
        }
        do {
            try Data(svg.utf8).write(to: URL(fileURLWithPath: path))
        } catch {
            printError("cannot write \(path): \(error.localizedDescription)")
            throw ExitCode(1)
        }
        print("wrote \(path) (\(svg.utf8.count / 1024) KiB)")
    }

    private func defaultPath(kind: Plot.Kind) -> String {
        var name = URL(fileURLWithPath: file).lastPathComponent
        if name.hasSuffix(".dsrec") { name.removeLast(6) }
        return "\(name)-\(kind.rawValue).svg"
    }
}

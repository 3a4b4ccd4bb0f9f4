import ArgumentParser
struct RunCommand: ParsableCommand { static let configuration = CommandConfiguration(commandName: "run"); func run() throws {} }
struct RecordCommand: ParsableCommand { static let configuration = CommandConfiguration(commandName: "record") }
struct ReplayCommand: ParsableCommand { static let configuration = CommandConfiguration(commandName: "replay") }
struct InspectCommand: ParsableCommand { static let configuration = CommandConfiguration(commandName: "inspect") }
struct ExportCommand: ParsableCommand { static let configuration = CommandConfiguration(commandName: "export") }

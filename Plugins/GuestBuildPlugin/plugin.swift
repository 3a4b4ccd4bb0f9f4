import Foundation
import PackagePlugin

/// Builds every guest under `Guests/` (one folder per guest, freestanding C) with the
/// toolchain's own clang and ld.lld into a flat binary and embeds the binaries in the
/// `GuestImages` module as generated Swift source. `GuestEmbed` runs the compiler and
/// linker, so the generated Swift file is the command's only output (intermediate
/// objects would otherwise become resources of the target).
@main
struct GuestBuildPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let guests = context.package.directoryURL.appending(path: "Guests")
        let include = guests.appending(path: "include")
        let linkerScript = guests.appending(path: "guest.ld")
        let fm = FileManager.default
        func path(_ url: URL) -> String { url.path(percentEncoded: false) }

        let headers = try fm.contentsOfDirectory(at: include, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "h" }
        let folders = try fm.contentsOfDirectory(at: guests, includingPropertiesForKeys: [.isDirectoryKey])
            .filter { (try? $0.resourceValues(forKeys: [.isDirectoryKey]).isDirectory) == true }
            .filter { $0.lastPathComponent != "include" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }

        var inputs = headers + [linkerScript]
        var guestArguments: [String] = []
        for folder in folders {
            let sources = try fm.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
                .filter { ["c", "S"].contains($0.pathExtension) }
                .sorted { $0.lastPathComponent < $1.lastPathComponent }
            guard !sources.isEmpty else { continue }
            inputs += sources
            guestArguments.append(folder.lastPathComponent + "=" + sources.map(path).joined(separator: ","))
        }

        let work = context.pluginWorkDirectoryURL
        let generated = work.appending(path: "GuestImages+Generated.swift")
        return [.buildCommand(
            displayName: "Building and embedding \(guestArguments.count) guest(s)",
            executable: try context.tool(named: "GuestEmbed").url,
            arguments: [
                "--clang", path(try context.tool(named: "clang").url),
                "--lld", path(try context.tool(named: "ld.lld").url),
                "--include", path(include),
                "--linker-script", path(linkerScript),
                "--work", path(work),
                "--output", path(generated),
            ] + guestArguments,
            inputFiles: inputs,
            outputFiles: [generated]
        )]
    }
}

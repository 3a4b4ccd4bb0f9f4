import CKVM
import DirtyScopeCore
import KVM
import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// What the CLI needs to know of the host before building a VM.
struct KVMSystemInfo {
    let system: KVMSystem
    var manualProtect: Bool { system.manualProtectFlags.contains(.enable) }
    var maxRingEntries: Int { system.maxDirtyRingBytes / Int(CKVM_SIZEOF_DIRTY_GFN) }

    /// Opens /dev/kvm or fails with the fix in the message (exit code 1).
    static func open() throws(SessionError) -> KVMSystemInfo {
        do { return KVMSystemInfo(system: try KVMSystem()) } catch { throw .kvm(error) }
    }
}

/// Prints `message` as one line on stderr, prefixed with the tool's name.
func printError(_ message: String) {
    let line = "dirtyscope: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// Runs `body`, turning a SessionError into a one-line message on stderr and its exit code.
func reportingErrors<R>(_ body: () throws(SessionError) -> R) throws -> R {
    do {
        return try body()
    } catch {
        printError(error.description)
        throw ExitCode(error.exitCode)
    }
}

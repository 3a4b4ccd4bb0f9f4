import ArgumentParser
import DirtyScopeCore
import KVM
import Foundation
import DirtyScopeModel

struct CapsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "caps",
        abstract: "Print what this host's KVM offers for dirty tracking.")

    func run() throws {
        let text = try reportingErrors { () throws(SessionError) -> String in
            let host = try KVMSystemInfo.open()
            return try capsReport(host.system)
        }
        print(text, terminator: "")
    }
}

/// The `caps` report: API version, manual protect flags, dirty ring limits, memslot
/// and vCPU limits, and the binary statistics of a throwaway VM and vCPU.
func capsReport(_ system: KVMSystem) throws(SessionError) -> String {
    var out = "KVM dirty tracking on \(hostKernelRelease()) (/dev/kvm)\n"
    func row(_ name: String, _ value: String) { out += "  " + name.padding(toLength: 28, withPad: " ", startingAt: 0) + value + "\n" }
    row("API version", "\(system.apiVersion)")
    row("page size", "\(PageSize.system) bytes")
    let flags = system.manualProtectFlags
    row("MANUAL_DIRTY_LOG_PROTECT2", flags.isEmpty ? "no" : "0x\(String(flags.rawValue, radix: 16)): \(flags.names.joined(separator: " | "))")
    let acqRel = system.check(.dirtyLogRingAcqRel), plain = system.check(.dirtyLogRing)
    let ringBytes = max(acqRel, plain)
    row("dirty ring", ringBytes == 0 ? "no" : "max \(ringBytes / 16) entries (\(formatBytes(UInt64(ringBytes)))) per vCPU")
    row("dirty ring ACQ_REL", acqRel > 0 ? "yes" : "no")
    row("dirty ring WITH_BITMAP", system.check(.dirtyLogRingWithBitmap) > 0 ? "yes" : "no")
    row("memslots", "\(system.maxMemslots) per address space, \(max(1, system.check(.multiAddressSpace))) address space(s)")
    row("vCPUs", "max \(system.maxVCPUs), recommended \(system.check(.nrVCPUs))")
    row("immediate exit", system.check(.immediateExit) > 0 ? "yes" : "no")
    let hasStats = system.check(.binaryStatsFD) > 0
    row("binary stats", hasStats ? "yes" : "no")
    if hasStats {
        do {
            let vm = try system.makeVM()
            let vmStats = try vm.stats()
            let vcpu = try vm.makeVCPU(id: 0)
            let vcpuStats = try vcpu.stats()
            out += "  VM stats (\(vmStats.names.count)):\n" + wrap(vmStats.names)
            out += "  vCPU stats (\(vcpuStats.names.count)):\n" + wrap(vcpuStats.names)
        } catch {
            throw .kvm(error)
        }
    }
    return out
}

private func wrap(_ names: [String], width: Int = 96) -> String {
    var lines: [String] = []
    var line = "   "
    for n in names {
        if line.count + n.count + 1 > width { lines.append(line); line = "   " }
        line += " " + n
    }
    lines.append(line)
    return lines.joined(separator: "\n") + "\n"
}

// swift-tools-version:6.0
import PackageDescription

// Layers, each a target; arrows point one way:
//   Pages (dirty bitmaps, page size; no dependencies)
//   Pages + CKVM (C shim over <linux/kvm.h>) -> KVM
//   Pages -> DirtyScopeModel (value types: the metric table, rounds, events, settings, the mode and policy tables)
//   DirtyScopeModel -> DirtyScopeRecording (replay files; no /dev/kvm, no <linux/kvm.h>)
//   DirtyScopeModel + KVM + DirtyScopeRecording -> DirtyScopeCore (VM, guest, harvest, accounting)
//   DirtyScopeRecording -> DirtyScopePlot (SVG pictures of a recording)
//   DirtyScopeModel -> DirtyScopeTUI (renders snapshots, sends SessionCommands; no KVM)
//   everything -> dirtyscope (the CLI)
// Guests/ is compiled by GuestBuildPlugin with the toolchain's clang and ld.lld and
// embedded into GuestImages, which DirtyScopeCore loads into the VM.
let package = Package(
    name: "DirtyScope",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "dirtyscope", targets: ["dirtyscope"]),
        .library(name: "KVM", targets: ["KVM"]),
        .library(name: "DirtyScopeCore", targets: ["DirtyScopeCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // include/dirtyscope_abi.h is a symlink to Guests/include: one ABI header for both sides.
        .target(name: "CKVM"),
        .target(name: "Pages"),
        .target(name: "KVM", dependencies: ["CKVM", "Pages"]),
        .executableTarget(name: "GuestEmbed"),
        .plugin(
            name: "GuestBuildPlugin",
            capability: .buildTool(),
            dependencies: ["GuestEmbed"]
        ),
        .target(name: "GuestImages", plugins: ["GuestBuildPlugin"]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .target(name: "DirtyScopeModel", dependencies: ["Pages"]),
        .target(name: "DirtyScopeRecording", dependencies: ["DirtyScopeModel", "Pages", "CZlib"]),
        .target(name: "DirtyScopePlot", dependencies: ["DirtyScopeRecording", "DirtyScopeModel", "Pages", "CZlib"]),
        .target(name: "DirtyScopeCore", dependencies: ["KVM", "CKVM", "GuestImages", "DirtyScopeModel", "DirtyScopeRecording"]),
        .systemLibrary(name: "CNcurses", path: "Sources/CNcurses"),
        .target(name: "DirtyScopeTUI", dependencies: ["DirtyScopeModel", "Pages", "CNcurses"]),
        .executableTarget(
            name: "dirtyscope",
            dependencies: [
                "DirtyScopeCore", "DirtyScopeTUI", "DirtyScopeRecording", "DirtyScopeModel", "DirtyScopePlot",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Opening /dev/kvm or skipping (only when it is missing), shared by the KVM test targets.
        .target(name: "KVMTestSupport", dependencies: ["KVM"], path: "Tests/KVMTestSupport"),
        // The engine alone (ioctls, ABI, vCPUs): no DirtyScopeCore.
        .testTarget(name: "KVMTests", dependencies: ["KVM", "CKVM", "DirtyScopeModel", "KVMTestSupport"]),
        // The engine with the guest (GuestMachine): dirty logs, rings, faults, hostile guests.
        .testTarget(name: "MachineTests", dependencies: ["KVM", "CKVM", "GuestImages", "DirtyScopeCore", "DirtyScopeModel", "KVMTestSupport"]),
        .testTarget(name: "DirtyScopeCoreTests", dependencies: ["DirtyScopeCore", "DirtyScopeModel", "DirtyScopeRecording", "KVM", "KVMTestSupport", "Pages"]),
        .testTarget(name: "DirtyScopeRecordingTests", dependencies: ["DirtyScopeRecording", "DirtyScopeModel", "Pages"]),
        .testTarget(name: "DirtyScopeTUITests", dependencies: ["DirtyScopeTUI", "DirtyScopeModel", "Pages"]),
        .testTarget(name: "DirtyScopePlotTests", dependencies: ["DirtyScopePlot", "DirtyScopeRecording", "DirtyScopeModel", "Pages", "CZlib"]),
        .testTarget(name: "EndToEndTests", dependencies: ["dirtyscope", "DirtyScopeModel", "Pages"]),
    ],
    swiftLanguageModes: [.v6]
)

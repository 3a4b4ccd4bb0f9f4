import Foundation
import XCTest

/// `dirtyscope caps` on this host, and with /dev/kvm missing or not a KVM device.
final class CapsTests: ScratchTestCase {

    func testCapsReportsTheAPIAndManualProtect() throws {
        try requireKVM()
        let outcome = try dirtyscope(["caps"], in: scratch)
        XCTAssertTrue(outcome.exited)
        XCTAssertEqual(outcome.status, 0, outcome.stderr)
        XCTAssertEqual(outcome.stderr, "")
        XCTAssertTrue(outcome.stdout.hasPrefix("KVM dirty tracking on "), outcome.stdout)
        XCTAssertTrue(outcome.stdoutLines.first?.hasSuffix("(/dev/kvm)") ?? false, outcome.stdout)
        XCTAssertTrue(outcome.stdoutLines.contains { matches($0, #"^  API version\s+12$"#) }, outcome.stdout)
        XCTAssertTrue(outcome.stdoutLines.contains {
            matches($0, #"^  MANUAL_DIRTY_LOG_PROTECT2\s+(no|0x[0-9a-f]+: MANUAL_PROTECT_ENABLE( \| INITIALLY_SET)?)$"#)
        }, outcome.stdout)
        XCTAssertTrue(outcome.stdoutLines.contains { matches($0, #"^  page size\s+\d+ bytes$"#) }, outcome.stdout)
    }

    func testCapsWithoutDevKVM() throws {
        try HiddenKVM.require(in: scratch)
        let outcome = try HiddenKVM.run(["caps"], in: scratch)
        XCTAssertTrue(outcome.exited)
        XCTAssertEqual(outcome.status, 1, "a missing device is an environment problem: \(outcome.stderr)")
        XCTAssertEqual(outcome.stderrLines.count, 1, outcome.stderr)
        XCTAssertTrue(outcome.stderr.hasPrefix("dirtyscope: "), outcome.stderr)
        XCTAssertTrue(outcome.stderr.contains("/dev/kvm"), outcome.stderr)
        XCTAssertEqual(outcome.stdout, "", "no partial report")
    }

    /// /dev/kvm exists but is not KVM (here /dev/null bound over it): KVM_GET_API_VERSION
    /// fails with ENOTTY. The message should say that /dev/kvm is not a KVM device, not
    /// report the negative errno as an API version.
    func testCapsWhenDevKVMIsNotAKVMDevice() throws {
        try requireKVM()
        try HiddenKVM.require(in: scratch)
        let binary = try Tool.binary()
        let outcome = try shell("unshare -m sh -c 'mount --bind /dev/null /dev/kvm && exec \"$0\" caps' \(shellQuote(binary))",
                                in: scratch)
        XCTAssertTrue(outcome.exited)
        XCTAssertEqual(outcome.status, 1, outcome.stderr)
        XCTAssertEqual(outcome.stderrLines.count, 1, outcome.stderr)
        XCTAssertTrue(outcome.stderr.contains("/dev/kvm"), "the message should name /dev/kvm: \(outcome.stderr)")
        XCTAssertFalse(matches(outcome.stderr, #"version is -\d"#), "an errno reported as an API version: \(outcome.stderr)")
        XCTAssertEqual(outcome.stdout, "")
    }
}

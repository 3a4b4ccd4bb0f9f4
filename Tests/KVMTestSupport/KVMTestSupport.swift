import Foundation
import KVM
import XCTest

/// Opens /dev/kvm, or skips the test with the reason when it cannot be opened.
/// Any other failure (a wrong API version, say) fails the test.
public func openKVM(file: StaticString = #filePath, line: UInt = #line) throws -> KVMSystem {
    do {
        return try KVMSystem()
    } catch {
        if case .deviceUnavailable = error { throw XCTSkip("/dev/kvm not available: \(error)", file: file, line: line) }
        throw error
    }
}

/// Polls `condition` every millisecond for up to `seconds`; true once it holds.
public func eventually(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}

/// A value shared with callbacks on other threads, behind a lock.
public final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    public init(_ value: Value) { self.value = value }
    public func withLock<R>(_ body: (inout Value) -> R) -> R { lock.lock(); defer { lock.unlock() }; return body(&value) }
}

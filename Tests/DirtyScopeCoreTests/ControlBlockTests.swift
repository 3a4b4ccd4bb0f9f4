@testable import DirtyScopeCore
import DirtyScopeModel
import KVM
import XCTest

/// The control block is memory shared with the guest: it must own what it points into.
final class ControlBlockTests: XCTestCase {
    func testControlBlockKeepsItsMemoryMapped() throws {
        var memory: GuestMemory? = try GuestMemory(bytes: 64 << 10, what: "control block test")
        weak var weakMemory = memory
        let block = ControlBlock(memory: memory!, offset: 4096)
        memory = nil
        XCTAssertNotNil(weakMemory, "the block holds the mapping it points into")
        block.initialize(pageSize: PageSize.system, vcpus: 1, regions: [(gpa: 1 << 30, pages: 16)])
        XCTAssertEqual(block.base.load(as: UInt64.self), 0x4550_4f43_5344_5344, "the ABI magic, written through the block")
    }

    /// Every field read or written as 8 bytes is 8-byte aligned (the u32 pair is not a field).
    func testEveryFieldIsAnAlignedWord() {
        for field in ControlBlock.Field.allCases { XCTAssertEqual(field.offset % 8, 0, "\(field)") }
    }
}

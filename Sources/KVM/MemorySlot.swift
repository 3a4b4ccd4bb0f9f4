/// A KVM memslot: a guest-physical range backed by `GuestMemory`.
public struct MemorySlot: Sendable {
    /// KVM slot id (bits 0-15; address space 0).
    public let id: UInt32
    public let guestPhysicalAddress: UInt64
    public let memory: GuestMemory
    /// Whether KVM_MEM_LOG_DIRTY_PAGES is set.
    public let logsDirtyPages: Bool

    /// Size in pages.
    public var pageCount: Int { memory.pageCount }
    /// Size in bytes.
    public var byteCount: Int { memory.byteCount }
    /// Guest-physical end (exclusive).
    public var guestPhysicalEnd: UInt64 { guestPhysicalAddress + UInt64(byteCount) }
}

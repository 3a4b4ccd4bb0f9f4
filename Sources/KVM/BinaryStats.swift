import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// KVM binary statistics of a VM or vCPU (KVM_GET_STATS_FD, api.rst 4.133): the
/// descriptors are read once, values are read by name with pread.
public final class BinaryStats: @unchecked Sendable {
    /// One statistic's descriptor.
    public struct Descriptor: Sendable {
        public let name: String
        /// KVM_STATS_TYPE_*, KVM_STATS_UNIT_*, KVM_STATS_BASE_* packed as in the kernel.
        public let flags: UInt32
        public let exponent: Int16
        /// Number of 64-bit values (1 for plain counters).
        public let size: Int
        /// Byte offset of the values from the data block.
        let offset: Int
    }

    private let fd: FileDescriptor
    private let dataOffset: Int
    /// Descriptors in the order the kernel lists them.
    public let descriptors: [Descriptor]
    private let byName: [String: Int]

    init(owner: FileDescriptor, context: String) throws(KVMError) {
        let r = owner.withRaw { ckvm_ioctl_val($0, ckvm_KVM_GET_STATS_FD, 0) }
        guard r >= 0 else { throw .ioctl(call: "KVM_GET_STATS_FD", context: context, errno: Int32(-r)) }
        let fd = FileDescriptor(owning: Int32(r))
        self.fd = fd
        var header = kvm_stats_header()
        try BinaryStats.read(fd, into: &header, at: 0, context: context)
        dataOffset = Int(header.data_offset)
        let nameSize = Int(header.name_size)
        let stride = Int(CKVM_SIZEOF_STATS_DESC) + nameSize
        let count = Int(header.num_desc)
        guard count < 100_000, nameSize < 4096 else {
            throw .ioctl(call: "KVM_GET_STATS_FD", context: "\(context): implausible header", errno: EIO)
        }
        var raw = [UInt8](repeating: 0, count: stride * count)
        let n = raw.withUnsafeMutableBytes { buf in fd.withRaw { pread($0, buf.baseAddress, buf.count, off_t(header.desc_offset)) } }
        guard n == raw.count else { throw .ioctl(call: "KVM_GET_STATS_FD", context: "\(context): short descriptor read", errno: n < 0 ? errno : EIO) }
        var list: [Descriptor] = []
        raw.withUnsafeBytes { buf in
            for i in 0..<count {
                let base = i * stride
                let flags = buf.loadUnaligned(fromByteOffset: base, as: UInt32.self)
                let exponent = buf.loadUnaligned(fromByteOffset: base + 4, as: Int16.self)
                let size = buf.loadUnaligned(fromByteOffset: base + 6, as: UInt16.self)
                let offset = buf.loadUnaligned(fromByteOffset: base + 8, as: UInt32.self)
                let nameBytes = buf[(base + 16)..<(base + 16 + nameSize)].prefix { $0 != 0 }
                list.append(Descriptor(name: String(decoding: nameBytes, as: UTF8.self), flags: flags, exponent: exponent,
                                       size: Int(size), offset: Int(offset)))
            }
        }
        descriptors = list
        byName = Dictionary(list.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    private static func read<T>(_ fd: FileDescriptor, into value: inout T, at offset: Int, context: String) throws(KVMError) {
        let n = withUnsafeMutableBytes(of: &value) { buf in fd.withRaw { pread($0, buf.baseAddress, buf.count, off_t(offset)) } }
        guard n == MemoryLayout<T>.size else {
            throw .ioctl(call: "KVM_GET_STATS_FD", context: "\(context): short read", errno: n < 0 ? errno : EIO)
        }
    }

    /// Names of every statistic.
    public var names: [String] { descriptors.map(\.name) }

    /// The current value of statistic `name` (its first value), or nil if there is none.
    public func value(_ name: String) -> UInt64? {
        guard let i = byName[name] else { return nil }
        var v: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &v) { buf in
            fd.withRaw { pread($0, buf.baseAddress, 8, off_t(dataOffset + descriptors[i].offset)) }
        }
        return n == 8 ? v : nil
    }

    /// Values of several statistics at once (missing ones read as 0).
    public func values(_ names: [String]) -> [UInt64] { names.map { value($0) ?? 0 } }
}

import DirtyScopeModel
import Pages

/// The migration stream between `dirtyscope migrate` and `dirtyscope receive`
/// (MIGRATION.md): a greeting, then frames. Every length, count and index in it is
/// checked against what the greeting announced and `SessionLimits` before anything is
/// allocated, so a peer that sends garbage, forged lengths or a truncated frame gets a
/// one-line error and costs bounded memory.
public enum MigrationWire {
    /// The greeting each side sends first: magic, version, role.
    public static let magic: [UInt8] = Array("DSMIGRAT".utf8)
    public static let version: UInt16 = 2
    public static let greetingBytes = 12
    /// Frame header: type (u8), flags (u8, 0), reserved (u16, 0), payload length (u32), CRC32 of the payload (u32).
    public static let headerBytes = 12
    /// The largest payload: a frame of `maxPagesPerFrame` 64 KiB pages and its bitmap.
    public static let maxPayloadBytes = 16 << 20 + 64
    /// Pages one pages frame holds at most.
    public static let maxPagesPerFrame = 256
    /// Most pages one hashes frame lists (16 bytes each).
    public static let maxHashesPerFrame = 65536
    /// The system slot's index in pages and hashes frames.
    public static let systemSlot: UInt32 = 0xFFFF_FFFF
    /// Blocks a verified frame lists at most (the count stays exact past it).
    public static let maxListedBlocks = 4096
    /// Longest text (a guest name, an abort's reason), in bytes.
    public static let maxTextBytes = 1024

    public enum Role: UInt16, Sendable { case source = 1, destination = 2 }

    /// What the source's greeting-time description says: the layout the destination builds.
    public struct Hello: Equatable, Sendable {
        public var pageSize: Int
        public var vcpus: Int
        public var systemBytes: Int
        public var slots: [(gpa: UInt64, pages: Int)]
        public var guestName: String
        /// The guest stamps its pages (false positives are judged by stamp).
        public var stamps: Bool

        public init(pageSize: Int, vcpus: Int, systemBytes: Int, slots: [(gpa: UInt64, pages: Int)], guestName: String, stamps: Bool) {
            self.pageSize = pageSize
            self.vcpus = vcpus
            self.systemBytes = systemBytes
            self.slots = slots
            self.guestName = guestName
            self.stamps = stamps
        }

        public static func == (a: Hello, b: Hello) -> Bool {
            a.pageSize == b.pageSize && a.vcpus == b.vcpus && a.systemBytes == b.systemBytes && a.guestName == b.guestName
                && a.stamps == b.stamps && a.slots.count == b.slots.count
                && zip(a.slots, b.slots).allSatisfy { $0.gpa == $1.gpa && $0.pages == $1.pages }
        }

        /// Pages of slot `slot` (the system slot included).
        public func pages(slot: UInt32) -> Int? {
            if slot == MigrationWire.systemSlot { return systemBytes / pageSize }
            return slot < slots.count ? slots[Int(slot)].pages : nil
        }
    }

    /// A run of pages: which of them are all zeros, and the others' contents, in order.
    public struct Pages: Sendable {
        public var slot: UInt32
        public var firstPage: UInt64
        public var count: Int
        /// Bit i: page firstPage + i is all zeros (its data is not in the frame).
        public var zeroBits: [UInt8]
        /// Each page's 64-bit hash as the source computed it (zero pages included).
        public var hashes: [UInt64]
        /// The non-zero pages' bytes, `pageSize` each.
        public var data: [UInt8]

        public init(slot: UInt32, firstPage: UInt64, count: Int, zeroBits: [UInt8], hashes: [UInt64], data: [UInt8]) {
            self.slot = slot
            self.firstPage = firstPage
            self.count = count
            self.zeroBits = zeroBits
            self.hashes = hashes
            self.data = data
        }

        public func isZero(_ i: Int) -> Bool { zeroBits[i >> 3] & (1 << UInt8(i & 7)) != 0 }
    }

    /// A pages frame read in place: its fields over the payload's bytes, valid while those
    /// bytes are (the receiver keeps one buffer for every frame).
    public struct PagesView {
        public let slot: UInt32
        public let firstPage: UInt64
        public let count: Int
        let zeroBits: UnsafeRawPointer
        let hashes: UnsafeRawPointer
        /// The non-zero pages' bytes, in order.
        public let data: UnsafeRawPointer

        /// A view over pointers the caller keeps valid: zero bits, little-endian hashes, data.
        public init(slot: UInt32, firstPage: UInt64, count: Int, zeroBits: UnsafeRawPointer, hashes: UnsafeRawPointer, data: UnsafeRawPointer) {
            self.slot = slot
            self.firstPage = firstPage
            self.count = count
            self.zeroBits = zeroBits
            self.hashes = hashes
            self.data = data
        }

        public func isZero(_ i: Int) -> Bool { zeroBits.load(fromByteOffset: i >> 3, as: UInt8.self) & (1 << UInt8(i & 7)) != 0 }
        public func hash(_ i: Int) -> UInt64 { UInt64(littleEndian: hashes.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) }
    }

    /// One vCPU's state, as the KVM layer's parts: the destination restores it as it is.
    public struct State: Equatable, Sendable {
        public var vcpu: Int
        public var mpState: UInt32
        /// regs, sregs, xsave, xcrs, events, debugregs: each a kernel struct's bytes.
        public var parts: [[UInt8]]
        public var msrs: [(index: UInt32, value: UInt64)]

        public init(vcpu: Int, mpState: UInt32, parts: [[UInt8]], msrs: [(index: UInt32, value: UInt64)]) {
            self.vcpu = vcpu
            self.mpState = mpState
            self.parts = parts
            self.msrs = msrs
        }

        public static func == (a: State, b: State) -> Bool {
            a.vcpu == b.vcpu && a.mpState == b.mpState && a.parts == b.parts && a.msrs.count == b.msrs.count
                && zip(a.msrs, b.msrs).allSatisfy { $0.index == $1.index && $0.value == $1.value }
        }

        /// Parts a state has, and the most MSRs and bytes of a part.
        public static let partCount = 6
        public static let maxMSRs = 4096
        public static let maxPartBytes = 1 << 20
    }

    /// What a round of pre-copy sent, as the source counts it (the destination's UI shows it).
    public struct RoundEnd: Equatable, Sendable {
        public var round: UInt64
        public var pages: UInt64
        public var zeroPages: UInt64
        public var bytes: UInt64
        public var falsePositivePages: UInt64

        public init(round: UInt64, pages: UInt64, zeroPages: UInt64, bytes: UInt64, falsePositivePages: UInt64) {
            self.round = round
            self.pages = pages
            self.zeroPages = zeroPages
            self.bytes = bytes
            self.falsePositivePages = falsePositivePages
        }
    }

    /// The destination's comparison of every page with the source's hashes.
    public struct Verified: Equatable, Sendable {
        public var differingPages: UInt64
        /// Up to `maxListedBlocks` (slot, 64-page block) pairs that held a differing page.
        public var blocks: [Block]

        public struct Block: Equatable, Sendable {
            public var slot: UInt32
            public var block: UInt64
            public init(slot: UInt32, block: UInt64) {
                self.slot = slot
                self.block = block
            }
        }

        public init(differingPages: UInt64, blocks: [Block]) {
            self.differingPages = differingPages
            self.blocks = blocks
        }
    }

    /// Every frame of the stream.
    public enum Frame: Sendable {
        case hello(Hello)
        case ready
        case pages(Pages)
        case roundEnd(RoundEnd)
        case state(State)
        /// The source's hashes of its pages at the switch-over: `hashes[i]` is page `pages[i]`'s,
        /// the pages strictly increasing (a guest's written pages are rarely contiguous, so
        /// a frame lists them, up to `maxHashesPerFrame`).
        case hashes(slot: UInt32, pages: [UInt64], hashes: [UInt64])
        /// Every page and state is sent: compare, then answer `verified`.
        case switchOver(pages: UInt64)
        case verified(Verified)
        /// The source agrees: resume the guest.
        case resume
        /// The guest runs on the destination: its time to load the state and to resume it.
        case resumed(loadNanos: UInt64, resumeNanos: UInt64)
        case abort(String)

        public var type: UInt8 {
            switch self {
            case .hello: return 1
            case .ready: return 2
            case .pages: return 3
            case .roundEnd: return 4
            case .state: return 5
            case .hashes: return 6
            case .switchOver: return 7
            case .verified: return 8
            case .resume: return 9
            case .resumed: return 10
            case .abort: return 11
            }
        }

        public var name: String {
            switch self {
            case .hello: return "hello"
            case .ready: return "ready"
            case .pages: return "pages"
            case .roundEnd: return "round end"
            case .state: return "state"
            case .hashes: return "hashes"
            case .switchOver: return "switch-over"
            case .verified: return "verified"
            case .resume: return "resume"
            case .resumed: return "resumed"
            case .abort: return "abort"
            }
        }
    }

    /// A stream the peer broke: what was wrong, in a line.
    public struct WireError: Error, Equatable, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    // MARK: Encoding

    public static func greeting(_ role: Role) -> [UInt8] {
        var w = ByteWriter()
        w.append(contentsOf: magic)
        w.u16(version)
        w.u16(role.rawValue)
        return w.bytes
    }

    /// Checks a peer's greeting: the magic, the version, and that it plays `expected`.
    public static func checkGreeting(_ bytes: [UInt8], expected: Role) throws(WireError) {
        guard bytes.count == greetingBytes, Array(bytes.prefix(8)) == magic else {
            throw WireError("not a DirtyScope migration stream (the first bytes are \(printable(bytes.prefix(8))))")
        }
        let v = UInt16(bytes[8]) | UInt16(bytes[9]) << 8, role = UInt16(bytes[10]) | UInt16(bytes[11]) << 8
        guard v == version else { throw WireError("migration protocol version \(v) (this dirtyscope speaks version \(version))") }
        guard role == expected.rawValue else {
            throw WireError("the peer is not a migration \(expected == .source ? "source" : "destination") (role \(role))")
        }
    }

    /// The frame as bytes: header then payload.
    public static func encode(_ frame: Frame) -> [UInt8] {
        var p = ByteWriter()
        switch frame {
        case .hello(let h):
            p.u32(UInt32(truncatingIfNeeded: h.pageSize))
            p.u32(UInt32(truncatingIfNeeded: h.vcpus))
            p.u64(UInt64(truncatingIfNeeded: h.systemBytes))
            p.u32(UInt32(truncatingIfNeeded: h.slots.count))
            for s in h.slots { p.u64(s.gpa); p.u64(UInt64(truncatingIfNeeded: s.pages)) }
            p.u8(h.stamps ? 1 : 0)
            text(h.guestName, into: &p)
        case .ready, .resume:
            break
        case .pages(let pages):
            p.u32(pages.slot)
            p.u64(pages.firstPage)
            p.u32(UInt32(truncatingIfNeeded: pages.count))
            p.append(contentsOf: pages.zeroBits)
            p.u64s(pages.hashes[...])
            p.append(contentsOf: pages.data)
        case .roundEnd(let r):
            for v in [r.round, r.pages, r.zeroPages, r.bytes, r.falsePositivePages] { p.u64(v) }
        case .state(let s):
            p.u32(UInt32(truncatingIfNeeded: s.vcpu))
            p.u32(s.mpState)
            for part in s.parts {
                p.u32(UInt32(truncatingIfNeeded: part.count))
                p.append(contentsOf: part)
            }
            p.u32(UInt32(truncatingIfNeeded: s.msrs.count))
            for m in s.msrs { p.u32(m.index); p.u64(m.value) }
        case .hashes(let slot, let pages, let hashes):
            p.u32(slot)
            p.u32(UInt32(truncatingIfNeeded: hashes.count))
            p.u64s(pages[...])
            p.u64s(hashes[...])
        case .switchOver(let pages):
            p.u64(pages)
        case .verified(let v):
            p.u64(v.differingPages)
            p.u32(UInt32(truncatingIfNeeded: v.blocks.count))
            for b in v.blocks { p.u32(b.slot); p.u64(b.block) }
        case .resumed(let load, let resume):
            p.u64(load)
            p.u64(resume)
        case .abort(let reason):
            text(reason, into: &p)
        }
        // A pages frame's checksum covers its fields, not the pages' bytes: each page has its hash.
        var checked = p.count
        if case .pages(let pages) = frame { checked = min(p.count, pagesMetaBytes(count: pages.count)) }
        var w = ByteWriter()
        w.u8(frame.type)
        w.u8(0)
        w.u16(0)
        w.u32(UInt32(truncatingIfNeeded: p.count))
        w.u32(p.bytes.withUnsafeBytes { CRC32.of(UnsafeRawBufferPointer(rebasing: $0[0..<checked])) })
        w.append(contentsOf: p.bytes)
        return w.bytes
    }

    /// The bytes of a pages frame's fields before the pages' bytes: slot, first page, count,
    /// the zero bits and a hash per page.
    public static func pagesMetaBytes(count: Int) -> Int { 16 + (count + 7) / 8 + 8 * count }

    /// A frame header for `type` with `length` payload bytes whose checksum is `crc`.
    public static func header(type: UInt8, length: Int, crc: UInt32) -> [UInt8] {
        var w = ByteWriter()
        w.u8(type)
        w.u8(0)
        w.u16(0)
        w.u32(UInt32(truncatingIfNeeded: length))
        w.u32(crc)
        return w.bytes
    }

    /// A pages frame's fields (what `pagesMetaBytes` counts), for a sender that keeps the
    /// pages' bytes in a buffer of its own: header and fields, then those bytes, make the frame.
    public static func pagesMeta(slot: UInt32, firstPage: UInt64, count: Int, zeroBits: [UInt8], hashes: [UInt64]) -> [UInt8] {
        var p = ByteWriter()
        p.u32(slot)
        p.u64(firstPage)
        p.u32(UInt32(truncatingIfNeeded: count))
        p.append(contentsOf: zeroBits)
        p.u64s(hashes[...])
        return p.bytes
    }

    /// A pages frame's checksum: the CRC32 of its fields.
    public static func checksum(meta: [UInt8]) -> UInt32 { CRC32.of(meta) }

    /// A pages frame read in place (`layout`: the hello): its fields checked as `decode`
    /// checks them, its pages' bytes left where they are.
    public static func pagesView(_ payload: UnsafeRawBufferPointer, crc: UInt32, layout h: Hello) throws(WireError) -> PagesView {
        do throws(FormatViolation) {
            var r = ByteReader(payload)
            let slot = try r.u32()
            guard let pages = h.pages(slot: slot) else { throw FormatViolation("slot \(slot) is not in the hello's \(h.slots.count) slots") }
            let first = try r.u64()
            let count = Int(try r.u32())
            guard (1...maxPagesPerFrame).contains(count), first < UInt64(pages), UInt64(count) <= UInt64(pages) - first else {
                throw FormatViolation("pages \(first)+\(count) of slot \(slot) (\(pages) pages; 1 to \(maxPagesPerFrame) a frame)")
            }
            let meta = pagesMetaBytes(count: count)
            guard payload.count >= meta else { throw FormatViolation("ends inside its fields") }
            guard CRC32.of(UnsafeRawBufferPointer(rebasing: payload[0..<meta])) == crc else {
                throw FormatViolation("its checksum does not match its fields")
            }
            let bits = try r.bytes((count + 7) / 8)
            var zeros = 0
            for b in bits { zeros += b.nonzeroBitCount }
            guard count % 8 == 0 || bits[bits.count - 1] >> UInt8(count % 8) == 0 else { throw FormatViolation("zero-page bits past its \(count) pages") }
            let hashes = try r.bytes(8 * count)
            let data = try r.bytes((count - zeros) * h.pageSize)
            guard r.isAtEnd else { throw FormatViolation("\(r.remaining) bytes after its pages") }
            return PagesView(slot: slot, firstPage: first, count: count, zeroBits: bits.baseAddress!, hashes: hashes.baseAddress!,
                             data: data.baseAddress ?? hashes.baseAddress!)
        } catch {
            throw WireError("frame type 3: \(error.reason)")
        }
    }

    private static func text(_ s: String, into p: inout ByteWriter) {
        let bytes = Array(s.utf8.prefix(maxTextBytes))
        p.u16(UInt16(truncatingIfNeeded: bytes.count))
        p.append(contentsOf: bytes)
    }

    /// A frame payload's checksum (CRC32, as zlib computes it).
    public static func checksum(_ payload: [UInt8]) -> UInt32 { CRC32.of(payload) }

    // MARK: Decoding

    /// A frame header's type and payload length, checked: a known type, zero flags, a
    /// length within `maxPayloadBytes`.
    public static func header(_ bytes: [UInt8]) throws(WireError) -> (type: UInt8, length: Int, crc: UInt32) {
        guard bytes.count == headerBytes else { throw WireError("a frame header of \(bytes.count) bytes") }
        let type = bytes[0]
        guard (1...11).contains(type) else { throw WireError("unknown frame type \(type)") }
        guard bytes[1] == 0, bytes[2] == 0, bytes[3] == 0 else { throw WireError("frame type \(type) has flags set") }
        let length = Int(UInt32(bytes[4]) | UInt32(bytes[5]) << 8 | UInt32(bytes[6]) << 16 | UInt32(bytes[7]) << 24)
        guard length <= maxPayloadBytes else { throw WireError("frame type \(type) claims \(length) bytes (at most \(maxPayloadBytes))") }
        let crc = UInt32(bytes[8]) | UInt32(bytes[9]) << 8 | UInt32(bytes[10]) << 16 | UInt32(bytes[11]) << 24
        return (type, length, crc)
    }

    /// The frame of `type` with `payload`, checked against its CRC and, after the hello,
    /// against the layout it announced (nil before it: only a hello decodes then).
    public static func decode(type: UInt8, payload: [UInt8], crc: UInt32, layout: Hello?) throws(WireError) -> Frame {
        if type == 3 {
            // Checked in place first (the checksum covers the fields), then copied out.
            guard let layout else { throw WireError("frame type 3: comes before the hello") }
            let result = payload.withUnsafeBytes { raw -> Result<Frame, WireError> in
                do throws(WireError) {
                    let v = try pagesView(raw, crc: crc, layout: layout)
                    let zeroBits = Array(UnsafeRawBufferPointer(start: v.zeroBits, count: (v.count + 7) / 8))
                    let dataBytes = raw.count - pagesMetaBytes(count: v.count)
                    return .success(.pages(Pages(slot: v.slot, firstPage: v.firstPage, count: v.count, zeroBits: zeroBits,
                                                 hashes: (0..<v.count).map(v.hash),
                                                 data: Array(UnsafeRawBufferPointer(start: v.data, count: dataBytes)))))
                } catch {
                    return .failure(error)
                }
            }
            return try result.get()
        }
        guard CRC32.of(payload) == crc else { throw WireError("frame type \(type): its checksum does not match its \(payload.count) bytes") }
        do {
            return try payload.withUnsafeBytes { (raw) throws(FormatViolation) -> Frame in
                var r = ByteReader(raw)
                let frame = try decodeBody(type: type, &r, layout: layout)
                guard r.isAtEnd else { throw FormatViolation("\(r.remaining) bytes after its fields") }
                return frame
            }
        } catch let e as FormatViolation {
            throw WireError("frame type \(type): \(e.reason)")
        } catch {
            throw WireError("frame type \(type): \(error)")
        }
    }

    private static func decodeBody(type: UInt8, _ r: inout ByteReader, layout: Hello?) throws(FormatViolation) -> Frame {
        // Pages, states and hashes are checked against the layout the hello announced.
        if [3, 5, 6].contains(type), layout == nil { throw FormatViolation("comes before the hello") }
        switch type {
        case 1:
            let pageSize = Int(try r.u32())
            guard SessionLimits.pageSizes.contains(pageSize), pageSize & (pageSize - 1) == 0 else {
                throw FormatViolation("page size \(pageSize) is not a power of two in \(SessionLimits.pageSizes)")
            }
            let vcpus = Int(try r.u32())
            guard (1...SessionLimits.maxVCPUs).contains(vcpus) else { throw FormatViolation("\(vcpus) vCPUs (1 to \(SessionLimits.maxVCPUs))") }
            let system = try r.u64()
            guard system > 0, system % UInt64(pageSize) == 0, system <= 1 << 30 else {
                throw FormatViolation("system slot of \(system) bytes (a positive multiple of the page size, at most 1 GiB)")
            }
            let n = Int(try r.u32())
            guard (1...SessionLimits.maxSlots).contains(n) else { throw FormatViolation("\(n) slots (1 to \(SessionLimits.maxSlots))") }
            var slots: [(UInt64, Int)] = []
            var total: UInt64 = 0
            for i in 0..<n {
                let gpa = try r.u64(), pages = try r.u64()
                total &+= pages
                guard pages > 0, total <= UInt64(SessionLimits.maxTotalPages), gpa % UInt64(pageSize) == 0 else {
                    throw FormatViolation("slot \(i): \(pages) pages at 0x\(String(gpa, radix: 16)) (\(SessionLimits.maxTotalPages) pages in all at most, page-aligned)")
                }
                slots.append((gpa, Int(pages)))
            }
            let stamps = try r.u8()
            guard stamps <= 1 else { throw FormatViolation("stamps flag \(stamps)") }
            return .hello(Hello(pageSize: pageSize, vcpus: vcpus, systemBytes: Int(system), slots: slots,
                                guestName: try text(&r), stamps: stamps == 1))
        case 2: return .ready
        case 3:
            let h = layout!
            let slot = try r.u32()
            guard let pages = h.pages(slot: slot) else { throw FormatViolation("slot \(slot) is not in the hello's \(h.slots.count) slots") }
            let first = try r.u64()
            let count = Int(try r.u32())
            guard (1...maxPagesPerFrame).contains(count), first < UInt64(pages), UInt64(count) <= UInt64(pages) - first else {
                throw FormatViolation("pages \(first)+\(count) of slot \(slot) (\(pages) pages; 1 to \(maxPagesPerFrame) a frame)")
            }
            let bits = Array(try r.bytes((count + 7) / 8))
            let zeros = (0..<count).filter { bits[$0 >> 3] & (1 << UInt8($0 & 7)) != 0 }.count
            guard count % 8 == 0 || bits.last! >> UInt8(count % 8) == 0 else { throw FormatViolation("zero-page bits past its \(count) pages") }
            var hashes: [UInt64] = []
            hashes.reserveCapacity(count)
            for _ in 0..<count { hashes.append(try r.u64()) }
            let data = Array(try r.bytes((count - zeros) * h.pageSize))
            return .pages(Pages(slot: slot, firstPage: first, count: count, zeroBits: bits, hashes: hashes, data: data))
        case 4:
            return .roundEnd(RoundEnd(round: try r.u64(), pages: try r.u64(), zeroPages: try r.u64(), bytes: try r.u64(),
                                      falsePositivePages: try r.u64()))
        case 5:
            let h = layout!
            let vcpu = Int(try r.u32())
            guard vcpu < h.vcpus else { throw FormatViolation("vCPU \(vcpu) of \(h.vcpus)") }
            let mp = try r.u32()
            var parts: [[UInt8]] = []
            for i in 0..<State.partCount {
                let n = Int(try r.u32())
                guard n <= State.maxPartBytes else { throw FormatViolation("state part \(i) of \(n) bytes (at most \(State.maxPartBytes))") }
                parts.append(Array(try r.bytes(n)))
            }
            let n = Int(try r.u32())
            guard n <= State.maxMSRs, n * 12 <= r.remaining else { throw FormatViolation("\(n) MSRs (at most \(State.maxMSRs), 12 bytes each)") }
            var msrs: [(UInt32, UInt64)] = []
            for _ in 0..<n { msrs.append((try r.u32(), try r.u64())) }
            return .state(State(vcpu: vcpu, mpState: mp, parts: parts, msrs: msrs))
        case 6:
            let h = layout!
            let slot = try r.u32()
            guard let pages = h.pages(slot: slot) else { throw FormatViolation("slot \(slot) is not in the hello's slots") }
            let count = Int(try r.u32())
            guard count >= 1, count <= maxHashesPerFrame, 16 * count <= r.remaining else {
                throw FormatViolation("\(count) hashes in a frame (1 to \(maxHashesPerFrame), 16 bytes each)")
            }
            var list: [UInt64] = []
            list.reserveCapacity(count)
            for _ in 0..<count {
                let page = try r.u64()
                guard page < UInt64(pages), list.last.map({ page > $0 }) ?? true else {
                    throw FormatViolation("hashes frame lists page \(page) of slot \(slot) (\(pages) pages) "
                                          + (page < UInt64(pages) ? "after page \(list.last!) (pages must increase)" : "past its end"))
                }
                list.append(page)
            }
            var hashes: [UInt64] = []
            hashes.reserveCapacity(count)
            for _ in 0..<count { hashes.append(try r.u64()) }
            return .hashes(slot: slot, pages: list, hashes: hashes)
        case 7: return .switchOver(pages: try r.u64())
        case 8:
            let differing = try r.u64()
            let n = Int(try r.u32())
            guard n <= maxListedBlocks, UInt64(n) <= differing else { throw FormatViolation("\(n) blocks listed for \(differing) differing pages (at most \(maxListedBlocks))") }
            var blocks: [Verified.Block] = []
            for _ in 0..<n { blocks.append(Verified.Block(slot: try r.u32(), block: try r.u64())) }
            return .verified(Verified(differingPages: differing, blocks: blocks))
        case 9: return .resume
        case 10: return .resumed(loadNanos: try r.u64(), resumeNanos: try r.u64())
        case 11: return .abort(try text(&r))
        default: throw FormatViolation("unknown type")
        }
    }

    private static func text(_ r: inout ByteReader) throws(FormatViolation) -> String {
        let n = Int(try r.u16())
        guard n <= maxTextBytes else { throw FormatViolation("text of \(n) bytes (at most \(maxTextBytes))") }
        return printable(try r.bytes(n))
    }

    /// Bytes from the peer as text that cannot drive a terminal (control bytes as `?`).
    static func printable<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        let text = String(decoding: Array(bytes), as: UTF8.self)
        return String(String.UnicodeScalarView(text.unicodeScalars.map {
            $0.value < 0x20 || (0x7f...0x9f).contains($0.value) || (0x202a...0x202e).contains($0.value)
                || (0x2066...0x2069).contains($0.value) || $0.value == 0x200b || $0.value == 0xfeff ? "?" : $0
        }))
    }

    // MARK: Page hashes

    /// A page's 64-bit hash: four lanes of multiply-rotate over its 8-byte words, folded.
    /// Fast enough to hash every page a migration sends as it sends it; not a cryptographic
    /// hash (the two ends trust each other, the hash only has to catch a page that differs).
    public static func hash(_ page: UnsafeRawPointer, bytes: Int) -> UInt64 {
        let words = page.assumingMemoryBound(to: UInt64.self)
        let n = bytes / 8
        var a: UInt64 = 0x9E37_79B9_7F4A_7C15, b: UInt64 = 0xC2B2_AE3D_27D4_EB4F
        var c: UInt64 = 0x1656_67B1_9E37_79F9, d: UInt64 = 0x27D4_EB2F_1656_67C5
        var i = 0
        while i + 4 <= n {
            a = (a ^ words[i]) &* 0x9FB2_1C65_1E98_DF25; a = a << 31 | a >> 33
            b = (b ^ words[i + 1]) &* 0x9FB2_1C65_1E98_DF25; b = b << 29 | b >> 35
            c = (c ^ words[i + 2]) &* 0x9FB2_1C65_1E98_DF25; c = c << 27 | c >> 37
            d = (d ^ words[i + 3]) &* 0x9FB2_1C65_1E98_DF25; d = d << 25 | d >> 39
            i += 4
        }
        while i < n { a = (a ^ words[i]) &* 0x9FB2_1C65_1E98_DF25; a = a << 31 | a >> 33; i += 1 }
        var h = a ^ (b << 1 | b >> 63) ^ (c << 2 | c >> 62) ^ (d << 3 | d >> 61)
        h ^= h >> 33; h &*= 0xFF51_AFD7_ED55_8CCD; h ^= h >> 33
        return h
    }

    /// The hash of an all-zero page of `bytes`.
    public static func zeroHash(bytes: Int) -> UInt64 {
        let zeros = [UInt8](repeating: 0, count: bytes)
        return zeros.withUnsafeBytes { hash($0.baseAddress!, bytes: bytes) }
    }
}

import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// Everything a vCPU needs to go on exactly where it stopped, on another VM with the same
/// memory: general and special registers, the FPU/SSE/AVX state (XSAVE) and the XCRs,
/// pending events, debug registers, the MP state and the MSRs KVM saves (the TSC among
/// them, so the guest's clock goes on from where it was). Each part is the kernel
/// struct's bytes, so the state travels as it is and `VCPU.restoreState` checks every size.
public struct VCPUState: Equatable, Sendable {
    public var regs: [UInt8]
    public var sregs: [UInt8]
    /// `struct kvm_xsave`: 4096 bytes, or the size KVM_CAP_XSAVE2 gives.
    public var xsave: [UInt8]
    public var xcrs: [UInt8]
    public var events: [UInt8]
    public var debugRegs: [UInt8]
    public var mpState: UInt32
    /// The MSRs read, by index.
    public var msrs: [MSR]

    public struct MSR: Equatable, Sendable {
        public var index: UInt32
        public var value: UInt64
        public init(index: UInt32, value: UInt64) {
            self.index = index
            self.value = value
        }
    }

    public init(regs: [UInt8], sregs: [UInt8], xsave: [UInt8], xcrs: [UInt8], events: [UInt8], debugRegs: [UInt8],
                mpState: UInt32, msrs: [MSR]) {
        self.regs = regs
        self.sregs = sregs
        self.xsave = xsave
        self.xcrs = xcrs
        self.events = events
        self.debugRegs = debugRegs
        self.mpState = mpState
        self.msrs = msrs
    }

    /// The sizes each part must have (the XSAVE area: at least 4096 bytes, at most 1 MiB).
    public static let sizes: [(name: String, size: Int)] = [
        ("regs", MemoryLayout<kvm_regs>.size), ("sregs", MemoryLayout<kvm_sregs>.size),
        ("xcrs", Int(CKVM_SIZEOF_XCRS)), ("events", Int(CKVM_SIZEOF_VCPU_EVENTS)), ("debugregs", Int(CKVM_SIZEOF_DEBUGREGS)),
    ]
    public static let maxXSAVEBytes = 1 << 20
    /// Most MSRs a state carries.
    public static let maxMSRs = 4096

    /// A one-line reason the state cannot be restored as it is, or nil.
    public var problem: String? {
        for (name, bytes) in [("regs", regs), ("sregs", sregs), ("xcrs", xcrs), ("events", events), ("debugregs", debugRegs)] {
            let size = Self.sizes.first { $0.name == name }!.size
            if bytes.count != size { return "vCPU state: \(name) is \(bytes.count) bytes, not \(size)" }
        }
        if xsave.count < Int(CKVM_SIZEOF_XSAVE) || xsave.count > Self.maxXSAVEBytes || xsave.count % 4 != 0 {
            return "vCPU state: the XSAVE area is \(xsave.count) bytes (allowed: a multiple of 4 from \(CKVM_SIZEOF_XSAVE) to \(Self.maxXSAVEBytes))"
        }
        if msrs.count > Self.maxMSRs { return "vCPU state: \(msrs.count) MSRs (at most \(Self.maxMSRs))" }
        return nil
    }
}

extension VCPU {
    /// Reads the vCPU's whole state (the vCPU must not be running): KVM_GET_REGS, _SREGS,
    /// _XSAVE (or _XSAVE2), _XCRS, _VCPU_EVENTS, _DEBUGREGS, _MP_STATE, and KVM_GET_MSRS
    /// of `msrIndices` (those KVM refuses to read are left out).
    public func captureState(msrIndices: [UInt32], xsaveBytes: Int) throws(KVMError) -> VCPUState {
        func get<T>(_ request: UInt, _ type: T.Type, _ name: String) throws(KVMError) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: MemoryLayout<T>.size)
            let r = bytes.withUnsafeMutableBytes { raw in fd.withRaw { ckvm_ioctl_ptr($0, request, raw.baseAddress!) } }
            guard r >= 0 else { throw .ioctl(call: name, context: "vCPU \(id)", errno: Int32(-r)) }
            return bytes
        }
        let regs = try get(ckvm_KVM_GET_REGS, kvm_regs.self, "KVM_GET_REGS")
        let sregs = try get(ckvm_KVM_GET_SREGS, kvm_sregs.self, "KVM_GET_SREGS")
        var xsave = [UInt8](repeating: 0, count: max(Int(CKVM_SIZEOF_XSAVE), xsaveBytes))
        let big = xsave.count > Int(CKVM_SIZEOF_XSAVE)
        let xr = xsave.withUnsafeMutableBytes { raw in
            fd.withRaw { ckvm_ioctl_ptr($0, big ? ckvm_KVM_GET_XSAVE2 : ckvm_KVM_GET_XSAVE, raw.baseAddress!) }
        }
        guard xr >= 0 else { throw .ioctl(call: big ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE", context: "vCPU \(id)", errno: Int32(-xr)) }
        var xcrs = [UInt8](repeating: 0, count: Int(CKVM_SIZEOF_XCRS))
        let cr = xcrs.withUnsafeMutableBytes { raw in fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_GET_XCRS, raw.baseAddress!) } }
        guard cr >= 0 else { throw .ioctl(call: "KVM_GET_XCRS", context: "vCPU \(id)", errno: Int32(-cr)) }
        var events = [UInt8](repeating: 0, count: Int(CKVM_SIZEOF_VCPU_EVENTS))
        let er = events.withUnsafeMutableBytes { raw in fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_GET_VCPU_EVENTS, raw.baseAddress!) } }
        guard er >= 0 else { throw .ioctl(call: "KVM_GET_VCPU_EVENTS", context: "vCPU \(id)", errno: Int32(-er)) }
        var debug = [UInt8](repeating: 0, count: Int(CKVM_SIZEOF_DEBUGREGS))
        let dr = debug.withUnsafeMutableBytes { raw in fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_GET_DEBUGREGS, raw.baseAddress!) } }
        guard dr >= 0 else { throw .ioctl(call: "KVM_GET_DEBUGREGS", context: "vCPU \(id)", errno: Int32(-dr)) }
        var mp = kvm_mp_state()
        let mr = fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_GET_MP_STATE, &mp) }
        guard mr >= 0 else { throw .ioctl(call: "KVM_GET_MP_STATE", context: "vCPU \(id)", errno: Int32(-mr)) }
        // MSRs one batch at a time: KVM stops at the first it cannot read, which is skipped.
        var msrs: [VCPUState.MSR] = []
        var rest = ArraySlice(msrIndices)
        while !rest.isEmpty {
            let (values, read) = try readMSRs(Array(rest))
            for (i, v) in values.enumerated() { msrs.append(VCPUState.MSR(index: rest[rest.startIndex + i], value: v)) }
            rest = rest.dropFirst(read + 1)
        }
        return VCPUState(regs: regs, sregs: sregs, xsave: xsave, xcrs: xcrs, events: events, debugRegs: debug,
                         mpState: mp.mp_state, msrs: msrs)
    }

    /// KVM_GET_MSRS of `indices`: the values read, and how many (KVM stops at the first it refuses).
    private func readMSRs(_ indices: [UInt32]) throws(KVMError) -> ([UInt64], Int) {
        guard let raw = ckvm_msrs_alloc(UInt32(indices.count)) else {
            throw .mapping(what: "kvm_msrs", bytes: indices.count * Int(CKVM_SIZEOF_MSR_ENTRY), errno: ENOMEM)
        }
        defer { free(raw) }
        let entries = ckvm_msrs_entries(raw)!
        for (i, index) in indices.enumerated() { entries[i] = kvm_msr_entry(index: index, reserved: 0, data: 0) }
        let r = fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_GET_MSRS, raw) }
        guard r >= 0 else { throw .ioctl(call: "KVM_GET_MSRS", context: "vCPU \(id)", errno: Int32(-r)) }
        let n = min(r, indices.count)
        return ((0..<n).map { entries[$0].data }, n)
    }

    /// Loads a state `captureState` read (on this or another VM with the same memory), in
    /// the order KVM needs: MP state, special registers, registers, XCRs, XSAVE, MSRs,
    /// events, debug registers. Returns the MSRs KVM refused to set (the rest are set).
    @discardableResult
    public func restoreState(_ state: VCPUState) throws(KVMError) -> [UInt32] {
        if let problem = state.problem { throw .invalidArgument(call: "vCPU state", reason: problem) }
        func set(_ request: UInt, _ bytes: [UInt8], _ name: String) throws(KVMError) {
            var copy = bytes
            let r = copy.withUnsafeMutableBytes { raw in fd.withRaw { ckvm_ioctl_ptr($0, request, raw.baseAddress!) } }
            guard r >= 0 else { throw .ioctl(call: name, context: "vCPU \(id)", errno: Int32(-r)) }
        }
        var mp = kvm_mp_state(mp_state: state.mpState)
        let mr = fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_SET_MP_STATE, &mp) }
        guard mr >= 0 else { throw .ioctl(call: "KVM_SET_MP_STATE", context: "vCPU \(id)", errno: Int32(-mr)) }
        try set(ckvm_KVM_SET_SREGS, state.sregs, "KVM_SET_SREGS")
        try set(ckvm_KVM_SET_REGS, state.regs, "KVM_SET_REGS")
        try set(ckvm_KVM_SET_XCRS, state.xcrs, "KVM_SET_XCRS")
        try set(ckvm_KVM_SET_XSAVE, state.xsave, "KVM_SET_XSAVE")
        var refused: [UInt32] = []
        var rest = ArraySlice(state.msrs)
        while !rest.isEmpty {
            let set = try writeMSRs(Array(rest))
            if set < rest.count { refused.append(rest[rest.startIndex + set].index) }
            rest = rest.dropFirst(set + 1)
        }
        try set(ckvm_KVM_SET_VCPU_EVENTS, state.events, "KVM_SET_VCPU_EVENTS")
        try set(ckvm_KVM_SET_DEBUGREGS, state.debugRegs, "KVM_SET_DEBUGREGS")
        return refused
    }

    /// KVM_SET_MSRS: how many it set (it stops at the first it refuses).
    private func writeMSRs(_ msrs: [VCPUState.MSR]) throws(KVMError) -> Int {
        guard let raw = ckvm_msrs_alloc(UInt32(msrs.count)) else {
            throw .mapping(what: "kvm_msrs", bytes: msrs.count * Int(CKVM_SIZEOF_MSR_ENTRY), errno: ENOMEM)
        }
        defer { free(raw) }
        let entries = ckvm_msrs_entries(raw)!
        for (i, m) in msrs.enumerated() { entries[i] = kvm_msr_entry(index: m.index, reserved: 0, data: m.value) }
        let r = fd.withRaw { ckvm_ioctl_ptr($0, ckvm_KVM_SET_MSRS, raw) }
        guard r >= 0 else { throw .ioctl(call: "KVM_SET_MSRS", context: "vCPU \(id)", errno: Int32(-r)) }
        return min(r, msrs.count)
    }
}

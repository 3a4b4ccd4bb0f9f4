import CKVM

/// Puts a guest straight into 64-bit long mode: the host writes the page tables and
/// the GDT into guest memory and loads segments and control registers itself, so a
/// guest needs no real-mode or protected-mode boot code.
public enum LongMode {
    /// Bytes of page tables needed to identity-map `[0, bytes)` with 2 MiB pages:
    /// one PML4, one PDPT (up to 512 GiB) and one page directory per GiB.
    public static func pageTableBytes(mapping bytes: UInt64) -> Int {
        let gib = Int((bytes + (1 << 30) - 1) >> 30)
        return (2 + gib) * 4096
    }

    /// Writes an identity map of `[0, bytes)` (2 MiB pages, read/write, supervisor) at
    /// guest-physical `tableGPA`, through `hostBase`, the host address of guest-physical
    /// 0 in the same memslot. Returns the PML4's guest-physical address (for CR3).
    public static func writeIdentityMap(hostBase: UnsafeMutableRawPointer, tableGPA: UInt64, mapping bytes: UInt64) -> UInt64 {
        let present: UInt64 = 1, writable: UInt64 = 2, huge: UInt64 = 0x80
        let gib = Int((bytes + (1 << 30) - 1) >> 30)
        precondition(gib <= 512, "identity map above 512 GiB needs more than one PDPT")
        let pml4 = tableGPA, pdpt = tableGPA + 0x1000, pd0 = tableGPA + 0x2000
        func entry(_ gpa: UInt64, _ index: Int) -> UnsafeMutablePointer<UInt64> {
            (hostBase + Int(gpa) + index * 8).assumingMemoryBound(to: UInt64.self)
        }
        (hostBase + Int(tableGPA)).initializeMemory(as: UInt8.self, repeating: 0, count: pageTableBytes(mapping: bytes))
        entry(pml4, 0).pointee = pdpt | present | writable
        for g in 0..<gib {
            let pd = pd0 + UInt64(g) * 0x1000
            entry(pdpt, g).pointee = pd | present | writable
            for i in 0..<512 {
                let physical = (UInt64(g) << 30) + (UInt64(i) << 21)
                entry(pd, i).pointee = physical | present | writable | huge
            }
        }
        return pml4
    }

    /// Writes a GDT (null, 64-bit code 0x08, data 0x10, 64-bit TSS 0x18) at `gdtGPA`.
    /// The TSS itself is placed right after the GDT. Returns the GDT's limit.
    public static func writeGDT(hostBase: UnsafeMutableRawPointer, gdtGPA: UInt64) -> UInt16 {
        let gdt = (hostBase + Int(gdtGPA)).assumingMemoryBound(to: UInt64.self)
        let tss = gdtGPA + 0x100
        gdt[0] = 0
        gdt[1] = 0x00af_9b00_0000_ffff   // code: present, DPL 0, exec/read, accessed, L, G
        gdt[2] = 0x00cf_9300_0000_ffff   // data: present, DPL 0, read/write, accessed, D/B, G
        // 64-bit TSS descriptor, busy (type 0xb), limit 0x67, 16 bytes.
        gdt[3] = 0x67 | ((tss & 0xff_ffff) << 16) | (0x8b << 40) | (((tss >> 24) & 0xff) << 56)
        gdt[4] = tss >> 32
        return 5 * 8 - 1
    }

    /// Special registers for long mode: paging with `cr3`, PAE, LME/LMA, flat segments
    /// matching `writeGDT`, and no IDT (any exception ends in a shutdown exit).
    public static func specialRegisters(from base: SpecialRegisters, cr3: UInt64, gdtGPA: UInt64, gdtLimit: UInt16) -> SpecialRegisters {
        var s = base
        var code = kvm_segment()
        code.base = 0; code.limit = 0xffff_ffff; code.selector = 0x08
        code.type = 0xb; code.present = 1; code.dpl = 0; code.db = 0; code.s = 1; code.l = 1; code.g = 1
        var data = kvm_segment()
        data.base = 0; data.limit = 0xffff_ffff; data.selector = 0x10
        data.type = 0x3; data.present = 1; data.dpl = 0; data.db = 1; data.s = 1; data.l = 0; data.g = 1
        var tr = kvm_segment()
        tr.base = gdtGPA + 0x100; tr.limit = 0x67; tr.selector = 0x18
        tr.type = 0xb; tr.present = 1; tr.s = 0
        s.cs = code
        s.ds = data; s.es = data; s.fs = data; s.gs = data; s.ss = data
        s.tr = tr
        s.gdt.base = gdtGPA
        s.gdt.limit = gdtLimit
        s.idt.base = 0
        s.idt.limit = 0
        s.cr3 = cr3
        s.cr4 = 0x20                     // PAE
        s.cr0 = 0x8000_0033              // PG | NE | ET | MP | PE
        s.efer = 0x500                   // LMA | LME
        return s
    }

    /// Registers at entry: `rip`, `rsp`, and the first two SysV arguments in rdi and rsi.
    public static func registers(rip: UInt64, rsp: UInt64, rdi: UInt64, rsi: UInt64) -> Registers {
        var r = kvm_regs()
        r.rip = rip
        r.rsp = rsp
        r.rdi = rdi
        r.rsi = rsi
        r.rflags = 0x2
        return r
    }
}

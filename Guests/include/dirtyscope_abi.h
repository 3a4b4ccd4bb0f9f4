/*
 * dirtyscope_abi.h - the guest/host ABI of DirtyScope.
 *
 * Included by the guests (freestanding C) and by the host's C shim (CKVM), so
 * both sides agree on one layout. Guests/README.md explains it in prose.
 *
 * Guest physical memory:
 *   [0, DS_SYSTEM_BYTES)  system slot, not dirty-logged:
 *       DS_GDT_GPA        GDT (null, code64, data, TSS descriptor)
 *       DS_CONTROL_GPA    struct ds_control (DS_CONTROL_BYTES)
 *       DS_PAGETABLE_GPA  PML4, PDPT and page directories (2 MiB pages,
 *                         identity map of [0, DS_MAX_GPA))
 *       DS_LOAD_GPA       the guest's flat binary, entered at its first byte
 *       DS_STACK_GPA      one DS_STACK_BYTES stack per vCPU
 *   [DS_DATA_GPA, ...)    data slots, dirty-logged: the memory DirtyScope watches.
 *                         None covers [DS_MMIO_HOLE_GPA, DS_MMIO_HOLE_END): the IOAPIC
 *                         (0xfec00000) and local APIC (0xfee00000) pages live there, as
 *                         on real machines; a slot that would cross it starts above it.
 *
 * Entry: 64-bit long mode, CPL 0, paging on, interrupts off, no IDT.
 *   rdi = vCPU index, rsi = DS_CONTROL_GPA, rsp = top of this vCPU's stack.
 *
 * Stamps: every page write a guest makes is one aligned 8-byte store at the start
 * of the page: DS_STAMP(seq, vcpu). A vCPU takes a range of sequence numbers from
 * ds_control.stamp with one atomic add and uses them in order, so stamps are unique,
 * increase with every write of one vCPU, and follow the order in which vCPUs took
 * their ranges. One store, so the write that dirties a page is the write that
 * changes it. The host compares stamps to know, exactly, which pages changed.
 *
 * Port I/O (guest -> host calls), all 32-bit OUT:
 *   DS_PORT_PACE   value = writes since the last call. The host sleeps to hold
 *                  the vCPU's rate (ds_vcpu.rate). Only needed while rate > 0: the
 *                  host pauses a vCPU by kicking it out of KVM_RUN, not here.
 *   DS_PORT_PASS   value = passes done. In lockstep mode the host holds the vCPU
 *                  until the next iteration starts (dirty_log_perf_test style).
 *   DS_PORT_IDLE   nothing to do: the host sleeps up to 1 ms or until the
 *                  control block changes.
 *   DS_PORT_PUTC   one byte of console output.
 *   DS_PORT_PANIC  the guest gave up; value is a reason code.
 */
#ifndef DIRTYSCOPE_ABI_H
#define DIRTYSCOPE_ABI_H

#include <stdint.h>

#define DS_ABI_MAGIC        0x45504f4353445344ull /* "DSDSCOPE" */
#define DS_ABI_VERSION      2u

#define DS_MAX_VCPUS        64u
#define DS_MAX_REGIONS      32u

#define DS_GDT_GPA          0x00001000ull
#define DS_CONTROL_GPA      0x00004000ull
#define DS_CONTROL_BYTES    0x00008000ull
#define DS_PAGETABLE_GPA    0x00100000ull
#define DS_PAGETABLE_BYTES  0x00100000ull
#define DS_LOAD_GPA         0x00200000ull
#define DS_MAX_GUEST_BYTES  0x00100000ull
#define DS_STACK_GPA        0x00300000ull
#define DS_STACK_BYTES      0x00004000ull
#define DS_SYSTEM_BYTES     0x00400000ull
#define DS_DATA_GPA         0x40000000ull
/* No data memory here: the APIC/IOAPIC hole below 4 GiB. */
#define DS_MMIO_HOLE_GPA    0xc0000000ull
#define DS_MMIO_HOLE_END    0x100000000ull
/* One PML4 entry, one PDPT page and up to 254 page directories of 2 MiB pages. */
#define DS_MAX_GPA          (254ull << 30)

#define DS_PORT_PACE        0x5d0
#define DS_PORT_PASS        0x5d1
#define DS_PORT_IDLE        0x5d2
#define DS_PORT_PUTC        0x5d3
#define DS_PORT_PANIC       0x5d4

/* Workloads (ds_vcpu.workload). Parameters are in ds_vcpu.param[]. */
enum ds_workload {
    DS_WL_IDLE    = 0, /* no writes */
    DS_WL_SWEEP   = 1, /* sequential over the share, wrapping */
    DS_WL_RANDOM  = 2, /* uniform over the share */
    DS_WL_HOTSET  = 3, /* param[0] hot pages, param[1] percent of writes to them */
    DS_WL_STRIPES = 4, /* every param[0]-th page, sequentially */
    DS_WL_WAVE    = 5, /* random in a param[0]-page window that moves param[1] pages per pass */
    DS_WL_COMMAND = 6, /* write page command_page when command_seq changes (host-driven tests) */
};

/* A region of data pages, in the order that defines linear page numbers. */
struct ds_region {
    uint64_t gpa;
    uint64_t pages;
};

/* Per-vCPU block: 256 bytes, host-written fields first. */
struct ds_vcpu {
    /* host -> guest (the host may change these while the guest runs) */
    uint32_t workload;      /* enum ds_workload */
    uint32_t generation;    /* bumped after any change; the guest re-reads on change */
    uint64_t seed;          /* PRNG seed for random choices */
    uint64_t param[4];      /* workload parameters */
    uint64_t rate;          /* target writes per second, 0 = as fast as possible */
    uint64_t batch;         /* writes between DS_PORT_PACE calls while rate > 0 (>= 1) */
    uint64_t first_page;    /* this vCPU's share: linear pages [first_page, first_page + num_pages) */
    uint64_t num_pages;
    uint64_t pass_writes;   /* writes that make one pass; 0 = the workload's natural pass */
    uint64_t command_page;  /* DS_WL_COMMAND: linear page to write ... */
    uint64_t command_seq;   /* ... when this differs from command_ack */
    uint64_t host_reserved[3];
    /* guest -> host */
    uint64_t writes;        /* page writes done (a guest may add them up a chunk at a time) */
    uint64_t passes;        /* passes done */
    uint64_t heartbeat;     /* bumped every loop (chunk of writes, or idle call) */
    uint64_t command_ack;   /* last command_seq carried out */
    uint64_t guest_reserved[12];
};

struct ds_control {
    uint64_t magic;          /* DS_ABI_MAGIC, set by the host */
    uint32_t version;        /* DS_ABI_VERSION */
    uint32_t page_size;      /* host page size in bytes */
    uint32_t nr_vcpus;
    uint32_t nr_regions;
    uint64_t total_pages;    /* sum of region pages */
    uint64_t stamp;          /* last sequence number handed out; guests add atomically */
    uint64_t reserved[59];   /* pads the header to 1 KiB: vCPU blocks start cache-aligned */
    struct ds_region region[DS_MAX_REGIONS];
    struct ds_vcpu vcpu[DS_MAX_VCPUS];
};

/* The 8-byte value a guest stores at offset 0 of every page it writes: the sequence
 * number above, the writing vCPU in the low DS_STAMP_VCPU_BITS bits. */
#define DS_STAMP_VCPU_BITS  8
#define DS_STAMP(seq, vcpu) (((uint64_t)(seq) << DS_STAMP_VCPU_BITS) | (uint64_t)(vcpu))
/* DS_STAMP(seq + 1, vcpu) - DS_STAMP(seq, vcpu): the next stamp in a vCPU's range. */
#define DS_STAMP_STEP       (1ull << DS_STAMP_VCPU_BITS)

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct ds_vcpu) == 256, "ds_vcpu is 256 bytes");
_Static_assert(DS_MAX_VCPUS <= (1u << DS_STAMP_VCPU_BITS), "vCPU fits the stamp");
_Static_assert(sizeof(struct ds_control) <= DS_CONTROL_BYTES, "ds_control fits its area");
_Static_assert(__builtin_offsetof(struct ds_control, vcpu) == 1024, "vCPU blocks start at 1 KiB");
_Static_assert(DS_MAX_VCPUS * DS_STACK_BYTES <= DS_SYSTEM_BYTES - DS_STACK_GPA, "stacks fit");
_Static_assert(DS_DATA_GPA < DS_MMIO_HOLE_GPA && DS_MMIO_HOLE_GPA <= 0xfec00000ull &&
               DS_MMIO_HOLE_END >= 0xff000000ull, "the hole holds the IOAPIC and local APIC");
#endif

#endif /* DIRTYSCOPE_ABI_H */

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
 *       DS_STEAL_GPA      one 64-byte KVM steal-time record per vCPU (struct
 *                         kvm_steal_time, written by KVM: the host enables it)
 *       DS_PAGETABLE_GPA  PML4, PDPT and page directories (2 MiB pages,
 *                         identity map of [0, DS_MAX_GPA))
 *       DS_LOAD_GPA       the guest's flat binary, entered at its first byte
 *       DS_STACK_GPA      one DS_STACK_BYTES stack per vCPU
 *       DS_TIMELINE_GPA   one DS_TIMELINE_BYTES timeline per vCPU (struct ds_tick ring)
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
 * Timeline (ABI 3): each vCPU logs its own progress, so the host can see what dirty
 * tracking costs the guest. Every chunk of page writes ends with a DS_TICK_WORK record
 * (the guest's TSC, this vCPU's steal time, the writes since the previous record); the
 * first record after a host call the guest made (pace, pass, idle) is DS_TICK_RESUME,
 * so the host never counts time the guest asked to sleep as work. Records go into a
 * ring of DS_TIMELINE_RECORDS; ds_vcpu.timeline_head counts the records written and
 * each record carries its own index (seq), so the host detects records overwritten
 * before it read them. DS_PORT_CLOCK exchanges align the guest's TSC with the host's
 * monotonic clock.
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
 *   DS_PORT_CLOCK  a clock exchange, in two calls: value = exchange number n with
 *                  clock_before holding the TSC read just before; then value =
 *                  n | DS_CLOCK_AFTER with clock_after holding the TSC read just after
 *                  the first call returned. The host notes its clock at the first.
 */
#ifndef DIRTYSCOPE_ABI_H
#define DIRTYSCOPE_ABI_H

#include <stdint.h>

#define DS_ABI_MAGIC        0x45504f4353445344ull /* "DSDSCOPE" */
#define DS_ABI_VERSION      3u
/* Version 3 only adds to version 2 (the timeline, clock exchanges, steal time): a
 * version 2 guest runs unchanged, and the host shows that it logs no timeline. */
#define DS_ABI_MIN_COMPATIBLE 2u

#define DS_MAX_VCPUS        64u
#define DS_MAX_REGIONS      32u

#define DS_GDT_GPA          0x00001000ull
#define DS_CONTROL_GPA      0x00004000ull
#define DS_CONTROL_BYTES    0x00008000ull
#define DS_STEAL_GPA        0x0000c000ull
#define DS_STEAL_BYTES      64ull  /* per vCPU: struct kvm_steal_time, 64-byte aligned */
#define DS_PAGETABLE_GPA    0x00100000ull
#define DS_PAGETABLE_BYTES  0x00100000ull
#define DS_LOAD_GPA         0x00200000ull
#define DS_MAX_GUEST_BYTES  0x00100000ull
#define DS_STACK_GPA        0x00300000ull
#define DS_STACK_BYTES      0x00004000ull
#define DS_TIMELINE_GPA     0x00400000ull
#define DS_TIMELINE_BYTES   0x00020000ull  /* per vCPU: 4096 records */
#define DS_TIMELINE_RECORDS (DS_TIMELINE_BYTES / 32u)
#define DS_SYSTEM_BYTES     0x00c00000ull
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
#define DS_PORT_CLOCK       0x5d5
#define DS_CLOCK_AFTER      0x80000000u

/* ds_vcpu.flags (host -> guest, re-read when generation moves). */
#define DS_VCPU_F_TIMELINE  1u  /* log timeline records */

/* ds_tick.kind */
enum ds_tick_kind {
    DS_TICK_START  = 0, /* the first record: nothing before it to measure */
    DS_TICK_WORK   = 1, /* since the previous record: guest work, `writes` page writes */
    DS_TICK_RESUME = 2, /* since the previous record: a host call the guest made (not work) */
};

/* One timeline record: 32 bytes. */
struct ds_tick {
    uint64_t tsc;           /* the guest's TSC (rdtsc) when the record was written */
    uint64_t steal;         /* this vCPU's steal time then (ns, kvm_steal_time.steal; 0 if off) */
    uint32_t writes;        /* DS_TICK_WORK: page writes since the previous record */
    uint32_t kind;          /* enum ds_tick_kind */
    uint64_t seq;           /* this record's index: timeline_head before it was written */
};

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
    uint32_t flags;         /* DS_VCPU_F_* (ABI 3) */
    uint32_t host_pad;
    uint64_t clock_request; /* clock exchanges wanted: do one while clock_served < this (ABI 3) */
    uint64_t chunk_ticks;   /* TSC ticks a chunk of unpaced writes should take, so the timeline has a
                               record every so often however slow a write is (ABI 3; 0: 1024 writes) */
    /* guest -> host */
    uint64_t writes;        /* page writes done (a guest may add them up a chunk at a time) */
    uint64_t passes;        /* passes done */
    uint64_t heartbeat;     /* bumped every loop (chunk of writes, or idle call) */
    uint64_t command_ack;   /* last command_seq carried out */
    /* guest -> host, ABI 3 */
    uint64_t timeline_head; /* timeline records written (the ring holds the last DS_TIMELINE_RECORDS) */
    uint64_t clock_before;  /* the TSC just before the first DS_PORT_CLOCK call of an exchange */
    uint64_t clock_after;   /* the TSC just after it returned */
    uint64_t clock_served;  /* clock exchanges done */
    uint64_t guest_reserved[8];
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
_Static_assert(sizeof(struct ds_tick) == 32, "ds_tick is 32 bytes");
_Static_assert((DS_TIMELINE_RECORDS & (DS_TIMELINE_RECORDS - 1)) == 0, "timeline records: a power of two");
_Static_assert(DS_TIMELINE_GPA + DS_MAX_VCPUS * DS_TIMELINE_BYTES <= DS_SYSTEM_BYTES, "timelines fit");
_Static_assert(DS_STEAL_GPA >= DS_CONTROL_GPA + DS_CONTROL_BYTES &&
               DS_STEAL_GPA + DS_MAX_VCPUS * DS_STEAL_BYTES <= DS_PAGETABLE_GPA, "steal-time records fit");
_Static_assert(DS_MAX_VCPUS <= (1u << DS_STAMP_VCPU_BITS), "vCPU fits the stamp");
_Static_assert(sizeof(struct ds_control) <= DS_CONTROL_BYTES, "ds_control fits its area");
_Static_assert(__builtin_offsetof(struct ds_control, vcpu) == 1024, "vCPU blocks start at 1 KiB");
_Static_assert(DS_STACK_GPA + DS_MAX_VCPUS * DS_STACK_BYTES <= DS_TIMELINE_GPA, "stacks fit");
_Static_assert(DS_DATA_GPA < DS_MMIO_HOLE_GPA && DS_MMIO_HOLE_GPA <= 0xfec00000ull &&
               DS_MMIO_HOLE_END >= 0xff000000ull, "the hole holds the IOAPIC and local APIC");
#endif

#endif /* DIRTYSCOPE_ABI_H */

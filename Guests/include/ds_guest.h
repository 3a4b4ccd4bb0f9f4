/*
 * ds_guest.h - helpers for freestanding DirtyScope guests: port I/O, stamping,
 * a small PRNG and the linear page numbering of ds_control.region[].
 */
#ifndef DS_GUEST_H
#define DS_GUEST_H

#include "dirtyscope_abi.h"

static inline void ds_out(uint16_t port, uint32_t value)
{
    __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port) : "memory");
}

static inline void ds_pause(void)
{
    __asm__ volatile("pause" ::: "memory");
}

/* The guest's time-stamp counter. */
static inline uint64_t ds_rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* This vCPU's steal time in ns (time its thread waited for a host CPU), from the
 * kvm_steal_time record KVM keeps at DS_STEAL_GPA; 0 when the host did not enable it. */
static inline uint64_t ds_steal(uint64_t vcpu)
{
    return *(volatile uint64_t *)(uintptr_t)(DS_STEAL_GPA + vcpu * DS_STEAL_BYTES);
}

/* Appends a timeline record (ABI 3) for vCPU `vcpu`; *head is the guest's copy of
 * ds_vcpu.timeline_head, which it stores after the record. Returns the record's TSC. */
static inline uint64_t ds_tick(volatile struct ds_vcpu *me, uint64_t vcpu, uint64_t *head, uint32_t kind, uint32_t writes)
{
    uint64_t i = *head;
    volatile struct ds_tick *t = (volatile struct ds_tick *)(uintptr_t)
        (DS_TIMELINE_GPA + vcpu * DS_TIMELINE_BYTES + (i & (DS_TIMELINE_RECORDS - 1)) * sizeof(struct ds_tick));
    uint64_t tsc = ds_rdtsc();
    t->tsc = tsc;
    t->steal = ds_steal(vcpu);
    *(volatile uint64_t *)&t->writes = ((uint64_t)kind << 32) | writes;
    t->seq = i;
    *head = i + 1;
    __atomic_store_n((uint64_t *)&me->timeline_head, i + 1, __ATOMIC_RELEASE);
    return tsc;
}

/* One clock exchange (ABI 3): the TSC around a DS_PORT_CLOCK call, so the host can
 * place guest time on its own clock. `n` is the exchange's number (below 2^31). */
static inline void ds_clock_exchange(volatile struct ds_vcpu *me, uint64_t n)
{
    uint32_t id = (uint32_t)n & ~DS_CLOCK_AFTER;
    me->clock_before = ds_rdtsc();
    ds_out(DS_PORT_CLOCK, id);
    me->clock_after = ds_rdtsc();
    ds_out(DS_PORT_CLOCK, id | DS_CLOCK_AFTER);
    __atomic_store_n((uint64_t *)&me->clock_served, n, __ATOMIC_RELEASE);
}

/* xorshift64*: fast and good enough to spread writes. */
static inline uint64_t ds_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, n) for n > 0 (multiply-shift, no division). */
static inline uint64_t ds_below(uint64_t *state, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)ds_rand(state) * n) >> 64);
}

/* Guest physical (= virtual, identity-mapped) address of a linear data page. */
static inline volatile uint64_t *ds_page(volatile struct ds_control *ctl, uint64_t linear)
{
    uint32_t n = ctl->nr_regions;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t pages = ctl->region[i].pages;
        if (linear < pages)
            return (volatile uint64_t *)(uintptr_t)(ctl->region[i].gpa + linear * ctl->page_size);
        linear -= pages;
    }
    return 0;
}

/* Takes n > 0 sequence numbers with one atomic add; returns the first. Stamps
 * DS_STAMP(first, vcpu), + DS_STAMP_STEP, ... n of them, are this vCPU's alone. */
static inline uint64_t ds_take_stamps(volatile struct ds_control *ctl, uint64_t n)
{
    return __atomic_add_fetch((uint64_t *)&ctl->stamp, n, __ATOMIC_RELAXED) - n + 1;
}

/* Write one page: a fresh stamp at its start, in one store. Returns 0 if the page is out of range. */
static inline int ds_stamp_page(volatile struct ds_control *ctl, uint32_t vcpu, uint64_t linear)
{
    volatile uint64_t *p = ds_page(ctl, linear);
    if (!p)
        return 0;
    *p = DS_STAMP(ds_take_stamps(ctl, 1), vcpu);
    return 1;
}

#endif /* DS_GUEST_H */

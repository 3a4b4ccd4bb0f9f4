/*
 * clockprobe.c - what reading the guest's clock costs on this host.
 *
 * `dirtyscope bench --suite clock` runs it. vCPU 0 times three loops with the TSC, each
 * of `DS_PROBE_LOOPS` iterations: an empty one (dec, jnz), one with an `add` and one
 * with an `rdtsc` in it, and prints the ticks each took on the console:
 *     probe loops=N empty=T add=T rdtsc=T
 * so the cost of one rdtsc against one add comes out of the same loop overhead. It does
 * this five times, then does clock exchanges as the host asks (ABI 3), then idles.
 */
#include "ds_guest.h"

#define DS_PROBE_LOOPS 20000u
#define DS_PROBE_REPEATS 5

static void put(const char *s)
{
    while (*s)
        ds_out(DS_PORT_PUTC, (uint8_t)*s++);
}

static void put_number(uint64_t v)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        ds_out(DS_PORT_PUTC, (uint8_t)digits[--n]);
}

static uint64_t empty_loop(uint64_t n)
{
    uint64_t t0 = ds_rdtsc();
    __asm__ volatile("1: dec %0\n\tjnz 1b" : "+r"(n) : : "cc");
    return ds_rdtsc() - t0;
}

static uint64_t add_loop(uint64_t n)
{
    uint64_t t0 = ds_rdtsc(), x = 0;
    __asm__ volatile("1: add $1, %1\n\tdec %0\n\tjnz 1b" : "+r"(n), "+r"(x) : : "cc");
    return ds_rdtsc() - t0;
}

static uint64_t rdtsc_loop(uint64_t n)
{
    uint64_t t0 = ds_rdtsc();
    __asm__ volatile("1: rdtsc\n\tdec %0\n\tjnz 1b" : "+r"(n) : : "rax", "rdx", "cc");
    return ds_rdtsc() - t0;
}

__attribute__((section(".text.entry"), noreturn))
void _start(uint64_t vcpu, volatile struct ds_control *ctl)
{
    volatile struct ds_vcpu *me = &ctl->vcpu[vcpu];
    if (vcpu == 0) {
        for (int r = 0; r < DS_PROBE_REPEATS; r++) {
            uint64_t e = empty_loop(DS_PROBE_LOOPS), a = add_loop(DS_PROBE_LOOPS), t = rdtsc_loop(DS_PROBE_LOOPS);
            put("probe loops=");
            put_number(DS_PROBE_LOOPS);
            put(" empty=");
            put_number(e);
            put(" add=");
            put_number(a);
            put(" rdtsc=");
            put_number(t);
            ds_out(DS_PORT_PUTC, '\n');
        }
    }
    uint64_t served = me->clock_served;
    for (;;) {
        if (me->clock_request != served)
            ds_clock_exchange(me, ++served);
        else
            ds_out(DS_PORT_IDLE, 0);
    }
}

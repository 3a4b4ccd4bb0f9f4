/*
 * workload.c - DirtyScope's built-in guest.
 *
 * Each vCPU writes pages of its share of the data slots according to the
 * workload the host selects in its ds_vcpu block, stamping every page it
 * writes, and calls DS_PORT_PACE every `batch` writes so the host can hold the
 * rate, pause it, or change the workload. See Guests/README.md.
 */
#include "ds_guest.h"

struct state {
    uint32_t generation;
    uint32_t workload;
    uint64_t rng;
    uint64_t cursor;       /* sweep/stripes position, relative to the share */
    uint64_t wave_base;    /* wave window start, relative to the share */
    uint64_t pass_count;   /* writes in the current pass */
};

static void reload(volatile struct ds_vcpu *me, struct state *s)
{
    s->generation = me->generation;
    s->workload = me->workload;
    s->rng = me->seed ? me->seed : 0x9e3779b97f4a7c15ull;
    s->pass_count = 0;
}

/* Picks the share-relative page for the next write; sets *pass_end at a natural pass end. */
static uint64_t next_page(volatile struct ds_vcpu *me, struct state *s, uint64_t share, int *pass_end)
{
    uint64_t p0 = me->param[0], p1 = me->param[1];
    uint64_t page;

    switch (s->workload) {
    case DS_WL_SWEEP:
        page = s->cursor % share;
        s->cursor = page + 1;
        *pass_end = s->cursor >= share;
        return page;
    case DS_WL_RANDOM:
        return ds_below(&s->rng, share);
    case DS_WL_HOTSET: {
        uint64_t hot = p0 ? (p0 < share ? p0 : share) : 1;
        uint64_t percent = p1 > 100 ? 100 : p1;
        if (ds_below(&s->rng, 100) < percent || hot == share)
            return ds_below(&s->rng, hot);
        return hot + ds_below(&s->rng, share - hot);
    }
    case DS_WL_STRIPES: {
        uint64_t stride = p0 ? p0 : 1;
        uint64_t lanes = (share + stride - 1) / stride;
        page = (s->cursor % lanes) * stride;
        s->cursor = s->cursor % lanes + 1;
        *pass_end = s->cursor >= lanes;
        return page;
    }
    case DS_WL_WAVE: {
        uint64_t window = p0 ? (p0 < share ? p0 : share) : 1;
        page = (s->wave_base + ds_below(&s->rng, window)) % share;
        if (++s->cursor >= window) {
            s->cursor = 0;
            s->wave_base = (s->wave_base + (p1 ? p1 : 1)) % share;
            *pass_end = 1;
        }
        return page;
    }
    default:
        return 0;
    }
}

__attribute__((section(".text.entry"), noreturn))
void _start(uint64_t vcpu, volatile struct ds_control *ctl)
{
    volatile struct ds_vcpu *me = &ctl->vcpu[vcpu];
    struct state s = { 0 };
    uint32_t since_pace = 0;

    if (ctl->magic != DS_ABI_MAGIC || ctl->version != DS_ABI_VERSION || vcpu >= DS_MAX_VCPUS)
        ds_out(DS_PORT_PANIC, 1);
    reload(me, &s);

    for (;;) {
        me->heartbeat++;
        if (me->generation != s.generation)
            reload(me, &s);

        uint64_t share = me->num_pages;
        if (s.workload == DS_WL_IDLE || share == 0) {
            ds_out(DS_PORT_IDLE, 0);
            continue;
        }
        if (s.workload == DS_WL_COMMAND) {
            uint64_t seq = me->command_seq;
            if (seq != me->command_ack) {
                uint64_t linear = me->command_page;
                if (ds_stamp_page(ctl, (uint32_t)vcpu, linear)) {
                    me->writes++;
                    me->last_page = linear;
                }
                __atomic_store_n((uint64_t *)&me->command_ack, seq, __ATOMIC_RELEASE);
            }
            ds_out(DS_PORT_IDLE, 0);
            continue;
        }
        if (s.workload > DS_WL_COMMAND) {
            ds_out(DS_PORT_PANIC, 2);
            continue;
        }

        int pass_end = 0;
        uint64_t linear = me->first_page + next_page(me, &s, share, &pass_end);
        if (ds_stamp_page(ctl, (uint32_t)vcpu, linear)) {
            me->writes++;
            me->last_page = linear;
        }
        s.pass_count++;
        if (me->pass_writes ? s.pass_count >= me->pass_writes : pass_end) {
            s.pass_count = 0;
            me->passes++;
            ds_out(DS_PORT_PACE, since_pace + 1);
            since_pace = 0;
            ds_out(DS_PORT_PASS, (uint32_t)me->passes);
            continue;
        }
        uint64_t batch = me->batch ? me->batch : 1;
        if (++since_pace >= batch) {
            ds_out(DS_PORT_PACE, since_pace);
            since_pace = 0;
        }
    }
}

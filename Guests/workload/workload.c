/*
 * workload.c - DirtyScope's built-in guest.
 *
 * Each vCPU writes pages of its share of the data slots according to the
 * workload the host selects in its ds_vcpu block, stamping every page it
 * writes. It works in chunks. Between chunks it reads its block (generation,
 * rate), takes a range of stamp numbers with one atomic add and updates its
 * counters; inside a chunk it only picks pages and stores stamps, because on
 * hosts that emulate guest instructions every instruction per page written
 * costs (README.md, "Performance"). With a rate set, a chunk is `batch` writes
 * and ends with a DS_PORT_PACE call; with rate 0 the guest makes no host call
 * until a pass ends. Each chunk ends with a timeline record (ABI 3: the TSC, the
 * vCPU's steal time and the writes), and the first record after a host call is a
 * resume record, so the host can see what dirty tracking costs the guest. See
 * Guests/README.md.
 */
#include "ds_guest.h"

/* Writes per chunk when no rate is set: how often the guest looks at its block. With
 * chunk_ticks set and the timeline on, chunks shrink (to no fewer than CHUNK_MIN writes)
 * so that one takes about that long. */
#define CHUNK 1024u
#define CHUNK_MIN 16u

struct state {
    uint32_t generation;
    uint32_t workload;
    uint64_t param[2];
    uint64_t first;        /* linear page of the share's first page */
    uint64_t share;        /* pages in the share */
    uintptr_t base;        /* address of the share's first page if one region holds the share, else 0 */
    uint32_t shift;        /* log2(page size) */
    uint64_t rng;
    uint64_t cursor;       /* sweep/stripes position, wave writes in this window; share-relative */
    uint64_t wave_base;    /* wave window start, share-relative */
    uint64_t pass_count;   /* writes in the current pass */
    uint32_t log;          /* DS_VCPU_F_TIMELINE: log timeline records */
    uint32_t started;      /* a record has been logged since logging was (re)enabled */
    uint32_t resumed;      /* a host call was made since the last record */
    uint64_t head;         /* timeline records written */
    uint64_t clock_served; /* clock exchanges done */
    uint64_t last_tsc;     /* the last record's TSC */
    uint64_t chunk_ticks;  /* target length of an unpaced chunk, in TSC ticks (0: CHUNK writes) */
    uint64_t chunk;        /* writes in the next unpaced chunk */
};

static void reload(volatile struct ds_control *ctl, volatile struct ds_vcpu *me, struct state *s)
{
    s->generation = me->generation;
    s->workload = me->workload;
    s->param[0] = me->param[0];
    s->param[1] = me->param[1];
    s->first = me->first_page;
    s->share = me->num_pages;
    s->shift = (uint32_t)__builtin_ctz(ctl->page_size);
    s->base = 0;
    uint64_t linear = s->first;
    for (uint32_t i = 0; i < ctl->nr_regions; i++) {
        uint64_t pages = ctl->region[i].pages;
        if (linear < pages) {
            if (s->share <= pages - linear)
                s->base = (uintptr_t)(ctl->region[i].gpa + (linear << s->shift));
            break;
        }
        linear -= pages;
    }
    s->rng = me->seed ? me->seed : 0x9e3779b97f4a7c15ull;
    s->pass_count = 0;
    uint32_t log = me->flags & DS_VCPU_F_TIMELINE;
    if (log && !s->log)
        s->started = 0;
    s->log = log;
    s->chunk_ticks = log ? me->chunk_ticks : 0;
    s->chunk = CHUNK;
}

/* A timeline record: the first after logging starts is DS_TICK_START, the first after
 * a host call DS_TICK_RESUME (that time was not work), else DS_TICK_WORK. */
static inline void log_tick(volatile struct ds_vcpu *me, uint64_t vcpu, struct state *s, uint32_t kind, uint32_t writes)
{
    if (!s->started) {
        kind = DS_TICK_START;
        s->started = 1;
    }
    s->last_tsc = ds_tick(me, vcpu, &s->head, kind, writes);
    s->resumed = 0;
}

/* Stores `count` stamps from *stamp on, to share pages page, page + stride, ...
 * (all in the share), one region-contiguous run at a time. */
static void stamp_run(volatile struct ds_control *ctl, const struct state *s, uint64_t page,
                      uint64_t count, uint64_t stride, uint64_t *stamp)
{
    uint64_t st = *stamp;
    while (count) {
        uint64_t linear = s->first + page, i = 0;
        while (linear >= ctl->region[i].pages)
            linear -= ctl->region[i++].pages;
        uint64_t left = (ctl->region[i].pages - linear + stride - 1) / stride;
        uint64_t n = left < count ? left : count;
        volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)(ctl->region[i].gpa + (linear << s->shift));
        uint64_t step = (stride << s->shift) / sizeof(uint64_t);
        for (uint64_t k = 0; k < n; k++, p += step) {
            *p = st;
            st += DS_STAMP_STEP;
        }
        page += n * stride;
        count -= n;
    }
    *stamp = st;
}

/* The next share page of the hotset or wave workload; sets *pass_end at a natural pass end. */
static inline uint64_t pick(struct state *s, int *pass_end)
{
    switch (s->workload) {
    case DS_WL_HOTSET: {
        uint64_t hot = s->param[0] ? (s->param[0] < s->share ? s->param[0] : s->share) : 1;
        uint64_t percent = s->param[1] > 100 ? 100 : s->param[1];
        if (ds_below(&s->rng, 100) < percent || hot == s->share)
            return ds_below(&s->rng, hot);
        return hot + ds_below(&s->rng, s->share - hot);
    }
    case DS_WL_WAVE: {
        uint64_t window = s->param[0] ? (s->param[0] < s->share ? s->param[0] : s->share) : 1;
        uint64_t page = (s->wave_base + ds_below(&s->rng, window)) % s->share;
        if (++s->cursor >= window) {
            s->cursor = 0;
            s->wave_base = (s->wave_base + (s->param[1] ? s->param[1] : 1)) % s->share;
            *pass_end = 1;
        }
        return page;
    }
    default:
        return ds_below(&s->rng, s->share);
    }
}

/* Writes n uniformly random pages of the share; the generator stays in a register. */
static uint64_t write_random(volatile struct ds_control *ctl, struct state *s, uint64_t n, uint64_t *stamp)
{
    uint64_t rng = s->rng, st = *stamp, share = s->share;
    if (s->base) {
        uintptr_t base = s->base;
        uint32_t shift = s->shift;
        for (uint64_t k = 0; k < n; k++) {
            *(volatile uint64_t *)(base + (ds_below(&rng, share) << shift)) = st;
            st += DS_STAMP_STEP;
        }
    } else {
        for (uint64_t k = 0; k < n; k++) {
            *ds_page(ctl, s->first + ds_below(&rng, share)) = st;
            st += DS_STAMP_STEP;
        }
    }
    s->rng = rng;
    *stamp = st;
    return n;
}

/* Writes up to n pages of the workload, stamps from *stamp on; stops early at a
 * natural pass end (and then sets *pass_end). Returns the pages written. */
static uint64_t write_chunk(volatile struct ds_control *ctl, struct state *s, uint64_t n,
                            uint64_t *stamp, int *pass_end)
{
    switch (s->workload) {
    case DS_WL_SWEEP: {
        if (s->cursor >= s->share)  /* left over from another workload */
            s->cursor = 0;
        uint64_t run = s->share - s->cursor;
        if (run <= n) {
            n = run;
            *pass_end = 1;
        }
        stamp_run(ctl, s, s->cursor, n, 1, stamp);
        s->cursor = *pass_end ? 0 : s->cursor + n;
        return n;
    }
    case DS_WL_STRIPES: {
        uint64_t stride = s->param[0] ? s->param[0] : 1;
        uint64_t lanes = (s->share + stride - 1) / stride;
        if (s->cursor >= lanes)
            s->cursor = 0;
        uint64_t run = lanes - s->cursor;
        if (run <= n) {
            n = run;
            *pass_end = 1;
        }
        stamp_run(ctl, s, s->cursor * stride, n, stride, stamp);
        s->cursor = *pass_end ? 0 : s->cursor + n;
        return n;
    }
    case DS_WL_RANDOM:
        return write_random(ctl, s, n, stamp);
    default: {
        uint64_t st = *stamp, done = 0;
        if (s->base) {
            /* hotset and wave: pick, shift, add, store. */
            while (done < n && !*pass_end) {
                uint64_t page = pick(s, pass_end);
                *(volatile uint64_t *)(s->base + (page << s->shift)) = st;
                st += DS_STAMP_STEP;
                done++;
            }
        } else {
            while (done < n && !*pass_end) {
                uint64_t page = pick(s, pass_end);
                *ds_page(ctl, s->first + page) = st;
                st += DS_STAMP_STEP;
                done++;
            }
        }
        *stamp = st;
        return done;
    }
    }
}

__attribute__((section(".text.entry"), noreturn))
void _start(uint64_t vcpu, volatile struct ds_control *ctl)
{
    volatile struct ds_vcpu *me = &ctl->vcpu[vcpu];
    struct state s = { 0 };

    if (ctl->magic != DS_ABI_MAGIC || ctl->version != DS_ABI_VERSION || vcpu >= DS_MAX_VCPUS)
        ds_out(DS_PORT_PANIC, 1);
    s.head = me->timeline_head;
    s.clock_served = me->clock_served;
    reload(ctl, me, &s);

    for (;;) {
        me->heartbeat++;
        if (me->generation != s.generation)
            reload(ctl, me, &s);

        if (s.workload == DS_WL_IDLE || s.share == 0) {
            ds_out(DS_PORT_IDLE, 0);
            s.resumed = 1;
            continue;
        }
        if (me->clock_request != s.clock_served) {
            ds_clock_exchange(me, ++s.clock_served);
            s.resumed = 1;
        }
        if (s.workload == DS_WL_COMMAND) {
            uint64_t seq = me->command_seq;
            if (seq != me->command_ack) {
                if (ds_stamp_page(ctl, (uint32_t)vcpu, me->command_page))
                    me->writes++;
                __atomic_store_n((uint64_t *)&me->command_ack, seq, __ATOMIC_RELEASE);
            }
            ds_out(DS_PORT_IDLE, 0);
            s.resumed = 1;
            continue;
        }
        if (s.workload > DS_WL_COMMAND) {
            ds_out(DS_PORT_PANIC, 2);
            continue;
        }

        uint64_t rate = me->rate;
        uint64_t n = rate ? (me->batch ? me->batch : 1) : s.chunk;
        uint64_t pass_writes = me->pass_writes;
        if (pass_writes && n > pass_writes - s.pass_count)
            n = pass_writes - s.pass_count;
        if (s.log && (s.resumed || !s.started))
            log_tick(me, vcpu, &s, DS_TICK_RESUME, 0);
        uint64_t stamp = DS_STAMP(ds_take_stamps(ctl, n), vcpu);
        int pass_end = 0;
        uint64_t started = s.last_tsc;
        uint64_t done = write_chunk(ctl, &s, n, &stamp, &pass_end);
        if (s.log) {
            log_tick(me, vcpu, &s, DS_TICK_WORK, (uint32_t)done);
            /* A full unpaced chunk sets the next one's size: about chunk_ticks long. */
            uint64_t took = s.last_tsc - started;
            if (s.chunk_ticks && !rate && done == n && took) {
                uint64_t next = n * s.chunk_ticks / took;
                s.chunk = next < CHUNK_MIN ? CHUNK_MIN : next > CHUNK ? CHUNK : next;
            }
        }
        me->writes += done;
        s.pass_count += done;
        if (rate) {
            ds_out(DS_PORT_PACE, (uint32_t)done);
            s.resumed = 1;
        }
        if (pass_writes ? s.pass_count >= pass_writes : pass_end) {
            s.pass_count = 0;
            me->passes++;
            ds_out(DS_PORT_PASS, (uint32_t)me->passes);
            s.resumed = 1;
        }
    }
}

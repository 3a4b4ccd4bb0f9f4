#include "ckvm.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>

const unsigned long ckvm_KVM_GET_API_VERSION = KVM_GET_API_VERSION;
const unsigned long ckvm_KVM_CREATE_VM = KVM_CREATE_VM;
const unsigned long ckvm_KVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
const unsigned long ckvm_KVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
const unsigned long ckvm_KVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
const unsigned long ckvm_KVM_CREATE_VCPU = KVM_CREATE_VCPU;
const unsigned long ckvm_KVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
const unsigned long ckvm_KVM_GET_DIRTY_LOG = KVM_GET_DIRTY_LOG;
const unsigned long ckvm_KVM_CLEAR_DIRTY_LOG = KVM_CLEAR_DIRTY_LOG;
const unsigned long ckvm_KVM_ENABLE_CAP = KVM_ENABLE_CAP;
const unsigned long ckvm_KVM_RESET_DIRTY_RINGS = KVM_RESET_DIRTY_RINGS;
const unsigned long ckvm_KVM_GET_STATS_FD = KVM_GET_STATS_FD;
const unsigned long ckvm_KVM_RUN = KVM_RUN;
const unsigned long ckvm_KVM_GET_REGS = KVM_GET_REGS;
const unsigned long ckvm_KVM_SET_REGS = KVM_SET_REGS;
const unsigned long ckvm_KVM_GET_SREGS = KVM_GET_SREGS;
const unsigned long ckvm_KVM_SET_SREGS = KVM_SET_SREGS;
const unsigned long ckvm_KVM_SET_CPUID2 = KVM_SET_CPUID2;
const unsigned long ckvm_KVM_GET_MSRS = KVM_GET_MSRS;
const unsigned long ckvm_KVM_SET_MSRS = KVM_SET_MSRS;
const unsigned long ckvm_KVM_GET_TSC_KHZ = KVM_GET_TSC_KHZ;
const unsigned long ckvm_KVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;
const unsigned long ckvm_KVM_GET_XSAVE = KVM_GET_XSAVE;
const unsigned long ckvm_KVM_GET_XSAVE2 = KVM_GET_XSAVE2;
const unsigned long ckvm_KVM_SET_XSAVE = KVM_SET_XSAVE;
const unsigned long ckvm_KVM_GET_XCRS = KVM_GET_XCRS;
const unsigned long ckvm_KVM_SET_XCRS = KVM_SET_XCRS;
const unsigned long ckvm_KVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
const unsigned long ckvm_KVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;
const unsigned long ckvm_KVM_GET_DEBUGREGS = KVM_GET_DEBUGREGS;
const unsigned long ckvm_KVM_SET_DEBUGREGS = KVM_SET_DEBUGREGS;
const unsigned long ckvm_KVM_GET_MP_STATE = KVM_GET_MP_STATE;
const unsigned long ckvm_KVM_SET_MP_STATE = KVM_SET_MP_STATE;

const uint32_t ckvm_DIRTY_GFN_F_DIRTY = KVM_DIRTY_GFN_F_DIRTY;
const uint32_t ckvm_DIRTY_GFN_F_RESET = KVM_DIRTY_GFN_F_RESET;
const uint32_t ckvm_MSR_KVM_STEAL_TIME = MSR_KVM_STEAL_TIME;
const uint64_t ckvm_KVM_MSR_ENABLED = KVM_MSR_ENABLED;

_Static_assert(sizeof(struct kvm_dirty_log) == 16, "kvm_dirty_log");
_Static_assert(sizeof(struct kvm_clear_dirty_log) == 24, "kvm_clear_dirty_log");
_Static_assert(sizeof(struct kvm_userspace_memory_region) == 32, "kvm_userspace_memory_region");
_Static_assert(sizeof(struct kvm_dirty_gfn) == 16, "kvm_dirty_gfn");
_Static_assert(sizeof(struct kvm_stats_header) == 24, "kvm_stats_header");
_Static_assert(sizeof(struct kvm_stats_desc) == 16, "kvm_stats_desc (without name)");
_Static_assert(sizeof(struct kvm_msrs) == 8, "kvm_msrs header");
_Static_assert(sizeof(struct kvm_msr_entry) == 16, "kvm_msr_entry");
_Static_assert(sizeof(struct kvm_xsave) == 4096, "kvm_xsave without its extra");
_Static_assert(sizeof(struct kvm_xcrs) == 392, "kvm_xcrs");
_Static_assert(sizeof(struct kvm_vcpu_events) == 64, "kvm_vcpu_events");
_Static_assert(sizeof(struct kvm_debugregs) == 128, "kvm_debugregs");
_Static_assert(sizeof(struct kvm_mp_state) == 4, "kvm_mp_state");
_Static_assert(sizeof(struct kvm_steal_time) == DS_STEAL_BYTES, "one steal-time record per DS_STEAL_BYTES");

long ckvm_ioctl_ptr(int fd, unsigned long request, void *arg)
{
    long r = ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
}

long ckvm_ioctl_val(int fd, unsigned long request, unsigned long arg)
{
    long r = ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
}

struct kvm_cpuid2 *ckvm_cpuid2_alloc(uint32_t entries)
{
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + entries * sizeof(struct kvm_cpuid_entry2));
    if (c)
        c->nent = entries;
    return c;
}

struct kvm_cpuid_entry2 *ckvm_cpuid2_entries(struct kvm_cpuid2 *cpuid) { return cpuid->entries; }

struct kvm_msrs *ckvm_msrs_alloc(uint32_t entries)
{
    struct kvm_msrs *m = calloc(1, sizeof(*m) + entries * sizeof(struct kvm_msr_entry));
    if (m)
        m->nmsrs = entries;
    return m;
}

struct kvm_msr_entry *ckvm_msrs_entries(struct kvm_msrs *msrs) { return msrs->entries; }

struct kvm_msr_list *ckvm_msr_list_alloc(uint32_t entries)
{
    struct kvm_msr_list *m = calloc(1, sizeof(*m) + entries * sizeof(uint32_t));
    if (m)
        m->nmsrs = entries;
    return m;
}

uint32_t *ckvm_msr_list_indices(struct kvm_msr_list *list) { return list->indices; }

uint8_t ckvm_run_io_direction(const struct kvm_run *run) { return run->io.direction; }
uint8_t ckvm_run_io_size(const struct kvm_run *run) { return run->io.size; }
uint16_t ckvm_run_io_port(const struct kvm_run *run) { return run->io.port; }
uint32_t ckvm_run_io_count(const struct kvm_run *run) { return run->io.count; }
uint64_t ckvm_run_io_data_offset(const struct kvm_run *run) { return run->io.data_offset; }
uint64_t ckvm_run_fail_entry_reason(const struct kvm_run *run)
{
    return run->fail_entry.hardware_entry_failure_reason;
}
uint32_t ckvm_run_internal_suberror(const struct kvm_run *run) { return run->internal.suberror; }
void ckvm_run_set_immediate_exit(struct kvm_run *run, uint8_t value)
{
    __atomic_store_n(&run->immediate_exit, value, __ATOMIC_SEQ_CST);
}

uint32_t ckvm_load_acquire_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void ckvm_store_release_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
uint64_t ckvm_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
uint64_t ckvm_load_relaxed_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
void ckvm_store_release_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

uint64_t ckvm_run_mmio_address(const struct kvm_run *run) { return run->mmio.phys_addr; }
uint32_t ckvm_run_mmio_length(const struct kvm_run *run) { return run->mmio.len; }
uint8_t  ckvm_run_mmio_is_write(const struct kvm_run *run) { return run->mmio.is_write; }

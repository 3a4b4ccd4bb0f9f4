/*
 * ckvm.h - the C shim under DirtyScope's KVM library.
 *
 * Swift can import neither the _IOW-style request macros of <linux/kvm.h> nor the
 * variadic ioctl(2), so this header exports each request number as a constant and
 * offers non-variadic ioctl wrappers, plus the few atomics the dirty ring needs.
 * It also re-exports the guest/host ABI (dirtyscope_abi.h) to Swift.
 */
#ifndef CKVM_H
#define CKVM_H

#include <stdint.h>
#include <stddef.h>
#include <linux/kvm.h>
#include <asm/kvm_para.h>
#include "dirtyscope_abi.h"

/* Request numbers (pinned to their hex values by KVMTests). */
extern const unsigned long ckvm_KVM_GET_API_VERSION;
extern const unsigned long ckvm_KVM_CREATE_VM;
extern const unsigned long ckvm_KVM_CHECK_EXTENSION;
extern const unsigned long ckvm_KVM_GET_VCPU_MMAP_SIZE;
extern const unsigned long ckvm_KVM_GET_SUPPORTED_CPUID;
extern const unsigned long ckvm_KVM_CREATE_VCPU;
extern const unsigned long ckvm_KVM_SET_USER_MEMORY_REGION;
extern const unsigned long ckvm_KVM_GET_DIRTY_LOG;
extern const unsigned long ckvm_KVM_CLEAR_DIRTY_LOG;
extern const unsigned long ckvm_KVM_ENABLE_CAP;
extern const unsigned long ckvm_KVM_RESET_DIRTY_RINGS;
extern const unsigned long ckvm_KVM_GET_STATS_FD;
extern const unsigned long ckvm_KVM_RUN;
extern const unsigned long ckvm_KVM_GET_REGS;
extern const unsigned long ckvm_KVM_SET_REGS;
extern const unsigned long ckvm_KVM_GET_SREGS;
extern const unsigned long ckvm_KVM_SET_SREGS;
extern const unsigned long ckvm_KVM_SET_CPUID2;
extern const unsigned long ckvm_KVM_GET_MSRS;
extern const unsigned long ckvm_KVM_SET_MSRS;
extern const unsigned long ckvm_KVM_GET_TSC_KHZ;
extern const unsigned long ckvm_KVM_GET_MSR_INDEX_LIST;
extern const unsigned long ckvm_KVM_GET_XSAVE;
extern const unsigned long ckvm_KVM_GET_XSAVE2;
extern const unsigned long ckvm_KVM_SET_XSAVE;
extern const unsigned long ckvm_KVM_GET_XCRS;
extern const unsigned long ckvm_KVM_SET_XCRS;
extern const unsigned long ckvm_KVM_GET_VCPU_EVENTS;
extern const unsigned long ckvm_KVM_SET_VCPU_EVENTS;
extern const unsigned long ckvm_KVM_GET_DEBUGREGS;
extern const unsigned long ckvm_KVM_SET_DEBUGREGS;
extern const unsigned long ckvm_KVM_GET_MP_STATE;
extern const unsigned long ckvm_KVM_SET_MP_STATE;

/* kvm_dirty_gfn.flags bits (_BITULL macros Swift cannot import). */
extern const uint32_t ckvm_DIRTY_GFN_F_DIRTY;
extern const uint32_t ckvm_DIRTY_GFN_F_RESET;
/* Steal time (asm/kvm_para.h): the MSR, and its enable bit. */
extern const uint32_t ckvm_MSR_KVM_STEAL_TIME;
extern const uint64_t ckvm_KVM_MSR_ENABLED;

/* ioctl(2) with a pointer argument; returns -errno on failure. */
long ckvm_ioctl_ptr(int fd, unsigned long request, void *arg);
/* ioctl(2) with an integer argument; returns -errno on failure. */
long ckvm_ioctl_val(int fd, unsigned long request, unsigned long arg);

/* Allocates a kvm_cpuid2 with room for `entries`; free() it. */
struct kvm_cpuid2 *ckvm_cpuid2_alloc(uint32_t entries);
struct kvm_cpuid_entry2 *ckvm_cpuid2_entries(struct kvm_cpuid2 *cpuid);
/* A struct kvm_msrs with room for `entries` entries (calloc; free() it), and its entries. */
struct kvm_msrs *ckvm_msrs_alloc(uint32_t entries);
struct kvm_msr_entry *ckvm_msrs_entries(struct kvm_msrs *msrs);
/* A struct kvm_msr_list with room for `entries` indices (calloc; free() it), and its indices. */
struct kvm_msr_list *ckvm_msr_list_alloc(uint32_t entries);
uint32_t *ckvm_msr_list_indices(struct kvm_msr_list *list);

/* The kvm_run.io / .fail_entry / .internal views Swift cannot reach through the union. */
static inline struct kvm_run *ckvm_run(void *mapping) { return (struct kvm_run *)mapping; }
uint8_t  ckvm_run_io_direction(const struct kvm_run *run);
uint8_t  ckvm_run_io_size(const struct kvm_run *run);
uint16_t ckvm_run_io_port(const struct kvm_run *run);
uint32_t ckvm_run_io_count(const struct kvm_run *run);
uint64_t ckvm_run_io_data_offset(const struct kvm_run *run);
uint64_t ckvm_run_fail_entry_reason(const struct kvm_run *run);
uint32_t ckvm_run_internal_suberror(const struct kvm_run *run);
uint64_t ckvm_run_mmio_address(const struct kvm_run *run);
uint32_t ckvm_run_mmio_length(const struct kvm_run *run);
uint8_t  ckvm_run_mmio_is_write(const struct kvm_run *run);
void     ckvm_run_set_immediate_exit(struct kvm_run *run, uint8_t value);

/* kvm_dirty_gfn.flags, shared with the kernel: acquire load, release store. */
uint32_t ckvm_load_acquire_u32(const uint32_t *p);
void     ckvm_store_release_u32(uint32_t *p, uint32_t value);
uint64_t ckvm_load_acquire_u64(const uint64_t *p);
uint64_t ckvm_load_relaxed_u64(const uint64_t *p);
void     ckvm_store_release_u64(uint64_t *p, uint64_t value);

/* Struct sizes, pinned by _Static_assert in ckvm.c and checked again by KVMTests. */
enum {
    CKVM_SIZEOF_DIRTY_LOG = sizeof(struct kvm_dirty_log),
    CKVM_SIZEOF_CLEAR_DIRTY_LOG = sizeof(struct kvm_clear_dirty_log),
    CKVM_SIZEOF_USER_MEMORY_REGION = sizeof(struct kvm_userspace_memory_region),
    CKVM_SIZEOF_DIRTY_GFN = sizeof(struct kvm_dirty_gfn),
    CKVM_SIZEOF_STATS_HEADER = sizeof(struct kvm_stats_header),
    CKVM_SIZEOF_STATS_DESC = sizeof(struct kvm_stats_desc),
    CKVM_SIZEOF_MSR_ENTRY = sizeof(struct kvm_msr_entry),
    CKVM_SIZEOF_STEAL_TIME = sizeof(struct kvm_steal_time),
    CKVM_SIZEOF_XSAVE = sizeof(struct kvm_xsave),
    CKVM_SIZEOF_XCRS = sizeof(struct kvm_xcrs),
    CKVM_SIZEOF_VCPU_EVENTS = sizeof(struct kvm_vcpu_events),
    CKVM_SIZEOF_DEBUGREGS = sizeof(struct kvm_debugregs),
    CKVM_SIZEOF_DS_CONTROL = sizeof(struct ds_control),
    CKVM_SIZEOF_DS_VCPU = sizeof(struct ds_vcpu),
};

#endif /* CKVM_H */

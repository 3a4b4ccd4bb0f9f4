/* Shared by the hostile guests (Tests/KVMTests/HostileGuestTests.swift builds them with
 * the toolchain's clang and ld.lld, as GuestBuildPlugin builds Guests/). Each guest is one
 * file whose _start is entered with rdi = vCPU index, rsi = the control block. */
#include "dirtyscope_abi.h"

#define ENTRY __attribute__((section(".text.entry"), noreturn)) void _start(uint64_t vcpu, volatile struct ds_control *control)

static inline void out32(uint16_t port, uint32_t value) { __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port)); }
static inline void out8(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }

/* Reads guest-physical 0x30000000: mapped by the page tables, backed by no memslot (an MMIO exit). */
#include "hostile.h"
ENTRY {
    (void)vcpu; (void)control;
    (void)*(volatile uint32_t *)0x30000000ull;
    for (;;) {}
}

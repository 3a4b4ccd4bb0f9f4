/* Clears its own PML4 entry and reloads CR3: the next fetch cannot be translated. */
#include "hostile.h"
ENTRY {
    (void)vcpu; (void)control;
    *(volatile uint64_t *)DS_PAGETABLE_GPA = 0;
    __asm__ volatile("mov %%cr3, %%rax\n\tmov %%rax, %%cr3" : : : "rax", "memory");
    for (;;) {}
}

/* Divides by zero: #DE with no IDT escalates to a triple fault. */
#include "hostile.h"
ENTRY {
    (void)vcpu; (void)control;
    __asm__ volatile("xor %%ecx, %%ecx\n\tdiv %%ecx" : : : "eax", "ecx", "edx");
    for (;;) {}
}

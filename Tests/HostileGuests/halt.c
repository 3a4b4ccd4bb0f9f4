/* Executes HLT with interrupts off: nothing can wake it. */
#include "hostile.h"
ENTRY { (void)vcpu; (void)control; for (;;) __asm__ volatile("hlt"); }

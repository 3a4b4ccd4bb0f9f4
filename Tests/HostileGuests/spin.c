/* Spins forever without a port call: only a kick gets the host its vCPU back. */
#include "hostile.h"
ENTRY { (void)vcpu; (void)control; for (;;) __asm__ volatile(""); }

/* Prints newlines as fast as it can. */
#include "hostile.h"
ENTRY { (void)vcpu; (void)control; for (;;) out8(DS_PORT_PUTC, '\n'); }

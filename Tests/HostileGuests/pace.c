/* Sets its own rate to 1 write a second, then claims 0xffffffff writes at every pace call:
 * taken at its word, the host would sleep 136 years per call. */
#include "hostile.h"
ENTRY {
    control->vcpu[vcpu].rate = 1;
    for (;;) out32(DS_PORT_PACE, 0xffffffffu);
}

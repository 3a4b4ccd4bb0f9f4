/* Scribbles the control block with huge counts, bogus guest-physical addresses and
 * stamps, then keeps its counters huge and writes bogus stamps into data pages. */
#include "hostile.h"
ENTRY {
    control->nr_vcpus = 0xffffffffu;
    control->nr_regions = 0xffffffffu;
    control->total_pages = ~0ull;
    control->page_size = 1;
    for (uint32_t i = 0; i < DS_MAX_REGIONS; i++) {
        control->region[i].gpa = ~0ull - i;
        control->region[i].pages = ~0ull;
    }
    for (uint64_t n = 0;; n++) {
        control->stamp = ~0ull - n;
        control->vcpu[vcpu].writes = ~0ull - 1 - n;
        control->vcpu[vcpu].passes = ~0ull;
        control->vcpu[vcpu].heartbeat = ~0ull;
        control->vcpu[vcpu].command_ack = ~0ull;
        *(volatile uint64_t *)(DS_DATA_GPA + (n % 256) * 4096) = DS_STAMP(~0ull - n, 255);
        out32(DS_PORT_PACE, 1);
    }
}

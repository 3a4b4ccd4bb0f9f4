/* Floods the console: lines full of terminal escape sequences (clear screen, set the
 * title, colours, a bell), each ending with its vCPU's digit, from every vCPU at once. */
#include "hostile.h"
ENTRY {
    (void)control;
    static const char line[] = "\x1b[2J\x1b]0;pwned\x07\x1b[31mRED\x1b[0m from vCPU ";
    for (;;) {
        for (const char *p = line; *p; p++) out8(DS_PORT_PUTC, (uint8_t)*p);
        out8(DS_PORT_PUTC, (uint8_t)('0' + vcpu));
        out8(DS_PORT_PUTC, '\n');
    }
}

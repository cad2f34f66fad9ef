/*
 * The generic sequence: read the first registers of every BAR of any device.
 *
 * It knows nothing about the device, so it only reads: every 32-bit register in the
 * first 256 bytes of each memory BAR, every 4 bytes of the first min(size, 256) bytes of
 * each I/O BAR.  Reads can still have side effects (read-to-clear registers); that is the
 * point of recording them.
 */
#include "probe.h"

#define GENERIC_WINDOW_BYTES 256u

void seq_generic(void)
{
    for (int n = 0; n < 6; n++) {
        const struct bar *b = &target_bars[n];
        if (b->kind == BAR_NONE || b->size == 0)
            continue;
        if (b->base_hi) {
            kprintf("# bar %d skipped: above 4 GiB\n", n);
            continue;
        }
        uint32_t len = b->size < GENERIC_WINDOW_BYTES ? b->size : GENERIC_WINDOW_BYTES;
        kprintf("# generic bar %d %s 0x%x bytes\n", n, b->kind == BAR_IO ? "pio" : "mmio", len);
        for (uint32_t off = 0; off + 4 <= len; off += 4)
            bar_read32(n, off);
    }
}

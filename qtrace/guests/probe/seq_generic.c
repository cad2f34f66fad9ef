/*
 * The generic sequence: read the registers of any device without knowing it.
 *
 * Per BAR, in BAR order: every 32-bit register in the first min(size, 256) bytes (memory
 * BARs) or every 4 bytes of the first min(size, 256) bytes (I/O BARs); then the parts of
 * that BAR beyond those first bytes that the capabilities point at (virtio's common,
 * notify, ISR and device regions, the MSI-X table and PBA; how much of each: caps.c),
 * in capability-list order.  Only reads, and at most GENERIC_MAX_READS of them.  Reads
 * can still have side effects (read-to-clear registers such as virtio's ISR status);
 * that is the point of recording them.
 */
#include "probe.h"

#define GENERIC_WINDOW_BYTES 256u
#define GENERIC_MAX_READS 512u

static uint32_t reads_left = GENERIC_MAX_READS;

/* Reads the dwords of [start, end) of BAR n, clipped to the BAR and to the budget. */
static void read_range(int n, uint32_t start, uint32_t end, const char *what)
{
    const struct bar *b = &target_bars[n];
    const char *space = b->kind == BAR_IO ? "pio" : "mmio";
    start &= ~3u;
    if (end > b->size)
        end = b->size;
    if (start >= end)
        return;
    uint32_t len = (end - start) & ~3u;
    if (len / 4 > reads_left) {
        kprintf("# generic read budget (%u) reached\n", GENERIC_MAX_READS);
        len = reads_left * 4;
    }
    if (len == 0)
        return;
    if (what)
        kprintf("# generic bar %d %s 0x%x bytes at 0x%x %s\n", n, space, len, start, what);
    else
        kprintf("# generic bar %d %s 0x%x bytes\n", n, space, len);
    for (uint32_t off = start; off < start + len; off += 4)
        bar_read32(n, off);
    reads_left -= len / 4;
}

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
        uint32_t head = b->size < GENERIC_WINDOW_BYTES ? b->size : GENERIC_WINDOW_BYTES;
        read_range(n, 0, head, 0);
        /* This BAR's structures by offset (the capability list has its own order). */
        int order[MAX_STRUCTS], count = 0;
        for (int i = 0; i < n_target_structs; i++) {
            if (target_structs[i].bar != n || target_structs[i].offset >= b->size)
                continue;
            int j = count++;
            for (; j > 0 && target_structs[order[j - 1]].offset > target_structs[i].offset; j--)
                order[j] = order[j - 1];
            order[j] = i;
        }
        for (int k = 0; k < count; k++) {
            const struct bar_struct *s = &target_structs[order[k]];
            uint32_t start = s->offset < head ? head : s->offset;
            uint32_t end = s->length > b->size - s->offset ? b->size : s->offset + s->length;
            read_range(n, start, end, s->what);
        }
    }
}

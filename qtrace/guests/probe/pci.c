/*
 * PCI configuration space, the bus scan (bridges included) and the target's BARs.
 *
 * Config space is reached either through mechanism #1 (address to port 0xCF8, data at
 * 0xCFC-0xCFF) or, when the command line gives mmcfg=, through PCIe ECAM (the q35
 * machine).  Accesses to the target function are logged as ACC lines, accesses to
 * PCI-to-PCI bridges as "# acc BB:DD.F ..." lines; the address-port write to 0xCF8
 * belongs to the host bridge, and the other functions seen by the scan are not under
 * test, so neither is logged.
 *
 * The probe numbers the buses itself (depth first, in slot order, as SeaBIOS and Linux
 * do) and, for a target behind bridges, places the target's BARs in a window of its own
 * and opens the windows of every bridge on the way to cover them.
 */
#include "probe.h"

#define PCI_CONFIG_ADDRESS 0xCF8
#define PCI_CONFIG_DATA 0xCFC

#define PCI_VENDOR_ID 0x00
#define PCI_COMMAND 0x04
#define PCI_CLASS_REVISION 0x08
#define PCI_HEADER_TYPE 0x0E
#define PCI_BAR0 0x10
#define PCI_INTERRUPT_LINE 0x3C
#define PCI_INTERRUPT_PIN 0x3D

/* Type-1 (bridge) header, PCI-to-PCI Bridge Architecture Specification 1.2, 3.2. */
#define PCI_PRIMARY_BUS 0x18 /* dword: primary, secondary, subordinate, latency */
#define PCI_IO_BASE 0x1C     /* byte; PCI_IO_LIMIT at 0x1D: address bits 15:12 */
#define PCI_MEMORY_BASE 0x20 /* word; PCI_MEMORY_LIMIT at 0x22: address bits 31:20 */
#define PCI_PREF_MEMORY_BASE 0x24
#define PCI_PREF_BASE_UPPER32 0x28
#define PCI_PREF_LIMIT_UPPER32 0x2C
#define PCI_IO_BASE_UPPER16 0x30 /* dword: base upper 16, limit upper 16 */

#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4

#define HDR_TYPE_BRIDGE 1
#define MAX_BRIDGES 8
#define MAX_BRIDGE_DEPTH 8

/* Where the probe places a BAR itself: one the firmware left at 0, a 64-bit BAR the
 * firmware put above 4 GiB, and every BAR of a target behind a bridge.  SeaBIOS fills
 * its PCI memory top-down from 0xFEC00000 and its I/O from 0xC000 up, ACPI and SMBus
 * sit at 0xB000-0xB1FF, q35's ECAM at 0xB0000000-0xBFFFFFFF, so these ranges are free
 * on both machines (all of 0x04000000-0xFEBFFFFF is PCI address space with -m 64). */
#define PROBE_MMIO_BASE 0xC0000000u
#define PROBE_MMIO_END 0xE0000000u
#define PROBE_IO_BASE 0x8000u
#define PROBE_IO_END 0xA000u

#define BRIDGE_MEM_GRANULE 0x100000u /* memory windows: 1 MiB */
#define BRIDGE_IO_GRANULE 0x1000u    /* I/O windows: 4 KiB */

uint32_t pci_ecam_base;
/* dev 0xFF matches nothing until the command line names a target. */
struct pci_addr pci_target = {0, 0xFF, 0};
struct bar target_bars[6];
uint32_t target_header[16];

struct bridge {
    struct pci_addr addr;
    uint8_t primary, secondary, subordinate;
};

static struct bridge bridges[MAX_BRIDGES];
static int n_bridges;
static uint8_t last_bus;

static int same_addr(struct pci_addr a, struct pci_addr b)
{
    return a.bus == b.bus && a.dev == b.dev && a.fn == b.fn;
}

static int is_target(struct pci_addr a)
{
    return same_addr(a, pci_target);
}

static int is_bridge(struct pci_addr a)
{
    for (int i = 0; i < n_bridges; i++)
        if (same_addr(a, bridges[i].addr))
            return 1;
    return 0;
}

static uint32_t ecam_addr(struct pci_addr a, uint16_t off)
{
    return pci_ecam_base + ((uint32_t)a.bus << 20) + ((uint32_t)a.dev << 15) +
           ((uint32_t)a.fn << 12) + off;
}

static uint32_t cf8_addr(struct pci_addr a, uint16_t off)
{
    return 0x80000000u | ((uint32_t)a.bus << 16) | ((uint32_t)a.dev << 11) |
           ((uint32_t)a.fn << 8) | (off & 0xFCu);
}

/* Callers never pass an offset above 0xFF without ECAM (pci_cfg_extended()): through
 * the ports such an access would not happen at all, and must not be logged as if. */
static uint32_t cfg_read_raw(struct pci_addr a, uint16_t off, unsigned size)
{
    if (pci_ecam_base) {
        uint32_t addr = ecam_addr(a, off);
        if (size == 1)
            return mmio_read8(addr);
        if (size == 2)
            return mmio_read16(addr);
        return mmio_read32(addr);
    }
    outl(PCI_CONFIG_ADDRESS, cf8_addr(a, off));
    if (size == 1)
        return inb((uint16_t)(PCI_CONFIG_DATA + (off & 3)));
    if (size == 2)
        return inw((uint16_t)(PCI_CONFIG_DATA + (off & 2)));
    return inl(PCI_CONFIG_DATA);
}

static void cfg_write_raw(struct pci_addr a, uint16_t off, unsigned size, uint32_t v)
{
    if (pci_ecam_base) {
        uint32_t addr = ecam_addr(a, off);
        if (size == 1)
            mmio_write8(addr, (uint8_t)v);
        else if (size == 2)
            mmio_write16(addr, (uint16_t)v);
        else
            mmio_write32(addr, v);
        return;
    }
    outl(PCI_CONFIG_ADDRESS, cf8_addr(a, off));
    if (size == 1)
        outb((uint16_t)(PCI_CONFIG_DATA + (off & 3)), (uint8_t)v);
    else if (size == 2)
        outw((uint16_t)(PCI_CONFIG_DATA + (off & 2)), (uint16_t)v);
    else
        outl(PCI_CONFIG_DATA, v);
}

int pci_cfg_extended(void)
{
    return pci_ecam_base != 0;
}

static void log_cfg(struct pci_addr a, char op, uint16_t off, unsigned size, uint32_t v)
{
    if (is_target(a))
        acc_log(op, "cfg", -1, off, size, v);
    else if (is_bridge(a))
        kprintf("# acc %02x:%02x.%x %c cfg - 0x%x %u 0x%x\n", (uint32_t)a.bus, (uint32_t)a.dev,
                (uint32_t)a.fn, op, (uint32_t)off, size, v);
}

uint32_t pci_cfg_read(struct pci_addr a, uint16_t off, unsigned size)
{
    uint32_t v = cfg_read_raw(a, off, size);
    log_cfg(a, 'R', off, size, v);
    return v;
}

void pci_cfg_write(struct pci_addr a, uint16_t off, unsigned size, uint32_t value)
{
    cfg_write_raw(a, off, size, value);
    log_cfg(a, 'W', off, size, value);
}

/* Is there a function at this address, by its first dword (IDs) and its class dword?
 * Vendor ID 0xFFFF is what nothing answering reads as (PCI Local Bus 3.0, 6.2.1). A zero
 * vendor ID is no vendor's either, and an all-zero header is how a window that decodes
 * nothing reads, but a function may have no IDs of its own yet and still be there: QEMU's
 * stand-in LPC bridge for Intel graphics passthrough (vfio-pci-igd-lpc-bridge) takes the
 * host's IDs only once a graphics device is assigned and reads 0000:0000 until then, with
 * its class (ISA bridge) in place. So a zero ID with a class is a function. */
static int function_present(uint32_t id, uint32_t class_rev)
{
    if ((id & 0xFFFF) == 0xFFFF)
        return 0;
    return (id & 0xFFFF) != 0 || class_rev != 0;
}

static int probe_function(struct pci_addr a, int *found_target)
{
    uint32_t id = pci_cfg_read(a, PCI_VENDOR_ID, 4);
    if ((id & 0xFFFF) == 0xFFFF)
        return -1;
    uint32_t class_rev = pci_cfg_read(a, PCI_CLASS_REVISION, 4);
    if (!function_present(id, class_rev))
        return -1;
    uint32_t hdr = pci_cfg_read(a, PCI_HEADER_TYPE, 1);
    int t = is_target(a);
    kprintf("# pci %02x:%02x.%x %04x:%04x class %06x hdr %02x%s\n", (uint32_t)a.bus,
            (uint32_t)a.dev, (uint32_t)a.fn, id & 0xFFFF, id >> 16, class_rev >> 8, hdr,
            t ? " target" : "");
    if (t)
        *found_target = 1;
    if ((hdr & 0x7F) == HDR_TYPE_BRIDGE && !t && n_bridges < MAX_BRIDGES) {
        /* From now on this bridge's accesses are logged; these three came first. */
        bridges[n_bridges++].addr = a;
        log_cfg(a, 'R', PCI_VENDOR_ID, 4, id);
        log_cfg(a, 'R', PCI_CLASS_REVISION, 4, class_rev);
        log_cfg(a, 'R', PCI_HEADER_TYPE, 1, hdr);
    }
    return (int)hdr;
}

/* Q35's MCH (8086:29C0) holds the ECAM window in PCIEXBAR (config 0x60, 64-bit; bit 0
 * enable, bits 2:1 size).  The firmware programs it; reading it back through 0xCF8
 * tells whether mmcfg= matches what this machine really decodes. */
#define Q35_MCH_ID 0x29C08086u
#define Q35_PCIEXBAR 0x60

static void report_q35_pciexbar(struct pci_addr host)
{
    uint32_t saved = pci_ecam_base;
    pci_ecam_base = 0; /* through the ports, independent of the window under test */
    uint32_t lo = cfg_read_raw(host, Q35_PCIEXBAR, 4);
    uint32_t hi = cfg_read_raw(host, Q35_PCIEXBAR + 4, 4);
    pci_ecam_base = saved;
    uint32_t base = lo & 0xF0000000u;
    kprintf("# q35 pciexbar 0x%08x%08x %s\n", hi, lo, (lo & 1) ? "enabled" : "disabled");
    if (!(lo & 1) || hi != 0 || base != pci_ecam_base)
        kprintf("# warning mmcfg 0x%x differs from pciexbar\n", pci_ecam_base);
}

static void scan_bus(uint8_t bus, int depth, int *found);

/* Number the buses below bridge b (it sits on `bus`): secondary = the next free number,
 * subordinate 0xFF while its side is scanned, then the highest number found there. */
static void enumerate_bridge(struct bridge *b, uint8_t bus, int depth, int *found)
{
    uint32_t old = pci_cfg_read(b->addr, PCI_PRIMARY_BUS, 4);
    if (last_bus == 0xFF) {
        kprintf("# warning bridge %02x:%02x.%x: no bus numbers left\n", (uint32_t)b->addr.bus,
                (uint32_t)b->addr.dev, (uint32_t)b->addr.fn);
        return;
    }
    b->primary = bus;
    b->secondary = ++last_bus;
    pci_cfg_write(b->addr, PCI_PRIMARY_BUS, 4,
                  (old & 0xFF000000u) | 0x00FF0000u | ((uint32_t)b->secondary << 8) | bus);
    if (depth < MAX_BRIDGE_DEPTH)
        scan_bus(b->secondary, depth + 1, found);
    b->subordinate = last_bus;
    pci_cfg_write(b->addr, PCI_PRIMARY_BUS + 2, 1, b->subordinate);
    kprintf("# bridge %02x:%02x.%x bus %02x secondary %02x subordinate %02x\n",
            (uint32_t)b->addr.bus, (uint32_t)b->addr.dev, (uint32_t)b->addr.fn,
            (uint32_t)b->primary, (uint32_t)b->secondary, (uint32_t)b->subordinate);
}

static void probe_slot_function(struct pci_addr a, int depth, int *found, int *hdr_out)
{
    int before = n_bridges;
    int hdr = probe_function(a, found);
    *hdr_out = hdr;
    if (n_bridges > before)
        enumerate_bridge(&bridges[before], a.bus, depth, found);
}

static void scan_bus(uint8_t bus, int depth, int *found)
{
    for (uint8_t dev = 0; dev < 32; dev++) {
        struct pci_addr a = {bus, dev, 0};
        int hdr;
        probe_slot_function(a, depth, found, &hdr);
        if (hdr < 0 || !(hdr & 0x80))
            continue;
        for (uint8_t fn = 1; fn < 8; fn++) {
            a.fn = fn;
            probe_slot_function(a, depth, found, &hdr);
        }
    }
}

int pci_scan(void)
{
    int found = 0;
    if (pci_ecam_base) {
        struct pci_addr host = {0, 0, 0};
        uint32_t id = cfg_read_raw(host, PCI_VENDOR_ID, 4);
        kprintf("# ecam 0x%x host %04x:%04x\n", pci_ecam_base, id & 0xFFFF, id >> 16);
        if ((id & 0xFFFF) == 0xFFFF || (id & 0xFFFF) == 0) {
            fail("ecam-no-response");
            return 0;
        }
        if (id == Q35_MCH_ID)
            report_q35_pciexbar(host);
    }
    last_bus = 0;
    scan_bus(0, 0, &found);
    return found;
}

static uint32_t align_up(uint32_t v, uint32_t align)
{
    return (v + align - 1) & ~(align - 1);
}

/* Next free address in [*next, end) aligned to size (a power of two); 0 if none. */
static uint32_t alloc_range(uint32_t *next, uint32_t end, uint32_t size)
{
    uint32_t base = align_up(*next, size);
    if (base < *next || base >= end || size > end - base)
        return 0;
    *next = base + size;
    return base;
}

static uint32_t next_mmio = PROBE_MMIO_BASE, next_io = PROBE_IO_BASE;

static const char *const kind_names[] = {"none", "mem32", "mem64", "io"};

/* Size BAR n (decoding is off while we do), keep or assign its address, describe it.
 * `own` makes the probe assign it whatever the firmware chose (targets behind bridges).
 * Returns how many BAR slots it used (2 for a 64-bit BAR). */
static int setup_bar(int n, int own)
{
    struct pci_addr t = pci_target;
    uint16_t off = (uint16_t)(PCI_BAR0 + 4 * n);
    struct bar *b = &target_bars[n];
    uint32_t orig = pci_cfg_read(t, off, 4);

    pci_cfg_write(t, off, 4, 0xFFFFFFFFu);
    uint32_t probe = pci_cfg_read(t, off, 4);
    pci_cfg_write(t, off, 4, orig);

    int used = 1;
    if (orig & 1) {
        uint32_t mask = probe & ~3u;
        if (mask) {
            if (!(mask & 0xFFFF0000u))
                mask |= 0xFFFF0000u; /* 16-bit decoder: upper bits read as 0 */
            b->kind = BAR_IO;
            b->size = ~mask + 1;
            b->base = orig & ~3u;
        }
    } else {
        uint32_t type = (orig >> 1) & 3;
        uint32_t mask = probe & ~0xFu;
        b->prefetchable = (orig >> 3) & 1;
        b->base = orig & ~0xFu;
        if (type == 2 && n < 5) {
            uint32_t orig_hi = pci_cfg_read(t, (uint16_t)(off + 4), 4);
            pci_cfg_write(t, (uint16_t)(off + 4), 4, 0xFFFFFFFFu);
            uint32_t probe_hi = pci_cfg_read(t, (uint16_t)(off + 4), 4);
            pci_cfg_write(t, (uint16_t)(off + 4), 4, orig_hi);
            used = 2;
            if (mask || probe_hi) {
                b->kind = BAR_MEM64;
                b->base_hi = orig_hi;
                /* A BAR of 4 GiB or more cannot be reached without paging; keep size 0. */
                b->size = mask ? ~mask + 1 : 0;
            }
        } else if (mask) {
            b->kind = BAR_MEM32;
            b->size = ~mask + 1;
        }
    }

    if (b->kind == BAR_NONE) {
        kprintf("# bar %d none\n", n);
        return used;
    }
    if (b->kind == BAR_IO && b->size && (own || b->base == 0)) {
        uint32_t base = alloc_range(&next_io, PROBE_IO_END, b->size);
        if (base) {
            b->base = base;
            pci_cfg_write(t, off, 4, b->base | 1);
            kprintf("# bar %d assigned 0x%x\n", n, b->base);
        } else {
            kprintf("# warning bar %d: no room in the probe's I/O window\n", n);
        }
    } else if (b->kind != BAR_IO && b->size && (own || b->base_hi || b->base == 0)) {
        uint32_t base = alloc_range(&next_mmio, PROBE_MMIO_END, b->size);
        if (base) {
            uint32_t was_hi = b->base_hi, was = b->base;
            b->base = base;
            b->base_hi = 0;
            pci_cfg_write(t, off, 4, b->base | (orig & 0xFu));
            if (b->kind == BAR_MEM64)
                pci_cfg_write(t, (uint16_t)(off + 4), 4, 0);
            if (was_hi)
                kprintf("# bar %d moved below 4 GiB 0x%x (was 0x%x%08x)\n", n, b->base, was_hi,
                        was);
            else
                kprintf("# bar %d assigned 0x%x\n", n, b->base);
        } else {
            kprintf("# warning bar %d: no room in the probe's memory window\n", n);
        }
    }
    kprintf("# bar %d %s base 0x%x%s size 0x%x%s\n", n, kind_names[b->kind], b->base,
            b->base_hi ? " (above 4 GiB)" : "", b->size, b->prefetchable ? " prefetch" : "");
    return used;
}

/* Open the windows of every bridge between bus 0 and the target (top down) over what the
 * probe placed in its own ranges, close the prefetchable window, enable forwarding. */
static void open_bridge_windows(void)
{
    uint32_t mem_lo = PROBE_MMIO_BASE, mem_hi = align_up(next_mmio, BRIDGE_MEM_GRANULE);
    uint32_t io_lo = PROBE_IO_BASE, io_hi = align_up(next_io, BRIDGE_IO_GRANULE);
    int have_mem = next_mmio > PROBE_MMIO_BASE, have_io = next_io > PROBE_IO_BASE;

    for (int i = 0; i < n_bridges; i++) {
        const struct bridge *b = &bridges[i];
        if (pci_target.bus < b->secondary || pci_target.bus > b->subordinate)
            continue;
        struct pci_addr a = b->addr;
        uint32_t cmd = pci_cfg_read(a, PCI_COMMAND, 2);
        pci_cfg_write(a, PCI_MEMORY_BASE, 2, have_mem ? (mem_lo >> 16) & 0xFFF0u : 0xFFF0u);
        pci_cfg_write(a, PCI_MEMORY_BASE + 2, 2, have_mem ? ((mem_hi - 1) >> 16) & 0xFFF0u : 0);
        pci_cfg_write(a, PCI_PREF_MEMORY_BASE, 2, 0xFFF0u);
        pci_cfg_write(a, PCI_PREF_MEMORY_BASE + 2, 2, 0);
        pci_cfg_write(a, PCI_PREF_BASE_UPPER32, 4, 0);
        pci_cfg_write(a, PCI_PREF_LIMIT_UPPER32, 4, 0);
        pci_cfg_write(a, PCI_IO_BASE, 1, have_io ? (io_lo >> 8) & 0xF0u : 0xF0u);
        pci_cfg_write(a, PCI_IO_BASE + 1, 1, have_io ? ((io_hi - 1) >> 8) & 0xF0u : 0);
        pci_cfg_write(a, PCI_IO_BASE_UPPER16, 4, 0);
        pci_cfg_write(a, PCI_COMMAND, 2,
                      cmd | PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
        /* Read back what the bridge holds: a window it does not implement reads as 0. */
        uint32_t io = pci_cfg_read(a, PCI_IO_BASE, 2);
        uint32_t mem = pci_cfg_read(a, PCI_MEMORY_BASE, 4);
        cmd = pci_cfg_read(a, PCI_COMMAND, 2);
        uint32_t mem_base = (mem & 0xFFF0u) << 16, mem_limit = (mem & 0xFFF00000u) | 0xFFFFFu;
        uint32_t io_base = (io & 0xF0u) << 8, io_limit = ((io >> 8) & 0xF0u) << 8 | 0xFFFu;
        kprintf("# bridge %02x:%02x.%x window", (uint32_t)a.bus, (uint32_t)a.dev,
                (uint32_t)a.fn);
        if (mem_base <= mem_limit && have_mem)
            kprintf(" mem 0x%x-0x%x", mem_base, mem_limit);
        else
            kprintf(" mem off");
        if (io_base <= io_limit && have_io)
            kprintf(" io 0x%x-0x%x", io_base, io_limit);
        else
            kprintf(" io off");
        kprintf(" prefetch off command 0x%04x\n", cmd);
    }
}

int pci_setup_target(void)
{
    struct pci_addr t = pci_target;

    /* The whole type-0 header, one dword at a time. */
    uint32_t *hdr = target_header;
    for (uint16_t i = 0; i < 16; i++)
        hdr[i] = pci_cfg_read(t, (uint16_t)(4 * i), 4);
    if (!function_present(hdr[0], hdr[2])) {
        fail("target-absent");
        return 0;
    }
    kprintf("# target %02x:%02x.%x %04x:%04x class %06x subsys %04x:%04x\n",
            (uint32_t)t.bus, (uint32_t)t.dev, (uint32_t)t.fn, hdr[0] & 0xFFFF, hdr[0] >> 16,
            hdr[2] >> 8, hdr[11] & 0xFFFF, hdr[11] >> 16);
    /* A PCI-to-PCI bridge (header type 1) has two BARs, at 0x10 and 0x14; from 0x18 on
     * its header holds bus numbers and windows, which the enumeration above programmed. */
    uint32_t header_type = (hdr[3] >> 16) & 0x7F;
    if (header_type > 1) {
        fail("target-not-type0-or-1");
        return 0;
    }
    int bar_slots = header_type == 1 ? 2 : 6;
    if (header_type == 1)
        kprintf("# target is a bridge (header type 1): BARs 0-1 only\n");

    /* Decoding off while the BARs hold all-ones, then back on with bus mastering. */
    uint32_t cmd = pci_cfg_read(t, PCI_COMMAND, 2);
    pci_cfg_write(t, PCI_COMMAND, 2, cmd & ~(uint32_t)(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));

    int behind_bridge = t.bus != 0;
    for (int n = 0; n < bar_slots;)
        n += setup_bar(n, behind_bridge);
    if (behind_bridge)
        open_bridge_windows();

    pci_cfg_write(t, PCI_COMMAND, 2,
                  cmd | PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    cmd = pci_cfg_read(t, PCI_COMMAND, 2);
    uint32_t line = pci_cfg_read(t, PCI_INTERRUPT_LINE, 1);
    uint32_t pin = pci_cfg_read(t, PCI_INTERRUPT_PIN, 1);
    kprintf("# command 0x%04x irq line %u pin %u\n", cmd, line, pin);
    pci_walk_caps();
    return 1;
}

uint32_t bar_read32(int n, uint32_t off)
{
    const struct bar *b = &target_bars[n];
    uint32_t v;
    if (b->kind == BAR_IO) {
        v = inl((uint16_t)(b->base + off));
        acc_log('R', "pio", n, off, 4, v);
    } else {
        v = mmio_read32(b->base + off);
        acc_log('R', "mmio", n, off, 4, v);
    }
    return v;
}

void bar_write32(int n, uint32_t off, uint32_t value)
{
    const struct bar *b = &target_bars[n];
    if (b->kind == BAR_IO) {
        outl((uint16_t)(b->base + off), value);
        acc_log('W', "pio", n, off, 4, value);
    } else {
        mmio_write32(b->base + off, value);
        acc_log('W', "mmio", n, off, 4, value);
    }
}

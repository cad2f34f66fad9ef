/*
 * PCI configuration space, the bus-0 scan and the target's BARs.
 *
 * Config space is reached either through mechanism #1 (address to port 0xCF8, data at
 * 0xCFC-0xCFF) or, when the command line gives mmcfg=, through PCIe ECAM (the q35
 * machine).  Only accesses to the target function are logged as ACC lines: the
 * address-port write to 0xCF8 belongs to the host bridge, not to the device, and the
 * other functions seen by the scan are not under test.
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

#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4

/* Where a BAR the firmware left at 0 gets placed.  SeaBIOS assigns every BAR on the
 * machines qtrace uses, so these are a fallback for firmware-less boots only. */
#define FREE_MMIO_WINDOW 0xFEB00000u
#define FREE_IO_WINDOW 0xC000u

uint32_t pci_ecam_base;
/* dev 0xFF matches nothing until the command line names a target. */
struct pci_addr pci_target = {0, 0xFF, 0};
struct bar target_bars[6];

static int is_target(struct pci_addr a)
{
    return a.bus == pci_target.bus && a.dev == pci_target.dev && a.fn == pci_target.fn;
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
    if (off > 0xFF)
        return 0xFFFFFFFFu;
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
    if (off > 0xFF)
        return;
    outl(PCI_CONFIG_ADDRESS, cf8_addr(a, off));
    if (size == 1)
        outb((uint16_t)(PCI_CONFIG_DATA + (off & 3)), (uint8_t)v);
    else if (size == 2)
        outw((uint16_t)(PCI_CONFIG_DATA + (off & 2)), (uint16_t)v);
    else
        outl(PCI_CONFIG_DATA, v);
}

uint32_t pci_cfg_read(struct pci_addr a, uint16_t off, unsigned size)
{
    uint32_t v = cfg_read_raw(a, off, size);
    if (is_target(a))
        acc_log('R', "cfg", -1, off, size, v);
    return v;
}

void pci_cfg_write(struct pci_addr a, uint16_t off, unsigned size, uint32_t value)
{
    cfg_write_raw(a, off, size, value);
    if (is_target(a))
        acc_log('W', "cfg", -1, off, size, value);
}

static int probe_function(struct pci_addr a, int *found_target)
{
    uint32_t id = pci_cfg_read(a, PCI_VENDOR_ID, 4);
    if ((id & 0xFFFF) == 0xFFFF || (id & 0xFFFF) == 0)
        return -1;
    uint32_t class_rev = pci_cfg_read(a, PCI_CLASS_REVISION, 4);
    uint32_t hdr = pci_cfg_read(a, PCI_HEADER_TYPE, 1);
    int t = is_target(a);
    kprintf("# pci %02x:%02x.%x %04x:%04x class %06x hdr %02x%s\n", (uint32_t)a.bus,
            (uint32_t)a.dev, (uint32_t)a.fn, id & 0xFFFF, id >> 16, class_rev >> 8, hdr,
            t ? " target" : "");
    if (t)
        *found_target = 1;
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
    for (uint8_t dev = 0; dev < 32; dev++) {
        struct pci_addr a = {0, dev, 0};
        int hdr = probe_function(a, &found);
        if (hdr < 0 || !(hdr & 0x80))
            continue;
        for (uint8_t fn = 1; fn < 8; fn++) {
            a.fn = fn;
            probe_function(a, &found);
        }
    }
    return found;
}

static uint32_t align_up(uint32_t v, uint32_t align)
{
    return (v + align - 1) & ~(align - 1);
}

static const char *const kind_names[] = {"none", "mem32", "mem64", "io"};

/* Size BAR n (decoding is off while we do), keep or assign its address, describe it.
 * Returns how many BAR slots it used (2 for a 64-bit BAR). */
static int setup_bar(int n, uint32_t *next_mmio, uint32_t *next_io)
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
    if (b->kind == BAR_IO && b->base == 0 && b->size) {
        b->base = align_up(*next_io, b->size);
        *next_io = b->base + b->size;
        pci_cfg_write(t, off, 4, b->base | 1);
        kprintf("# bar %d assigned 0x%x\n", n, b->base);
    } else if (b->kind != BAR_IO && b->base == 0 && b->base_hi == 0 && b->size) {
        b->base = align_up(*next_mmio, b->size);
        *next_mmio = b->base + b->size;
        pci_cfg_write(t, off, 4, b->base | (orig & 0xFu));
        kprintf("# bar %d assigned 0x%x\n", n, b->base);
    }
    kprintf("# bar %d %s base 0x%x%s size 0x%x%s\n", n, kind_names[b->kind], b->base,
            b->base_hi ? " (above 4 GiB)" : "", b->size, b->prefetchable ? " prefetch" : "");
    return used;
}

int pci_setup_target(void)
{
    struct pci_addr t = pci_target;

    /* The whole type-0 header, one dword at a time. */
    uint32_t hdr[16];
    for (uint16_t i = 0; i < 16; i++)
        hdr[i] = pci_cfg_read(t, (uint16_t)(4 * i), 4);
    if ((hdr[0] & 0xFFFF) == 0xFFFF || (hdr[0] & 0xFFFF) == 0) {
        fail("target-absent");
        return 0;
    }
    kprintf("# target %02x:%02x.%x %04x:%04x class %06x subsys %04x:%04x\n",
            (uint32_t)t.bus, (uint32_t)t.dev, (uint32_t)t.fn, hdr[0] & 0xFFFF, hdr[0] >> 16,
            hdr[2] >> 8, hdr[11] & 0xFFFF, hdr[11] >> 16);
    if ((hdr[3] >> 16) & 0x7F) {
        fail("target-not-type0");
        return 0;
    }

    /* Decoding off while the BARs hold all-ones, then back on with bus mastering. */
    uint32_t cmd = pci_cfg_read(t, PCI_COMMAND, 2);
    pci_cfg_write(t, PCI_COMMAND, 2, cmd & ~(uint32_t)(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));

    uint32_t next_mmio = FREE_MMIO_WINDOW, next_io = FREE_IO_WINDOW;
    for (int n = 0; n < 6;)
        n += setup_bar(n, &next_mmio, &next_io);

    pci_cfg_write(t, PCI_COMMAND, 2,
                  cmd | PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    cmd = pci_cfg_read(t, PCI_COMMAND, 2);
    uint32_t line = pci_cfg_read(t, PCI_INTERRUPT_LINE, 1);
    uint32_t pin = pci_cfg_read(t, PCI_INTERRUPT_PIN, 1);
    kprintf("# command 0x%04x irq line %u pin %u\n", cmd, line, pin);
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

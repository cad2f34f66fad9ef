/*
 * The target's capability lists: walked, printed ("# cap" / "# ecap" lines) and mined
 * for the structures they place in the BARs (virtio's common/notify/ISR/device regions,
 * the MSI-X table and PBA), which the generic sequence then reads.
 *
 * Only reads, and every one goes through pci_cfg_read(), so each is an ACC cfg line like
 * any other access to the target.  The standard list starts at the pointer in config
 * 0x34 (already read with the header) when STATUS bit 4 says there is one; the extended
 * list at 0x100 is read only through ECAM (mechanism #1 cannot address it) and only for
 * a function with a PCI Express capability (as Linux decides whether config space is
 * 4 KiB).  Layouts: PCI Local Bus 3.0 6.7-6.8, PCI Power Management 1.2, PCI Express
 * Base 4.0 7.5-7.9, virtio 1.2 4.1.4.
 */
#include "probe.h"

#define PCI_STATUS_CAP_LIST (1u << 20) /* bit 4 of STATUS, in header dword 1 */
#define PCI_CAPABILITY_LIST 13         /* header dword 0x34 */
#define MAX_CAPS 48                    /* (256 - 64) / 4: more means a loop */
#define MAX_ECAPS 64

#define CAP_PM 0x01
#define CAP_MSI 0x05
#define CAP_VENDOR 0x09
#define CAP_PCIE 0x10
#define CAP_MSIX 0x11

#define PCIE_TYPE_RC_ENDPOINT 9
#define PCIE_TYPE_RC_EVENT_COLLECTOR 10

#define ECAP_DSN 0x03
#define ECAP_SRIOV 0x10

#define VIRTIO_VENDOR 0x1AF4u /* with device IDs 0x1000-0x107F (virtio 1.2 4.1.2) */
#define VIRTIO_DEVICE_FIRST 0x1000u
#define VIRTIO_DEVICE_LAST 0x107Fu
#define VIRTIO_CAP_COMMON 1
#define VIRTIO_CAP_NOTIFY 2
#define VIRTIO_CAP_ISR 3
#define VIRTIO_CAP_DEVICE 4
#define VIRTIO_CAP_PCI 5

/* How much of each structure the generic sequence reads (it also never passes the BAR's
 * end): a whole MSI-X table up to 16 vectors, 16 queue notify addresses, the one ISR
 * status register (virtio 4.1.4.5; reading it clears it). */
#define STRUCT_MAX_BYTES 256u
#define NOTIFY_READ_BYTES 64u
#define ISR_READ_BYTES 4u

struct bar_struct target_structs[MAX_STRUCTS];
int n_target_structs;

static void add_struct(int bar, uint32_t offset, uint32_t length, const char *what)
{
    if (bar < 0 || bar > 5 || n_target_structs >= MAX_STRUCTS || length == 0)
        return;
    if (length > STRUCT_MAX_BYTES)
        length = STRUCT_MAX_BYTES;
    struct bar_struct *s = &target_structs[n_target_structs++];
    s->bar = bar;
    s->offset = offset;
    s->length = length;
    s->what = what;
}

static const char *const cap_names[] = {
    [0x01] = "pm",      [0x02] = "agp",     [0x03] = "vpd",    [0x04] = "slot-id",
    [0x05] = "msi",     [0x06] = "hotswap", [0x07] = "pcix",   [0x08] = "ht",
    [0x09] = "vendor",  [0x0A] = "debug",   [0x0B] = "cpci",   [0x0C] = "hotplug",
    [0x0D] = "ssvid",   [0x0E] = "agp3",    [0x0F] = "secure", [0x10] = "pcie",
    [0x11] = "msix",    [0x12] = "sata",    [0x13] = "af",     [0x14] = "ea",
    [0x15] = "fpb",
};

static const char *const ecap_names[] = {
    [0x01] = "aer",      [0x02] = "vc",        [0x03] = "dsn",       [0x04] = "power-budget",
    [0x05] = "rclink",   [0x06] = "rclink-ctl", [0x07] = "rcec",     [0x08] = "mfvc",
    [0x09] = "vc9",      [0x0A] = "rcrb",      [0x0B] = "vendor",    [0x0D] = "acs",
    [0x0E] = "ari",      [0x0F] = "ats",       [0x10] = "sriov",     [0x11] = "mriov",
    [0x12] = "mcast",    [0x13] = "pri",       [0x15] = "rebar",     [0x16] = "dpa",
    [0x17] = "tph",      [0x18] = "ltr",       [0x19] = "secondary-pcie", [0x1A] = "pmux",
    [0x1B] = "pasid",    [0x1C] = "lnr",       [0x1D] = "dpc",       [0x1E] = "l1ss",
    [0x1F] = "ptm",      [0x23] = "dvsec",     [0x25] = "dlf",       [0x26] = "pl-16gt",
    [0x27] = "lmr",      [0x2A] = "pl-32gt",
};

static const char *name_of(const char *const *names, unsigned count, uint32_t id)
{
    if (id < count && names[id])
        return names[id];
    return "unknown";
}

static const char *const pcie_types[] = {
    "endpoint",          "legacy-endpoint",  "type-2",         "type-3",
    "root-port",         "upstream-port",    "downstream-port", "pcie-to-pci-bridge",
    "pci-to-pcie-bridge", "rc-endpoint",     "rc-event-collector",
};

static const char *const virtio_cap_names[] = {
    [1] = "common", [2] = "notify", [3] = "isr", [4] = "device", [5] = "pci-cfg",
    [8] = "shared-memory", [9] = "vendor",
};

static const char *const virtio_struct_names[] = {
    [1] = "virtio-common", [2] = "virtio-notify", [3] = "virtio-isr", [4] = "virtio-device",
};

static uint32_t cfg_read32(uint16_t off)
{
    return pci_cfg_read(pci_target, off, 4);
}

static void cap_virtio(uint16_t ptr, uint32_t head)
{
    uint32_t cap_len = (head >> 16) & 0xFF, type = head >> 24;
    const char *name = name_of(virtio_cap_names, 10, type);
    if (cap_len < 16) {
        kprintf("# cap 0x%x 0x09 vendor virtio %s length %u\n", ptr, name, cap_len);
        return;
    }
    /* The pci-cfg capability's data field (ptr + 16) is a window into the BARs: reading it
     * accesses whatever BAR/offset/length it was last given, so it is never read. */
    uint32_t bar = cfg_read32((uint16_t)(ptr + 4)) & 0xFF;
    uint32_t offset = cfg_read32((uint16_t)(ptr + 8));
    uint32_t length = cfg_read32((uint16_t)(ptr + 12));
    int notify = type == VIRTIO_CAP_NOTIFY && cap_len >= 20;
    uint32_t multiplier = notify ? cfg_read32((uint16_t)(ptr + 16)) : 0;
    kprintf("# cap 0x%x 0x09 vendor virtio %s bar %u offset 0x%x length 0x%x", ptr, name, bar,
            offset, length);
    if (notify)
        kprintf(" multiplier %u", multiplier);
    kprintf("\n");
    if (type == VIRTIO_CAP_COMMON || type == VIRTIO_CAP_DEVICE)
        add_struct((int)bar, offset, length, virtio_struct_names[type]);
    else if (type == VIRTIO_CAP_NOTIFY)
        add_struct((int)bar, offset, length < NOTIFY_READ_BYTES ? length : NOTIFY_READ_BYTES,
                   virtio_struct_names[type]);
    else if (type == VIRTIO_CAP_ISR)
        add_struct((int)bar, offset, length < ISR_READ_BYTES ? length : ISR_READ_BYTES,
                   virtio_struct_names[type]);
}

static void cap_msix(uint16_t ptr, uint32_t head)
{
    uint32_t ctl = head >> 16, vectors = (ctl & 0x7FF) + 1;
    uint32_t table = cfg_read32((uint16_t)(ptr + 4));
    uint32_t pba = cfg_read32((uint16_t)(ptr + 8));
    kprintf("# cap 0x%x 0x11 msix vectors %u table bar %u offset 0x%x pba bar %u offset 0x%x"
            "%s\n",
            ptr, vectors, table & 7, table & ~7u, pba & 7, pba & ~7u,
            (ctl & 0x8000) ? " enabled" : "");
    add_struct((int)(table & 7), table & ~7u, vectors * 16, "msix-table");
    add_struct((int)(pba & 7), pba & ~7u, ((vectors + 63) / 64) * 8, "msix-pba");
}

static void cap_msi(uint16_t ptr, uint32_t head)
{
    uint32_t ctl = head >> 16;
    kprintf("# cap 0x%x 0x05 msi vectors %u%s%s%s\n", ptr, 1u << ((ctl >> 1) & 7),
            (ctl & 0x80) ? " 64bit" : "", (ctl & 0x100) ? " maskable" : "",
            (ctl & 1) ? " enabled" : "");
}

static void cap_pm(uint16_t ptr, uint32_t head)
{
    uint32_t pmc = head >> 16;
    uint32_t pmcsr = cfg_read32((uint16_t)(ptr + 4)) & 0xFFFF;
    kprintf("# cap 0x%x 0x01 pm version %u pmcsr 0x%x state d%u\n", ptr, pmc & 7, pmcsr,
            pmcsr & 3);
}

/* Returns 1: the function has a PCI Express capability. */
static int cap_pcie(uint16_t ptr, uint32_t head)
{
    uint32_t caps = head >> 16, type = (caps >> 4) & 0xF;
    uint32_t devcap = cfg_read32((uint16_t)(ptr + 4));
    /* Root-complex endpoints and event collectors have no link registers. */
    int link = type != PCIE_TYPE_RC_ENDPOINT && type != PCIE_TYPE_RC_EVENT_COLLECTOR;
    uint32_t lnksta = link ? cfg_read32((uint16_t)(ptr + 0x10)) >> 16 : 0;
    kprintf("# cap 0x%x 0x10 pcie version %u %s devcap 0x%x", ptr, caps & 0xF,
            type < sizeof pcie_types / sizeof pcie_types[0] ? pcie_types[type] : "unknown",
            devcap);
    if (link)
        kprintf(" link speed %u width %u", lnksta & 0xF, (lnksta >> 4) & 0x3F);
    kprintf("\n");
    return 1;
}

static void walk_ecaps(void)
{
    uint16_t off = 0x100;
    for (int n = 0; n < MAX_ECAPS; n++) {
        uint32_t head = cfg_read32(off);
        if (head == 0 || head == 0xFFFFFFFFu) {
            if (off == 0x100)
                kprintf("# ecaps none\n");
            return;
        }
        uint32_t id = head & 0xFFFF, version = (head >> 16) & 0xF, next = (head >> 20) & 0xFFC;
        /* Every read before the line is printed: ACC lines must not split it. */
        uint32_t a = 0, b = 0;
        if (id == ECAP_DSN) {
            a = cfg_read32((uint16_t)(off + 4));
            b = cfg_read32((uint16_t)(off + 8));
        } else if (id == ECAP_SRIOV) {
            a = cfg_read32((uint16_t)(off + 0x0C));
        }
        kprintf("# ecap 0x%x 0x%04x %s version %u", off, id, name_of(ecap_names, 0x2B, id),
                version);
        if (id == ECAP_DSN)
            kprintf(" serial 0x%08x%08x", b, a);
        else if (id == ECAP_SRIOV)
            kprintf(" initial-vfs %u total-vfs %u", a & 0xFFFF, a >> 16);
        kprintf("\n");
        if (next < 0x100)
            return;
        off = (uint16_t)next;
    }
    kprintf("# warning ecap list longer than %u entries\n", MAX_ECAPS);
}

void pci_walk_caps(void)
{
    const uint32_t *hdr = target_header;
    uint32_t device = hdr[0] >> 16;
    int virtio = (hdr[0] & 0xFFFF) == VIRTIO_VENDOR && device >= VIRTIO_DEVICE_FIRST &&
                 device <= VIRTIO_DEVICE_LAST;
    int express = 0;

    if (!(hdr[1] & PCI_STATUS_CAP_LIST)) {
        kprintf("# caps none\n");
        return;
    }
    uint16_t ptr = (uint16_t)(hdr[PCI_CAPABILITY_LIST] & 0xFC);
    int n = 0;
    for (; ptr >= 0x40 && n < MAX_CAPS; n++) {
        uint32_t head = cfg_read32(ptr);
        uint32_t id = head & 0xFF;
        if (id == CAP_PM)
            cap_pm(ptr, head);
        else if (id == CAP_MSI)
            cap_msi(ptr, head);
        else if (id == CAP_MSIX)
            cap_msix(ptr, head);
        else if (id == CAP_PCIE)
            express = cap_pcie(ptr, head);
        else if (id == CAP_VENDOR && virtio)
            cap_virtio(ptr, head);
        else if (id == CAP_VENDOR)
            kprintf("# cap 0x%x 0x09 vendor length %u\n", ptr, (head >> 16) & 0xFF);
        else
            kprintf("# cap 0x%x 0x%02x %s\n", ptr, id, name_of(cap_names, 0x16, id));
        ptr = (uint16_t)((head >> 8) & 0xFC);
    }
    if (n == MAX_CAPS)
        kprintf("# warning capability list longer than %u entries\n", MAX_CAPS);

    if (!express)
        return;
    if (!pci_cfg_extended()) {
        kprintf("# ecaps skipped: config through 0xCF8 reaches only 256 bytes\n");
        return;
    }
    walk_ecaps();
}

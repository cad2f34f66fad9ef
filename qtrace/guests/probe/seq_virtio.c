/*
 * One complete request on a virtio PCI device through the modern (virtio 1.x) interface:
 * virtio-blk (read sector 0) and virtio-rng (16 bytes of entropy).
 *
 * Written from the Virtual I/O Device (VIRTIO) Version 1.2 specification: 4.1.4 (the
 * vendor capabilities that place the common, notify, ISR and device structures in the
 * BARs), 4.1.4.3 (common configuration layout), 3.1.1 (driver initialisation order),
 * 2.7 (split virtqueues), 4.1.5 (MSI-X vectors, notification), 5.2 (block device) and
 * 5.4 (entropy device).
 *
 * Order: find the structures; reset; ACKNOWLEDGE, DRIVER; read the device features,
 * accept VIRTIO_F_VERSION_1 only; FEATURES_OK (read back); MSI-X entry 0 for both the
 * configuration vector and queue 0's; queue 0 with at most 8 entries, its descriptor
 * table, driver (avail) and device (used) areas in guest memory; enable it; DRIVER_OK;
 * one request; the notify write (the kick); wait, interrupts enabled, until the used
 * index moves and vector 0's message has arrived; print what came back.
 */
#include "devio.h"

#define VIRTIO_VENDOR 0x1AF4u
#define VIRTIO_TRANSITIONAL_FIRST 0x1000u /* subsystem device ID = device type */
#define VIRTIO_TRANSITIONAL_LAST 0x103Fu
#define VIRTIO_MODERN_FIRST 0x1040u /* 0x1040 + device type */
#define VIRTIO_MODERN_LAST 0x107Fu
#define PCI_SUBSYSTEM 0x2C

#define VIRTIO_TYPE_BLOCK 2
#define VIRTIO_TYPE_ENTROPY 4

/* struct virtio_pci_cap (4.1.4): cfg_type in byte 3 of the first dword. */
#define CAP_VENDOR 0x09
#define VCAP_BAR 4
#define VCAP_OFFSET 8
#define VCAP_LENGTH 12
#define VCAP_NOTIFY_MULTIPLIER 16
#define VCAP_COMMON 1
#define VCAP_NOTIFY 2
#define VCAP_ISR 3
#define VCAP_DEVICE 4

/* Common configuration structure (4.1.4.3). */
#define CC_DEVICE_FEATURE_SELECT 0x00
#define CC_DEVICE_FEATURE 0x04
#define CC_DRIVER_FEATURE_SELECT 0x08
#define CC_DRIVER_FEATURE 0x0C
#define CC_CONFIG_MSIX_VECTOR 0x10
#define CC_NUM_QUEUES 0x12
#define CC_DEVICE_STATUS 0x14
#define CC_CONFIG_GENERATION 0x15
#define CC_QUEUE_SELECT 0x16
#define CC_QUEUE_SIZE 0x18
#define CC_QUEUE_MSIX_VECTOR 0x1A
#define CC_QUEUE_ENABLE 0x1C
#define CC_QUEUE_NOTIFY_OFF 0x1E
#define CC_QUEUE_DESC 0x20
#define CC_QUEUE_DRIVER 0x28
#define CC_QUEUE_DEVICE 0x30

/* Device status (2.1). */
#define STATUS_ACKNOWLEDGE 0x01u
#define STATUS_DRIVER 0x02u
#define STATUS_DRIVER_OK 0x04u
#define STATUS_FEATURES_OK 0x08u
#define STATUS_NEEDS_RESET 0x40u
#define STATUS_FAILED 0x80u

#define FEATURE_VERSION_1_HI 0x1u /* feature bit 32: bit 0 of feature word 1 */
#define NO_VECTOR 0xFFFFu

/* Split virtqueue (2.7). */
#define DESC_F_NEXT 0x1u
#define DESC_F_WRITE 0x2u
#define QUEUE_MAX_ENTRIES 8u

struct vq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vq_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[QUEUE_MAX_ENTRIES];
    uint16_t used_event;
};

struct vq_used_elem {
    uint32_t id;
    uint32_t len;
};

struct vq_used {
    uint16_t flags;
    uint16_t idx;
    struct vq_used_elem ring[QUEUE_MAX_ENTRIES];
    uint16_t avail_event;
};

_Static_assert(sizeof(struct vq_desc) == 16, "virtqueue descriptor is 16 bytes");

/* Block request header (5.2.6). */
struct blk_req_header {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

#define BLK_T_IN 0u
#define BLK_S_OK 0u
#define BLK_SECTOR_BYTES 512u
#define RNG_BYTES 16u

/* Guest memory (devio.h): rings first, then the buffers, each on its own boundary. */
#define VQ_DESC_ADDR (DMA_AREA_VIRTIO + 0x0000u)  /* 16-byte aligned */
#define VQ_AVAIL_ADDR (DMA_AREA_VIRTIO + 0x0100u) /* 2-byte aligned */
#define VQ_USED_ADDR (DMA_AREA_VIRTIO + 0x0200u)  /* 4-byte aligned */
#define REQ_HEADER_ADDR (DMA_AREA_VIRTIO + 0x1000u)
#define REQ_DATA_ADDR (DMA_AREA_VIRTIO + 0x1200u)
#define REQ_STATUS_ADDR (DMA_AREA_VIRTIO + 0x1400u)
#define STATUS_CANARY 0xA5u /* what the status byte holds until the device writes it */

#define vq_desc_table ((volatile struct vq_desc *)(uintptr_t)VQ_DESC_ADDR)
#define vq_avail ((volatile struct vq_avail *)(uintptr_t)VQ_AVAIL_ADDR)
#define vq_used ((volatile struct vq_used *)(uintptr_t)VQ_USED_ADDR)

struct vregion {
    int found;
    int bar;
    uint32_t offset;
    uint32_t length;
};

static struct vregion common, notify, isr, devcfg;
static uint32_t notify_multiplier;

static void read_vendor_caps(const struct cap_entry *caps, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t head = caps[i].head;
        uint16_t ptr = caps[i].ptr;
        uint32_t type = head >> 24, len = (head >> 16) & 0xFF;
        if ((head & 0xFF) != CAP_VENDOR || len < 16 || type < VCAP_COMMON || type > VCAP_DEVICE)
            continue;
        struct vregion *r = type == VCAP_COMMON   ? &common
                            : type == VCAP_NOTIFY ? &notify
                            : type == VCAP_ISR    ? &isr
                                                  : &devcfg;
        if (r->found) /* the driver uses the first of each type it can (4.1.4.1) */
            continue;
        r->bar = (int)(pci_cfg_read(pci_target, (uint16_t)(ptr + VCAP_BAR), 4) & 0xFF);
        r->offset = pci_cfg_read(pci_target, (uint16_t)(ptr + VCAP_OFFSET), 4);
        r->length = pci_cfg_read(pci_target, (uint16_t)(ptr + VCAP_LENGTH), 4);
        r->found = r->bar <= 5;
        if (type == VCAP_NOTIFY && len >= 20)
            notify_multiplier =
                pci_cfg_read(pci_target, (uint16_t)(ptr + VCAP_NOTIFY_MULTIPLIER), 4);
    }
}

static int region_ok(const struct vregion *r, uint32_t min_len, const char *why)
{
    if (!r->found || r->length < min_len) {
        fail(why);
        return 0;
    }
    return dev_bar_usable(r->bar, r->offset + min_len, why);
}

static uint8_t cc_read8(uint32_t off) { return dev_read8(common.bar, common.offset + off); }
static uint16_t cc_read16(uint32_t off) { return dev_read16(common.bar, common.offset + off); }
static uint32_t cc_read32(uint32_t off) { return dev_read32(common.bar, common.offset + off); }
static void cc_write8(uint32_t off, uint8_t v) { dev_write8(common.bar, common.offset + off, v); }
static void cc_write16(uint32_t off, uint16_t v) { dev_write16(common.bar, common.offset + off, v); }
static void cc_write32(uint32_t off, uint32_t v) { dev_write32(common.bar, common.offset + off, v); }

/* The device's type: modern IDs carry it, transitional ones in the subsystem ID. */
static uint32_t virtio_type(void)
{
    uint32_t id = pci_cfg_read(pci_target, 0x00, 4);
    uint32_t vendor = id & 0xFFFF, device = id >> 16;
    if (vendor != VIRTIO_VENDOR)
        return 0;
    if (device >= VIRTIO_MODERN_FIRST && device <= VIRTIO_MODERN_LAST)
        return device - VIRTIO_MODERN_FIRST;
    if (device >= VIRTIO_TRANSITIONAL_FIRST && device <= VIRTIO_TRANSITIONAL_LAST)
        return pci_cfg_read(pci_target, PCI_SUBSYSTEM, 4) >> 16;
    return 0;
}

static int used_moved(void)
{
    return vq_used->idx != 0;
}

/* Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK.  Returns 0 on failure. */
static int negotiate(void)
{
    cc_write8(CC_DEVICE_STATUS, 0);
    uint32_t polls = 0;
    while (cc_read8(CC_DEVICE_STATUS) != 0) {
        if (++polls >= 1000) {
            timeout("virtio-reset");
            return 0;
        }
    }
    uint8_t status = STATUS_ACKNOWLEDGE;
    cc_write8(CC_DEVICE_STATUS, status);
    status |= STATUS_DRIVER;
    cc_write8(CC_DEVICE_STATUS, status);

    cc_write32(CC_DEVICE_FEATURE_SELECT, 0);
    uint32_t lo = cc_read32(CC_DEVICE_FEATURE);
    cc_write32(CC_DEVICE_FEATURE_SELECT, 1);
    uint32_t hi = cc_read32(CC_DEVICE_FEATURE);
    kprintf("# virtio device features 0x%08x%08x\n", hi, lo);
    if (!(hi & FEATURE_VERSION_1_HI)) {
        fail("virtio-no-version-1");
        return 0;
    }
    cc_write32(CC_DRIVER_FEATURE_SELECT, 0);
    cc_write32(CC_DRIVER_FEATURE, 0);
    cc_write32(CC_DRIVER_FEATURE_SELECT, 1);
    cc_write32(CC_DRIVER_FEATURE, FEATURE_VERSION_1_HI);
    status |= STATUS_FEATURES_OK;
    cc_write8(CC_DEVICE_STATUS, status);
    uint8_t back = cc_read8(CC_DEVICE_STATUS);
    kprintf("# virtio driver features 0x%08x%08x status 0x%02x\n", FEATURE_VERSION_1_HI, 0u,
            back);
    if (!(back & STATUS_FEATURES_OK)) {
        fail("virtio-features-refused");
        return 0;
    }
    return 1;
}

/* Queue 0 with vector 0: returns its size, 0 on failure. */
static uint16_t setup_queue(uint16_t *notify_off)
{
    uint16_t queues = cc_read16(CC_NUM_QUEUES);
    cc_write16(CC_QUEUE_SELECT, 0);
    uint16_t max = cc_read16(CC_QUEUE_SIZE);
    kprintf("# virtio queues %u queue 0 max size %u\n", queues, max);
    if (queues == 0 || max == 0) {
        fail("virtio-no-queue");
        return 0;
    }
    uint16_t size = max < QUEUE_MAX_ENTRIES ? max : (uint16_t)QUEUE_MAX_ENTRIES;
    if (size != max)
        cc_write16(CC_QUEUE_SIZE, size);
    cc_write16(CC_QUEUE_MSIX_VECTOR, 0);
    if (cc_read16(CC_QUEUE_MSIX_VECTOR) != 0) {
        fail("virtio-queue-vector-refused");
        return 0;
    }

    memset((void *)(uintptr_t)DMA_AREA_VIRTIO, 0, 0x2000);
    dev_write64(common.bar, common.offset + CC_QUEUE_DESC, VQ_DESC_ADDR, 0);
    dev_write64(common.bar, common.offset + CC_QUEUE_DRIVER, VQ_AVAIL_ADDR, 0);
    dev_write64(common.bar, common.offset + CC_QUEUE_DEVICE, VQ_USED_ADDR, 0);
    *notify_off = cc_read16(CC_QUEUE_NOTIFY_OFF);
    cc_write16(CC_QUEUE_ENABLE, 1);
    kprintf("# virtio queue 0 size %u desc 0x%x avail 0x%x used 0x%x notify_off %u\n", size,
            VQ_DESC_ADDR, VQ_AVAIL_ADDR, VQ_USED_ADDR, *notify_off);
    return size;
}

static void set_desc(unsigned i, uint32_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    vq_desc_table[i].addr = addr;
    vq_desc_table[i].len = len;
    vq_desc_table[i].flags = flags;
    vq_desc_table[i].next = next;
}

/* The request's descriptor chain, starting at descriptor 0. */
static void build_request(uint32_t type)
{
    volatile uint8_t *data = (volatile uint8_t *)(uintptr_t)REQ_DATA_ADDR;
    if (type == VIRTIO_TYPE_BLOCK) {
        volatile struct blk_req_header *h =
            (volatile struct blk_req_header *)(uintptr_t)REQ_HEADER_ADDR;
        h->type = BLK_T_IN;
        h->reserved = 0;
        h->sector = 0;
        for (unsigned i = 0; i < BLK_SECTOR_BYTES; i++)
            data[i] = 0x5A; /* so a sector of zeros is visibly written */
        *(volatile uint8_t *)(uintptr_t)REQ_STATUS_ADDR = STATUS_CANARY;
        set_desc(0, REQ_HEADER_ADDR, sizeof(struct blk_req_header), DESC_F_NEXT, 1);
        set_desc(1, REQ_DATA_ADDR, BLK_SECTOR_BYTES, DESC_F_WRITE | DESC_F_NEXT, 2);
        set_desc(2, REQ_STATUS_ADDR, 1, DESC_F_WRITE, 0);
        kprintf("# virtio-blk request: T_IN sector 0, header 0x%x data 0x%x (512) status 0x%x\n",
                REQ_HEADER_ADDR, REQ_DATA_ADDR, REQ_STATUS_ADDR);
    } else {
        for (unsigned i = 0; i < RNG_BYTES; i++)
            data[i] = 0;
        set_desc(0, REQ_DATA_ADDR, RNG_BYTES, DESC_F_WRITE, 0);
        kprintf("# virtio-rng request: %u bytes at 0x%x\n", RNG_BYTES, REQ_DATA_ADDR);
    }
    vq_avail->flags = 0; /* we want the interrupt */
    vq_avail->ring[0] = 0;
    compiler_barrier(); /* the ring entry before the index (x86 keeps store order) */
    vq_avail->idx = 1;
    compiler_barrier();
}

static void report(uint32_t type)
{
    volatile uint8_t *data = (volatile uint8_t *)(uintptr_t)REQ_DATA_ADDR;
    uint32_t id = vq_used->ring[0].id, len = vq_used->ring[0].len;
    kprintf("# virtio used idx %u id %u len %u, interrupts %u (other vectors %u)\n",
            (uint32_t)vq_used->idx, id, len, irq_count, irq_other);
    if (vq_used->idx != 1 || id != 0)
        fail("virtio-used-unexpected");
    if (type == VIRTIO_TYPE_BLOCK) {
        uint8_t status = *(volatile uint8_t *)(uintptr_t)REQ_STATUS_ADDR;
        unsigned nonzero = 0;
        for (unsigned i = 0; i < BLK_SECTOR_BYTES; i++)
            nonzero += data[i] != 0;
        kprintf("# virtio-blk status %u, sector 0: %u of 512 bytes nonzero\n", status, nonzero);
        print_hex("virtio-blk sector 0 first 16 bytes", data, 16);
        if (status != BLK_S_OK)
            fail("virtio-blk-status");
        if (len != BLK_SECTOR_BYTES + 1)
            fail("virtio-blk-used-len");
    } else {
        unsigned nonzero = 0;
        for (unsigned i = 0; i < RNG_BYTES; i++)
            nonzero += data[i] != 0;
        /* The bytes themselves are random: only whether they came is printed. */
        kprintf("# virtio-rng %s\n", nonzero ? "buffer filled" : "buffer still zero");
        if (len != RNG_BYTES || !nonzero)
            fail("virtio-rng-no-entropy");
    }
}

void seq_virtio(void)
{
    uint32_t type = virtio_type();
    if (type != VIRTIO_TYPE_BLOCK && type != VIRTIO_TYPE_ENTROPY) {
        kprintf("# virtio device type %u: this sequence drives block (2) and entropy (4)\n",
                type);
        fail("virtio-unsupported-type");
        return;
    }
    kprintf("# virtio device type %u (%s)\n", type,
            type == VIRTIO_TYPE_BLOCK ? "block" : "entropy");

    struct cap_entry caps[MAX_SEQ_CAPS];
    int n = caps_read(caps, MAX_SEQ_CAPS);
    read_vendor_caps(caps, n);
    if (!region_ok(&common, 0x38, "virtio-no-common-cfg") ||
        !region_ok(&notify, 2, "virtio-no-notify-cfg"))
        return;
    if (type == VIRTIO_TYPE_BLOCK && !region_ok(&devcfg, 8, "virtio-no-device-cfg"))
        return;
    kprintf("# virtio common bar %d 0x%x notify bar %d 0x%x multiplier %u device bar %d 0x%x\n",
            common.bar, common.offset, notify.bar, notify.offset, notify_multiplier, devcfg.bar,
            devcfg.offset);

    if (!negotiate())
        return;

    if (type == VIRTIO_TYPE_BLOCK) {
        /* capacity (le64, in 512-byte sectors), read between two generation reads */
        uint8_t gen = cc_read8(CC_CONFIG_GENERATION);
        uint32_t cap_lo = dev_read32(devcfg.bar, devcfg.offset + 0);
        uint32_t cap_hi = dev_read32(devcfg.bar, devcfg.offset + 4);
        uint8_t gen2 = cc_read8(CC_CONFIG_GENERATION);
        if (cap_hi)
            kprintf("# virtio-blk capacity 0x%x%08x sectors", cap_hi, cap_lo);
        else
            kprintf("# virtio-blk capacity %u sectors", cap_lo);
        kprintf(" (config generation %u, then %u)\n", gen, gen2);
    }

    irq_init();
    struct msix_info msix;
    if (!msix_setup(caps, n, &msix, "virtio-no-msix"))
        return;
    cc_write16(CC_CONFIG_MSIX_VECTOR, 0);
    if (cc_read16(CC_CONFIG_MSIX_VECTOR) == NO_VECTOR) {
        fail("virtio-config-vector-refused");
        return;
    }

    uint16_t notify_off;
    if (!setup_queue(&notify_off))
        return;

    uint8_t status = cc_read8(CC_DEVICE_STATUS);
    cc_write8(CC_DEVICE_STATUS, (uint8_t)(status | STATUS_DRIVER_OK));
    status = cc_read8(CC_DEVICE_STATUS);
    kprintf("# virtio status 0x%02x\n", status);
    if (status & (STATUS_NEEDS_RESET | STATUS_FAILED) || !(status & STATUS_DRIVER_OK)) {
        fail("virtio-driver-ok-refused");
        return;
    }

    build_request(type);
    uint32_t kick = notify.offset + (uint32_t)notify_off * notify_multiplier;
    kprintf("# virtio kick: queue 0 notify at bar %d 0x%x\n", notify.bar, kick);
    dev_write16(notify.bar, kick, 0);

    if (!irq_wait(&irq_count, 1, used_moved))
        timeout(used_moved() ? "virtio-interrupt" : "virtio-used");
    report(type);
    msix_pending(&msix);
}

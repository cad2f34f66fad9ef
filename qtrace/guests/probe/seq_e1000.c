/*
 * The e1000 (82540EM, 8086:100E) register sequence.
 *
 * Offsets and bits are from Intel's "PCI/PCI-X Family of Gigabit Ethernet Controllers
 * Software Developer's Manual" (8254x), chapter 13.  The order is fixed and documented in
 * README.md so a test can line up each ACC line with a handler hit recorded in QEMU.
 */
#include "probe.h"

#define E1000_BAR 0

#define CTRL 0x0000
#define STATUS 0x0008
#define EERD 0x0014
#define MDIC 0x0020
#define ICR 0x00C0
#define ICS 0x00C8
#define IMS 0x00D0
#define IMC 0x00D8
#define RCTL 0x0100
#define TCTL 0x0400
#define TIPG 0x0410
#define TDBAL 0x3800
#define TDBAH 0x3804
#define TDLEN 0x3808
#define TDH 0x3810
#define TDT 0x3818
#define RDBAL 0x2800
#define RDBAH 0x2804
#define RDLEN 0x2808
#define RDH 0x2810
#define RDT 0x2818
#define MPC 0x4010
#define GPRC 0x4074
#define TORL 0x40C0
#define TORH 0x40C4
#define TPR 0x40D0
#define RAL0 0x5400
#define RAH0 0x5404

#define EERD_START (1u << 0)
#define EERD_DONE (1u << 4)
#define MDIC_OP_READ (2u << 26)
#define MDIC_PHY_ADDR(n) ((uint32_t)(n) << 21)
#define MDIC_REG(n) ((uint32_t)(n) << 16)
#define MDIC_READY (1u << 28)
#define MDIC_ERROR (1u << 30)
#define ICR_TXDW (1u << 0)
#define ICR_LSC (1u << 2)
#define ICR_RXDMT0 (1u << 4)
#define ICR_RXO (1u << 6)
#define ICR_RXT0 (1u << 7)
#define RCTL_EN (1u << 1)
#define RCTL_BAM (1u << 15)
#define RCTL_BSIZE_256 (3u << 16) /* BSEX clear: 256-byte buffers */
#define TCTL_EN (1u << 1)
#define TCTL_PSP (1u << 3)
#define TCTL_CT(n) ((uint32_t)(n) << 4)
#define TCTL_COLD(n) ((uint32_t)(n) << 12)
#define TIPG_VALUE (10u | (8u << 10) | (6u << 20)) /* IPGT 10, IPGR1 8, IPGR2 6 */

#define TXD_CMD_EOP 0x01
#define TXD_CMD_IFCS 0x02
#define TXD_CMD_RS 0x08
#define TXD_STAT_DD 0x01
#define RXD_STAT_DD 0x01
#define RXD_STAT_EOP 0x02

#define POLL_LIMIT 100000u
#define TX_RING_LEN 8
#define FRAME_BYTES 60
#define ETHERTYPE_LOCAL_EXPERIMENTAL 0x88B5
#define RX_RING_LEN 64 /* room for all the backend's frames: it sends them at once */
#define RX_BUF_BYTES 256
/* Receiving waits in time, not in polls: QEMU holds frames for a second after an RCTL
 * write.  About 10 s at 3 GHz; the TSC runs in TCG too. */
#define RX_WAIT_CYCLES 30000000000ull

/* Legacy transmit descriptor (manual 3.3.3). */
struct tx_desc {
    uint64_t buffer_addr;
    uint16_t length;
    uint8_t cso;
    uint8_t cmd;
    uint8_t status;
    uint8_t css;
    uint16_t special;
};

_Static_assert(sizeof(struct tx_desc) == 16, "legacy TX descriptor is 16 bytes");

/* Legacy receive descriptor (manual 3.2.3). */
struct rx_desc {
    uint64_t buffer_addr;
    uint16_t length;
    uint16_t csum;
    uint8_t status;
    uint8_t errors;
    uint16_t special;
};

_Static_assert(sizeof(struct rx_desc) == 16, "legacy RX descriptor is 16 bytes");

/* The ring base must be 16-byte aligned; 128 keeps the whole ring in one cache line
 * group as the manual recommends.  No paging, so these addresses are physical.  Both sit
 * at fixed addresses below the image (linker.ld), so what the guest writes to TDBAL and
 * into the descriptor does not move when the code grows. */
extern volatile struct tx_desc e1000_tx_ring[TX_RING_LEN];
extern uint8_t e1000_tx_frame[FRAME_BYTES];
#define tx_ring e1000_tx_ring
#define tx_frame e1000_tx_frame
extern volatile struct rx_desc e1000_rx_ring[RX_RING_LEN];
extern uint8_t e1000_rx_buffers[RX_RING_LEN][RX_BUF_BYTES];
#define rx_ring e1000_rx_ring
#define rx_buffers e1000_rx_buffers

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static uint16_t eeprom_read(uint32_t word, const char *what)
{
    bar_write32(E1000_BAR, EERD, (word << 8) | EERD_START);
    for (uint32_t i = 0; i < POLL_LIMIT; i++) {
        uint32_t v = bar_read32(E1000_BAR, EERD);
        if (v & EERD_DONE)
            return (uint16_t)(v >> 16);
    }
    timeout(what);
    return 0xFFFF;
}

static uint16_t phy_read(uint32_t reg, const char *what)
{
    bar_write32(E1000_BAR, MDIC, MDIC_OP_READ | MDIC_PHY_ADDR(1) | MDIC_REG(reg));
    for (uint32_t i = 0; i < POLL_LIMIT; i++) {
        uint32_t v = bar_read32(E1000_BAR, MDIC);
        if (v & MDIC_READY) {
            if (v & MDIC_ERROR)
                fail("mdic-error");
            return (uint16_t)v;
        }
    }
    timeout(what);
    return 0xFFFF;
}

static void transmit(const uint8_t mac[6])
{
    static const char payload[] = "qtrace";

    memset(tx_frame, 0, sizeof tx_frame);
    memset(tx_frame, 0xFF, 6);              /* broadcast destination */
    memcpy(tx_frame + 6, mac, 6);           /* our source address */
    tx_frame[12] = ETHERTYPE_LOCAL_EXPERIMENTAL >> 8;
    tx_frame[13] = ETHERTYPE_LOCAL_EXPERIMENTAL & 0xFF;
    memcpy(tx_frame + 14, payload, sizeof payload - 1);

    for (int i = 0; i < TX_RING_LEN; i++) {
        tx_ring[i].buffer_addr = 0;
        tx_ring[i].length = 0;
        tx_ring[i].cso = 0;
        tx_ring[i].cmd = 0;
        tx_ring[i].status = 0;
        tx_ring[i].css = 0;
        tx_ring[i].special = 0;
    }
    kprintf("# tx ring 0x%x frame 0x%x\n", (uint32_t)(uintptr_t)tx_ring,
            (uint32_t)(uintptr_t)tx_frame);

    bar_write32(E1000_BAR, TDBAL, (uint32_t)(uintptr_t)tx_ring);
    bar_write32(E1000_BAR, TDBAH, 0);
    bar_write32(E1000_BAR, TDLEN, sizeof tx_ring);
    bar_write32(E1000_BAR, TDH, 0);
    bar_write32(E1000_BAR, TDT, 0);
    bar_write32(E1000_BAR, TIPG, TIPG_VALUE);
    bar_write32(E1000_BAR, TCTL, TCTL_EN | TCTL_PSP | TCTL_CT(0x0F) | TCTL_COLD(0x40));

    tx_ring[0].buffer_addr = (uint32_t)(uintptr_t)tx_frame;
    tx_ring[0].length = FRAME_BYTES;
    tx_ring[0].cmd = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS;
    tx_ring[0].status = 0;
    compiler_barrier(); /* x86 keeps store order; only the compiler could reorder */
    bar_write32(E1000_BAR, TDT, 1);

    uint32_t polls = 0;
    while (!(tx_ring[0].status & TXD_STAT_DD)) {
        if (++polls >= POLL_LIMIT) {
            timeout("tx-dd");
            break;
        }
        compiler_barrier();
    }
    kprintf("# tx status 0x%02x after %u polls\n", (uint32_t)tx_ring[0].status, polls);
    uint32_t tdh = bar_read32(E1000_BAR, TDH);
    uint32_t icr = bar_read32(E1000_BAR, ICR);
    kprintf("# tx tdh %u icr 0x%x%s\n", tdh, icr, (icr & ICR_TXDW) ? " txdw" : "");
    if (!(icr & ICR_TXDW))
        fail("tx-no-txdw");
}

/* Wait (no device access) until the device wrote descriptor d back; 0 on timeout. */
static int rx_wait(uint32_t d)
{
    uint64_t start = rdtsc();
    while (!(rx_ring[d].status & RXD_STAT_DD)) {
        if (rdtsc() - start > RX_WAIT_CYCLES) {
            timeout("rx-dd");
            return 0;
        }
        compiler_barrier();
    }
    return 1;
}

/* Does the frame in buffer d carry "qtrace rx <index>" after its Ethernet header, as the
 * network backend stub numbers them (qtrace/backends/net_frames.py)? */
static int rx_numbered(uint32_t d, uint32_t index)
{
    static const char prefix[] = "qtrace rx ";
    char digits[10];
    size_t n = 0, at = 14;
    do {
        digits[n++] = (char)('0' + index % 10);
        index /= 10;
    } while (index && n < sizeof digits);
    for (size_t i = 0; prefix[i]; i++)
        if (rx_buffers[d][at++] != (uint8_t)prefix[i])
            return 0;
    while (n)
        if (rx_buffers[d][at++] != (uint8_t)digits[--n])
            return 0;
    return 1;
}

/* The receive ring, 64 descriptors of 256-byte buffers, and the receiver on.  Before the
 * transmit: the backend stub sends its frames once it sees the guest's frame, and QEMU
 * drops frames that wait while the receiver is off. */
static void rx_setup(void)
{
    for (int i = 0; i < RX_RING_LEN; i++) {
        rx_ring[i].buffer_addr = (uint32_t)(uintptr_t)rx_buffers[i];
        rx_ring[i].length = 0;
        rx_ring[i].csum = 0;
        rx_ring[i].status = 0;
        rx_ring[i].errors = 0;
        rx_ring[i].special = 0;
    }
    kprintf("# rx ring 0x%x buffers 0x%x\n", (uint32_t)(uintptr_t)rx_ring,
            (uint32_t)(uintptr_t)rx_buffers);
    bar_write32(E1000_BAR, RDBAL, (uint32_t)(uintptr_t)rx_ring);
    bar_write32(E1000_BAR, RDBAH, 0);
    bar_write32(E1000_BAR, RDLEN, sizeof rx_ring);
    bar_write32(E1000_BAR, RDH, 0);
    bar_write32(E1000_BAR, RDT, RX_RING_LEN - 1); /* all but one descriptor to the device */
    bar_write32(E1000_BAR, IMS, ICR_RXT0 | ICR_RXDMT0 | ICR_RXO); /* INTx follows them */
    compiler_barrier();
    bar_write32(E1000_BAR, RCTL, RCTL_EN | RCTL_BAM | RCTL_BSIZE_256);
}

/* Take `frames` frames off the ring, in order, each frame's descriptors given back (RDT)
 * after reading ICR; then the receive counters. */
static void receive(uint32_t frames)
{
    uint32_t next = 0; /* where the next frame starts */
    for (uint32_t f = 0; f < frames; f++) {
        uint32_t first = next, bytes = 0, descs = 0;
        uint8_t status = 0;
        do {
            if (!rx_wait(next))
                return;
            status = rx_ring[next].status;
            bytes += rx_ring[next].length;
            rx_ring[next].status = 0;
            next = (next + 1) % RX_RING_LEN;
            descs++;
        } while (!(status & RXD_STAT_EOP) && descs < RX_RING_LEN);
        uint32_t icr = bar_read32(E1000_BAR, ICR);
        int numbered = rx_numbered(first, f);
        kprintf("# rx frame %u: %u bytes (CRC included) in %u descriptors from %u, "
                "icr 0x%x%s\n", f, bytes, descs, first, icr, numbered ? "" : " unexpected");
        if (!numbered)
            fail("rx-unexpected-frame");
        bar_write32(E1000_BAR, RDT, (next + RX_RING_LEN - 1) % RX_RING_LEN);
    }
    uint32_t rdh = bar_read32(E1000_BAR, RDH);
    uint32_t gprc = bar_read32(E1000_BAR, GPRC);
    uint32_t tpr = bar_read32(E1000_BAR, TPR);
    uint32_t torl = bar_read32(E1000_BAR, TORL);
    uint32_t torh = bar_read32(E1000_BAR, TORH);
    uint32_t mpc = bar_read32(E1000_BAR, MPC);
    kprintf("# rx done rdh %u gprc %u tpr %u tor 0x%x%08x mpc %u\n", rdh, gprc, tpr, torh, torl,
            mpc);
    if (gprc != frames)
        fail("rx-gprc");
}

int seq_e1000_main(uint32_t rx_frames)
{
    const struct bar *b = &target_bars[E1000_BAR];
    if (b->kind != BAR_MEM32 && b->kind != BAR_MEM64) {
        fail("e1000-bar0-not-mmio");
        return 0;
    }
    if (b->base_hi || b->size < 0x20000) {
        fail("e1000-bar0-unusable");
        return 0;
    }

    uint32_t ctrl = bar_read32(E1000_BAR, CTRL);
    uint32_t status = bar_read32(E1000_BAR, STATUS);
    kprintf("# ctrl 0x%08x status 0x%08x\n", ctrl, status);

    uint16_t w0 = eeprom_read(0, "eerd-0");
    uint16_t w1 = eeprom_read(1, "eerd-1");
    uint16_t w2 = eeprom_read(2, "eerd-2");
    uint8_t mac[6] = {
        (uint8_t)w0, (uint8_t)(w0 >> 8), (uint8_t)w1,
        (uint8_t)(w1 >> 8), (uint8_t)w2, (uint8_t)(w2 >> 8),
    };
    kprintf("# eeprom 0x%04x 0x%04x 0x%04x\n", w0, w1, w2);
    kprintf("# mac %02x:%02x:%02x:%02x:%02x:%02x\n", mac[0], mac[1], mac[2], mac[3], mac[4],
            mac[5]);

    uint16_t id1 = phy_read(2, "mdic-phy2");
    uint16_t id2 = phy_read(3, "mdic-phy3");
    kprintf("# phy id 0x%04x 0x%04x\n", id1, id2);

    bar_write32(E1000_BAR, IMC, 0xFFFFFFFFu);
    bar_read32(E1000_BAR, ICR); /* read-to-clear */
    bar_write32(E1000_BAR, IMS, 0x1F);
    uint32_t ims = bar_read32(E1000_BAR, IMS);
    bar_write32(E1000_BAR, ICS, ICR_LSC);
    uint32_t icr = bar_read32(E1000_BAR, ICR);
    bar_write32(E1000_BAR, IMC, 0xFFFFFFFFu);
    kprintf("# ims 0x%x icr-after-ics 0x%x\n", ims, icr);

    bar_write32(E1000_BAR, RCTL, RCTL_BAM); /* receiver stays disabled */
    uint32_t rctl = bar_read32(E1000_BAR, RCTL);
    bar_write32(E1000_BAR, TCTL, TCTL_PSP | TCTL_CT(0x0F) | TCTL_COLD(0x40));
    uint32_t tctl = bar_read32(E1000_BAR, TCTL);
    kprintf("# rctl 0x%x tctl 0x%x\n", rctl, tctl);

    uint32_t ral = bar_read32(E1000_BAR, RAL0);
    uint32_t rah = bar_read32(E1000_BAR, RAH0);
    kprintf("# ral0 0x%08x rah0 0x%08x\n", ral, rah);

    if (rx_frames)
        rx_setup();
    transmit(mac);
    if (rx_frames)
        receive(rx_frames);
    return 1;
}

void seq_e1000_repeat(uint32_t count)
{
    /* Load-test loop: side-effect-free reads only, so any count is safe. */
    kprintf("# repeat %u x 4 reads\n", count);
    for (uint32_t i = 0; i < count; i++) {
        bar_read32(E1000_BAR, CTRL);
        bar_read32(E1000_BAR, STATUS);
        bar_read32(E1000_BAR, RAL0);
        bar_read32(E1000_BAR, RAH0);
    }
}

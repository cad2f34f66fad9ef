/*
 * One admin command on an NVM Express controller: Identify Controller through the admin
 * submission and completion queues, completed by MSI-X vector 0.
 *
 * Written from the NVM Express Base Specification 2.0: 3.1.4 (controller registers CAP,
 * VS, CC, CSTS, AQA, ASQ, ACQ and the doorbells), 3.5.1 (controller initialisation),
 * 4.2 and 4.6 (submission and completion queue entries, the phase tag), 5.17 (Identify)
 * and the Identify Controller data structure (serial number, model number, firmware
 * revision).  64-bit registers are accessed as two 32-bit halves, low half first.
 *
 * Order: CAP, VS; disable (CC.EN = 0, wait until CSTS.RDY = 0) if the firmware left the
 * controller enabled; MSI-X entry 0 (the admin completion queue's vector); AQA, ASQ, ACQ;
 * CC.EN = 1 with 64-byte SQ and 16-byte CQ entries, wait for CSTS.RDY; the Identify
 * command in admin SQ slot 0; the admin SQ tail doorbell; wait, interrupts enabled, for
 * the completion entry's phase tag and the interrupt; the admin CQ head doorbell.
 */
#include "devio.h"

#define NVME_BAR 0

#define REG_CAP_LO 0x00
#define REG_CAP_HI 0x04
#define REG_VS 0x08
#define REG_CC 0x14
#define REG_CSTS 0x1C
#define REG_AQA 0x24
#define REG_ASQ 0x28
#define REG_ACQ 0x30
#define REG_DOORBELLS 0x1000

#define CC_EN 0x1u
#define CC_IOSQES(n) ((uint32_t)(n) << 16)
#define CC_IOCQES(n) ((uint32_t)(n) << 20)
#define CSTS_RDY 0x1u
#define CSTS_CFS 0x2u

#define ADMIN_QUEUE_ENTRIES 8u
#define SQE_BYTES 64u
#define CQE_BYTES 16u
#define OPC_IDENTIFY 0x06u
#define CNS_CONTROLLER 0x01u
#define COMMAND_ID 0x0001u
#define IDENTIFY_BYTES 4096u

/* 4 KiB aligned (CC.MPS = 0: 4 KiB memory pages). */
#define ASQ_ADDR (DMA_AREA_NVME + 0x0000u)
#define ACQ_ADDR (DMA_AREA_NVME + 0x1000u)
#define IDENTIFY_ADDR (DMA_AREA_NVME + 0x2000u)

#define asq ((volatile uint32_t *)(uintptr_t)ASQ_ADDR)
#define acq ((volatile uint32_t *)(uintptr_t)ACQ_ADDR)
#define identify ((volatile uint8_t *)(uintptr_t)IDENTIFY_ADDR)

/* Completion queue entry dword 3: command identifier 15:0, phase tag 16, status 31:17. */
static int cqe_posted(void)
{
    return (acq[3] >> 16) & 1;
}

void seq_nvme(void)
{
    if (!dev_bar_usable(NVME_BAR, 0x2000, "nvme-bar0-unusable"))
        return;

    uint32_t cap_lo = dev_read32(NVME_BAR, REG_CAP_LO);
    uint32_t cap_hi = dev_read32(NVME_BAR, REG_CAP_HI);
    uint32_t vs = dev_read32(NVME_BAR, REG_VS);
    uint32_t mqes = (cap_lo & 0xFFFF) + 1, dstrd = cap_hi & 0xF;
    kprintf("# nvme cap 0x%08x%08x mqes %u timeout %u x 500 ms dstrd %u css 0x%x mpsmin %u\n",
            cap_hi, cap_lo, mqes, cap_lo >> 24, dstrd, (cap_hi >> 5) & 0xFF, (cap_hi >> 16) & 0xF);
    kprintf("# nvme version %u.%u.%u\n", vs >> 16, (vs >> 8) & 0xFF, vs & 0xFF);
    if (mqes < ADMIN_QUEUE_ENTRIES || (cap_hi >> 16) & 0xF) {
        fail("nvme-cap-unsupported");
        return;
    }
    uint32_t doorbell_stride = 4u << dstrd;

    uint32_t cc = dev_read32(NVME_BAR, REG_CC);
    uint32_t csts = dev_read32(NVME_BAR, REG_CSTS);
    kprintf("# nvme cc 0x%x csts 0x%x as the firmware left it\n", cc, csts);
    if (cc & CC_EN) {
        dev_write32(NVME_BAR, REG_CC, cc & ~CC_EN);
        if (poll32(NVME_BAR, REG_CSTS, CSTS_RDY, 0, "nvme-disable") & CSTS_RDY)
            return;
    }

    irq_init();
    struct cap_entry caps[MAX_SEQ_CAPS];
    int n = caps_read(caps, MAX_SEQ_CAPS);
    struct msix_info msix;
    if (!msix_setup(caps, n, &msix, "nvme-no-msix"))
        return;

    memset((void *)(uintptr_t)DMA_AREA_NVME, 0, 0x3000);
    dev_write32(NVME_BAR, REG_AQA, (ADMIN_QUEUE_ENTRIES - 1) << 16 | (ADMIN_QUEUE_ENTRIES - 1));
    dev_write64(NVME_BAR, REG_ASQ, ASQ_ADDR, 0);
    dev_write64(NVME_BAR, REG_ACQ, ACQ_ADDR, 0);
    kprintf("# nvme admin sq 0x%x cq 0x%x, %u entries each\n", ASQ_ADDR, ACQ_ADDR,
            ADMIN_QUEUE_ENTRIES);
    dev_write32(NVME_BAR, REG_CC, CC_EN | CC_IOSQES(6) | CC_IOCQES(4));
    csts = poll32(NVME_BAR, REG_CSTS, CSTS_RDY | CSTS_CFS, CSTS_RDY, "nvme-ready");
    if ((csts & (CSTS_RDY | CSTS_CFS)) != CSTS_RDY) {
        if (csts & CSTS_CFS)
            fail("nvme-fatal-status");
        return;
    }

    /* Identify Controller in slot 0: PRP entry 1 names the 4 KiB buffer (page aligned,
     * so PRP entry 2 is unused). */
    volatile uint32_t *sqe = asq;
    for (unsigned i = 0; i < SQE_BYTES / 4; i++)
        sqe[i] = 0;
    sqe[0] = OPC_IDENTIFY | (COMMAND_ID << 16);
    sqe[1] = 0;              /* NSID */
    sqe[6] = IDENTIFY_ADDR;  /* PRP1, low */
    sqe[7] = 0;              /* PRP1, high */
    sqe[10] = CNS_CONTROLLER; /* CDW10 */
    compiler_barrier();
    kprintf("# nvme identify controller: cid %u buffer 0x%x, sq 0 tail doorbell 0x%x\n",
            COMMAND_ID, IDENTIFY_ADDR, REG_DOORBELLS);
    dev_write32(NVME_BAR, REG_DOORBELLS, 1); /* admin SQ tail: 1 entry */

    if (!irq_wait(&irq_count, 1, cqe_posted))
        timeout(cqe_posted() ? "nvme-interrupt" : "nvme-completion");
    uint32_t dw2 = acq[2], dw3 = acq[3];
    uint32_t status = dw3 >> 17;
    kprintf("# nvme completion cid %u sq head %u sq id %u phase %u status 0x%x, interrupts %u "
            "(other vectors %u)\n",
            dw3 & 0xFFFF, dw2 & 0xFFFF, dw2 >> 16, (dw3 >> 16) & 1, status, irq_count,
            irq_other);
    if (cqe_posted()) {
        /* admin CQ head: the one entry is consumed */
        dev_write32(NVME_BAR, REG_DOORBELLS + doorbell_stride, 1);
        if (status != 0)
            fail("nvme-identify-status");
        else if ((dw3 & 0xFFFF) != COMMAND_ID)
            fail("nvme-identify-cid");
    }

    uint32_t vid = identify[0] | (uint32_t)identify[1] << 8;
    uint32_t ssvid = identify[2] | (uint32_t)identify[3] << 8;
    kprintf("# nvme identify vid 0x%04x ssvid 0x%04x\n", vid, ssvid);
    print_ascii("nvme serial", identify + 4, 20);
    print_ascii("nvme model", identify + 24, 40);
    print_ascii("nvme firmware", identify + 64, 8);
    if (vid == 0 && status == 0)
        fail("nvme-identify-empty");
    msix_pending(&msix);
}

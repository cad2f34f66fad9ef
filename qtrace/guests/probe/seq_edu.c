/*
 * QEMU's educational PCI device (edu, 1234:11e8): a factorial computed by the device and
 * one DMA transfer to the device's buffer and back, each ending in an interrupt that the
 * guest takes and acknowledges.
 *
 * Facts from QEMU's documentation of the device (docs/specs/edu.rst): BAR 0 is 1 MiB of
 * registers, 4-byte accesses below 0x80 (4 or 8 above): 0x00 identification 0xRRrr00ed,
 * 0x04 liveness (reads back inverted), 0x08 factorial, 0x20 status (bit 0 computing,
 * bit 7 raise an interrupt when the factorial is done), 0x24 interrupt status, 0x64
 * interrupt acknowledge, 0x80/0x88/0x90 DMA source, destination and count, 0x98 DMA
 * command (bit 0 start/busy, bit 1 direction device->RAM, bit 2 interrupt 0x100 when
 * done); the device's DMA buffer is 4 KiB at device address 0x40000.  The device can
 * signal INTx or MSI; the probe enables MSI, so each interrupt is one message.
 */
#include "devio.h"

#define EDU_BAR 0

#define EDU_ID 0x00
#define EDU_LIVENESS 0x04
#define EDU_FACTORIAL 0x08
#define EDU_STATUS 0x20
#define EDU_IRQ_STATUS 0x24
#define EDU_IRQ_ACK 0x64
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_CMD 0x98

#define STATUS_COMPUTING 0x01u
#define STATUS_IRQ_FACTORIAL 0x80u
#define DMA_CMD_START 0x1u
#define DMA_CMD_TO_RAM 0x2u
#define DMA_CMD_IRQ 0x4u
#define DMA_IRQ_VALUE 0x100u

#define EDU_DEVICE_BUFFER 0x40000u
#define LIVENESS_PATTERN 0x71747263u
#define FACTORIAL_OF 10u
#define FACTORIAL_10 3628800u
#define DMA_BYTES 64u

#define DMA_OUT_ADDR (DMA_AREA_EDU + 0x0000u) /* RAM -> device */
#define DMA_BACK_ADDR (DMA_AREA_EDU + 0x1000u) /* device -> RAM */

/* Waits for interrupt number `want`, reads the interrupt status and acknowledges it.
 * Returns the status read. */
static uint32_t take_interrupt(uint32_t want, const char *what)
{
    if (!irq_wait(&irq_count, want, 0))
        timeout(what);
    uint32_t st = dev_read32(EDU_BAR, EDU_IRQ_STATUS);
    dev_write32(EDU_BAR, EDU_IRQ_ACK, st);
    uint32_t after = dev_read32(EDU_BAR, EDU_IRQ_STATUS);
    kprintf("# edu interrupt %u: status 0x%x acknowledged, now 0x%x (other vectors %u)\n",
            irq_count, st, after, irq_other);
    return st;
}

static void factorial(void)
{
    dev_write32(EDU_BAR, EDU_STATUS, STATUS_IRQ_FACTORIAL);
    dev_write32(EDU_BAR, EDU_FACTORIAL, FACTORIAL_OF);
    uint32_t st = take_interrupt(1, "edu-factorial-interrupt");
    poll32(EDU_BAR, EDU_STATUS, STATUS_COMPUTING, 0, "edu-factorial");
    uint32_t result = dev_read32(EDU_BAR, EDU_FACTORIAL);
    kprintf("# edu factorial %u! = %u\n", FACTORIAL_OF, result);
    if (result != FACTORIAL_10)
        fail("edu-factorial-wrong");
    if (!(st & 1u))
        fail("edu-factorial-irq-status");
}

static void dma(uint32_t src, uint32_t dst, uint32_t cmd, uint32_t want, const char *what)
{
    dev_write32(EDU_BAR, EDU_DMA_SRC, src);
    dev_write32(EDU_BAR, EDU_DMA_DST, dst);
    dev_write32(EDU_BAR, EDU_DMA_COUNT, DMA_BYTES);
    dev_write32(EDU_BAR, EDU_DMA_CMD, cmd | DMA_CMD_START | DMA_CMD_IRQ);
    uint32_t st = take_interrupt(want, what);
    poll32(EDU_BAR, EDU_DMA_CMD, DMA_CMD_START, 0, what);
    if (!(st & DMA_IRQ_VALUE))
        fail("edu-dma-irq-status");
}

void seq_edu(void)
{
    if (!dev_bar_usable(EDU_BAR, 0x100, "edu-bar0-unusable"))
        return;
    uint32_t id = dev_read32(EDU_BAR, EDU_ID);
    kprintf("# edu id 0x%08x version %u.%u\n", id, id >> 24, (id >> 16) & 0xFF);
    if ((id & 0xFFFF) != 0x00ED) {
        fail("edu-bad-id");
        return;
    }
    dev_write32(EDU_BAR, EDU_LIVENESS, LIVENESS_PATTERN);
    uint32_t inv = dev_read32(EDU_BAR, EDU_LIVENESS);
    kprintf("# edu liveness 0x%08x -> 0x%08x\n", LIVENESS_PATTERN, inv);
    if (inv != ~LIVENESS_PATTERN)
        fail("edu-liveness");

    irq_init();
    struct cap_entry caps[MAX_SEQ_CAPS];
    int n = caps_read(caps, MAX_SEQ_CAPS);
    if (!msi_setup(caps, n)) {
        fail("edu-no-msi");
        return;
    }

    factorial();

    volatile uint8_t *out = (volatile uint8_t *)(uintptr_t)DMA_OUT_ADDR;
    volatile uint8_t *back = (volatile uint8_t *)(uintptr_t)DMA_BACK_ADDR;
    for (unsigned i = 0; i < DMA_BYTES; i++) {
        out[i] = (uint8_t)(0x30 + i);
        back[i] = 0;
    }
    kprintf("# edu dma %u bytes: ram 0x%x -> device 0x%x -> ram 0x%x\n", DMA_BYTES,
            DMA_OUT_ADDR, EDU_DEVICE_BUFFER, DMA_BACK_ADDR);
    dma(DMA_OUT_ADDR, EDU_DEVICE_BUFFER, 0, 2, "edu-dma-to-device");
    dma(EDU_DEVICE_BUFFER, DMA_BACK_ADDR, DMA_CMD_TO_RAM, 3, "edu-dma-to-ram");
    unsigned same = 0;
    for (unsigned i = 0; i < DMA_BYTES; i++)
        same += back[i] == out[i];
    kprintf("# edu dma back: %u of %u bytes equal\n", same, DMA_BYTES);
    print_hex("edu dma back first 16 bytes", back, 16);
    if (same != DMA_BYTES)
        fail("edu-dma-mismatch");
}

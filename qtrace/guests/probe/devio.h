/*
 * What the request sequences (seq_virtio.c, seq_nvme.c, seq_edu.c) share: logged register
 * accesses of every width, the capability list, MSI-X and MSI set-up, taking the one
 * interrupt the device sends, bounded waits measured in TSC cycles, and where in guest
 * memory the devices' DMA buffers live.  Implemented in devio.c.
 *
 * Every register and configuration access to the target goes through these helpers or
 * pci_cfg_read()/pci_cfg_write(), so each prints its ACC line right after it happens, in
 * program order, as probe.h's bar_read32()/bar_write32() do.  Accesses to the local APIC
 * and the 8259 PICs (interrupt set-up) are not the device's and are not printed.
 */
#ifndef DEVIO_H
#define DEVIO_H

#include "probe.h"

/* ---- DMA memory ----
 * The sequences' rings, queues and buffers sit at fixed physical addresses in RAM no one
 * else uses (the image is linked at 0x108000 and is far smaller than 2 MiB; the multiboot
 * information follows it), so what the guest hands the device does not move when the
 * code grows.  Each sequence clears what it uses before use. */
#define DMA_AREA_BASE 0x00300000u
#define DMA_AREA_VIRTIO (DMA_AREA_BASE + 0x00000u)
#define DMA_AREA_NVME (DMA_AREA_BASE + 0x10000u)
#define DMA_AREA_EDU (DMA_AREA_BASE + 0x20000u)

/* ---- logged accesses through BAR n of the target (mmio or pio as the BAR says) ---- */
uint8_t dev_read8(int bar, uint32_t off);
uint16_t dev_read16(int bar, uint32_t off);
uint32_t dev_read32(int bar, uint32_t off);
void dev_write8(int bar, uint32_t off, uint8_t value);
void dev_write16(int bar, uint32_t off, uint16_t value);
void dev_write32(int bar, uint32_t off, uint32_t value);
/* A 64-bit register written as two 32-bit writes, low half first. */
void dev_write64(int bar, uint32_t off, uint32_t lo, uint32_t hi);

/* 1 if BAR n is a memory BAR the probe can reach (below 4 GiB, at least `min_size`
 * bytes); else reports fail(why) and returns 0. */
int dev_bar_usable(int bar, uint32_t min_size, const char *why);

/* ---- capabilities (standard list, PCI Local Bus 3.0 6.7) ---- */
#define MAX_SEQ_CAPS 16
struct cap_entry {
    uint16_t ptr;  /* config offset of the capability */
    uint32_t head; /* its first dword: id, next, and 16 capability-specific bits */
};
/* Reads the list (logged cfg reads of each capability's first dword); returns the count. */
int caps_read(struct cap_entry *out, int max);
/* The first capability with this id in a list caps_read() returned; 0 if none. */
uint16_t caps_find(const struct cap_entry *caps, int n, uint8_t id);

/* ---- interrupts ----
 * The guest normally runs with interrupts off.  irq_init() installs an IDT whose every
 * vector counts and returns (PROBE_IRQ_VECTOR is counted apart), enables the local APIC
 * and masks both 8259 PICs, so only a message the device sends to the local APIC can
 * arrive.  irq_wait() opens the window (sti) only while it waits; an interrupt closes it
 * again (the handler returns with IF clear), so each wait takes at most one. */
#define PROBE_MSI_ADDRESS 0xFEE00000u /* local APIC, physical destination APIC ID 0 */
#define PROBE_IRQ_VECTOR 0x41u         /* fixed delivery, edge */
void irq_init(void);
/* Interrupts at PROBE_IRQ_VECTOR since irq_init(), and at any other vector. */
extern volatile uint32_t irq_count;
extern volatile uint32_t irq_other;

struct msix_info {
    uint16_t cap;   /* 0: no MSI-X capability */
    uint32_t vectors;
    int table_bar;
    uint32_t table_off;
    int pba_bar;
    uint32_t pba_off;
};
/* Finds MSI-X, enables it (function masked while entry 0 is written), points entry 0 at
 * PROBE_MSI_ADDRESS / PROBE_IRQ_VECTOR, unmasked, then clears the function mask.
 * Returns 0 (and fails `why`) without MSI-X. */
int msix_setup(const struct cap_entry *caps, int n, struct msix_info *out, const char *why);
/* Reads the first PBA dword (bit v: vector v pending) and prints it. */
uint32_t msix_pending(const struct msix_info *m);
/* Enables MSI (one vector) with PROBE_MSI_ADDRESS / PROBE_IRQ_VECTOR; 0 without MSI. */
int msi_setup(const struct cap_entry *caps, int n);

/* ---- bounded waits ----
 * The device works on other host threads (main loop, worker threads, its own thread,
 * timers) while the vCPU spins, so a count of loop iterations says nothing about how long
 * the device had; the bound is in TSC cycles (host cycles under TCG).  WAIT_CYCLES is a
 * few seconds on any machine the project runs on. */
#define WAIT_CYCLES (1ull << 34)
uint64_t tsc_now(void);
int tsc_expired(uint64_t start);
/* Spins with interrupts enabled until *counter reaches `want` and, if `done` is given,
 * done() returns nonzero, or until WAIT_CYCLES pass.  Returns 1 when both held. */
int irq_wait(volatile uint32_t *counter, uint32_t want, int (*done)(void));
/* Reads a 32-bit register until (value & mask) == want, with a growing pause between
 * reads (so a device that takes 100 ms costs a few dozen reads, each an ACC line);
 * on expiry timeout(what).  Returns the last value read. */
uint32_t poll32(int bar, uint32_t off, uint32_t mask, uint32_t want, const char *what);

/* Prints "# <label> " and n bytes of guest memory as hex. */
void print_hex(const char *label, const volatile uint8_t *p, unsigned n);
/* Prints "# <label> <text>" for a space-padded ASCII field, trailing spaces removed. */
void print_ascii(const char *label, const volatile uint8_t *p, unsigned n);

/* ---- the sequences ---- */
void seq_virtio(void);
void seq_nvme(void);
void seq_edu(void);

#endif

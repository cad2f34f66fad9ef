/*
 * Shared declarations of the qtrace probe guest.
 *
 * The guest is freestanding: no libc, only <stdint.h>/<stddef.h>.  Everything that
 * touches hardware is declared here so each sequence file stays a plain list of
 * register accesses that reads like the device manual.
 */
#ifndef PROBE_H
#define PROBE_H

#include <stddef.h>
#include <stdint.h>

/* ---- port and memory I/O (hw.h-style inlines; nothing here is logged) ---- */

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline uint8_t mmio_read8(uint32_t a) { return *(volatile uint8_t *)(uintptr_t)a; }
static inline uint16_t mmio_read16(uint32_t a) { return *(volatile uint16_t *)(uintptr_t)a; }
static inline uint32_t mmio_read32(uint32_t a) { return *(volatile uint32_t *)(uintptr_t)a; }
static inline void mmio_write8(uint32_t a, uint8_t v) { *(volatile uint8_t *)(uintptr_t)a = v; }
static inline void mmio_write16(uint32_t a, uint16_t v) { *(volatile uint16_t *)(uintptr_t)a = v; }
static inline void mmio_write32(uint32_t a, uint32_t v) { *(volatile uint32_t *)(uintptr_t)a = v; }

/* Keeps the compiler from moving descriptor stores past the doorbell write. */
static inline void compiler_barrier(void) { __asm__ volatile("" : : : "memory"); }

/* ---- lib.c: what gcc may call even in freestanding code ---- */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
size_t strlen(const char *s);

/* ---- console.c: COM1 and the serial protocol ---- */
void serial_init(void);
void serial_drain(void);
/* Tiny printf: %s %c %u %d %x with optional '0' flag and width.  Lines are written as is. */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* One "ACC ..." line; bar < 0 prints "-".  Suppressed (and counted) while acc_quiet is set. */
void acc_log(char op, const char *space, int bar, uint32_t offset, unsigned size, uint32_t value);
extern int acc_quiet;
extern uint32_t acc_suppressed;
/* Remember the first failure; the final line becomes "DONE fail <why>". */
void fail(const char *why);
/* "# timeout <what>" and fail("timeout-<what>"). */
void timeout(const char *what);
__attribute__((noreturn)) void finish(void);

/* ---- pci.c: configuration space and the target's BARs ---- */
enum bar_kind { BAR_NONE = 0, BAR_MEM32, BAR_MEM64, BAR_IO };

struct bar {
    enum bar_kind kind;
    int prefetchable;
    uint32_t base;    /* low 32 bits of the address (mem) or the port (io) */
    uint32_t base_hi; /* upper half of a 64-bit BAR */
    uint32_t size;    /* bytes; 0 if unimplemented */
};

struct pci_addr {
    uint8_t bus, dev, fn;
};

/* 0 = mechanism #1 (0xCF8/0xCFC); otherwise the ECAM base (mmcfg=). */
extern uint32_t pci_ecam_base;
extern struct pci_addr pci_target;
extern struct bar target_bars[6];
/* The target's type-0 header as pci_setup_target() read it (16 dwords). */
extern uint32_t target_header[16];

/* A structure a capability places in a BAR (virtio regions, MSI-X table and PBA), with
 * how many bytes of it the generic sequence reads. */
#define MAX_STRUCTS 16
struct bar_struct {
    int bar;
    uint32_t offset;
    uint32_t length;
    const char *what;
};
extern struct bar_struct target_structs[MAX_STRUCTS];
extern int n_target_structs;

/* Config access to any function; logged as "ACC ... cfg" iff it is the target. */
uint32_t pci_cfg_read(struct pci_addr a, uint16_t off, unsigned size);
void pci_cfg_write(struct pci_addr a, uint16_t off, unsigned size, uint32_t value);
/* 1 if offsets 0x100-0xFFF can be reached (ECAM). */
int pci_cfg_extended(void);
/* Lists every bus as "# pci" lines, numbering the buses behind bridges; returns 1 if the
 * target answered. */
int pci_scan(void);
/* Header dump, BAR sizing/programming, bridge windows, command register, interrupt
 * line/pin, then the capability lists. */
int pci_setup_target(void);

/* ---- caps.c ---- */
/* Walks and prints the target's capability lists; fills target_structs. */
void pci_walk_caps(void);

/* Logged register access through BAR n of the target (mmio or pio as the BAR says). */
uint32_t bar_read32(int n, uint32_t off);
void bar_write32(int n, uint32_t off, uint32_t value);

/* ---- sequences ---- */
/* Returns 0 when the device cannot run the sequence (reason already reported).
 * rx_frames: how many frames to receive from the network backend (0: none). */
int seq_e1000_main(uint32_t rx_frames);
/* count x (CTRL, STATUS, RAL0, RAH0) reads, for load tests. */
void seq_e1000_repeat(uint32_t count);
void seq_generic(void);

#endif

/*
 * Shared machinery of the request sequences (declared in devio.h): logged register
 * accesses of 1, 2 and 4 bytes, the capability list, MSI-X and MSI set-up, one interrupt
 * taken through an IDT of our own, and waits bounded in TSC cycles.
 *
 * Register layouts: PCI Local Bus 3.0 6.7 (capability list), 6.8.1 (MSI), 6.8.2 (MSI-X
 * capability, table entries, PBA).  Local APIC and 8259 facts: Intel SDM vol. 3, 10.4.
 */
#include "devio.h"

#define PCI_STATUS 0x06
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_CAPABILITY_LIST 0x34

#define CAP_MSI 0x05
#define CAP_MSIX 0x11

#define MSI_CTRL_ENABLE 0x0001u
#define MSI_CTRL_64BIT 0x0080u
#define MSI_CTRL_MME 0x0070u

#define MSIX_CTRL_ENABLE 0x8000u
#define MSIX_CTRL_MASKALL 0x4000u
#define MSIX_ENTRY_ADDR_LO 0x0
#define MSIX_ENTRY_ADDR_HI 0x4
#define MSIX_ENTRY_DATA 0x8
#define MSIX_ENTRY_CTRL 0xC

#define LAPIC_BASE 0xFEE00000u
#define LAPIC_TPR 0x080u
#define LAPIC_EOI 0x0B0u
#define LAPIC_SVR 0x0F0u
#define LAPIC_SVR_ENABLE 0x100u
#define LAPIC_SPURIOUS_VECTOR 0xFFu

#define PIC1_DATA 0x21
#define PIC2_DATA 0xA1

/* ---- logged accesses ---- */

static const char *space_of(int bar)
{
    return target_bars[bar].kind == BAR_IO ? "pio" : "mmio";
}

uint8_t dev_read8(int bar, uint32_t off)
{
    const struct bar *b = &target_bars[bar];
    uint8_t v = b->kind == BAR_IO ? inb((uint16_t)(b->base + off)) : mmio_read8(b->base + off);
    acc_log('R', space_of(bar), bar, off, 1, v);
    return v;
}

uint16_t dev_read16(int bar, uint32_t off)
{
    const struct bar *b = &target_bars[bar];
    uint16_t v =
        b->kind == BAR_IO ? inw((uint16_t)(b->base + off)) : mmio_read16(b->base + off);
    acc_log('R', space_of(bar), bar, off, 2, v);
    return v;
}

uint32_t dev_read32(int bar, uint32_t off)
{
    const struct bar *b = &target_bars[bar];
    uint32_t v =
        b->kind == BAR_IO ? inl((uint16_t)(b->base + off)) : mmio_read32(b->base + off);
    acc_log('R', space_of(bar), bar, off, 4, v);
    return v;
}

void dev_write8(int bar, uint32_t off, uint8_t value)
{
    const struct bar *b = &target_bars[bar];
    if (b->kind == BAR_IO)
        outb((uint16_t)(b->base + off), value);
    else
        mmio_write8(b->base + off, value);
    acc_log('W', space_of(bar), bar, off, 1, value);
}

void dev_write16(int bar, uint32_t off, uint16_t value)
{
    const struct bar *b = &target_bars[bar];
    if (b->kind == BAR_IO)
        outw((uint16_t)(b->base + off), value);
    else
        mmio_write16(b->base + off, value);
    acc_log('W', space_of(bar), bar, off, 2, value);
}

void dev_write32(int bar, uint32_t off, uint32_t value)
{
    const struct bar *b = &target_bars[bar];
    if (b->kind == BAR_IO)
        outl((uint16_t)(b->base + off), value);
    else
        mmio_write32(b->base + off, value);
    acc_log('W', space_of(bar), bar, off, 4, value);
}

void dev_write64(int bar, uint32_t off, uint32_t lo, uint32_t hi)
{
    dev_write32(bar, off, lo);
    dev_write32(bar, off + 4, hi);
}

int dev_bar_usable(int bar, uint32_t min_size, const char *why)
{
    const struct bar *b = &target_bars[bar];
    if (bar < 0 || bar > 5 || (b->kind != BAR_MEM32 && b->kind != BAR_MEM64) || b->base_hi ||
        b->base == 0 || b->size < min_size) {
        fail(why);
        return 0;
    }
    return 1;
}

/* ---- capabilities ---- */

int caps_read(struct cap_entry *out, int max)
{
    uint32_t status = pci_cfg_read(pci_target, PCI_STATUS, 2);
    if (!(status & PCI_STATUS_CAP_LIST))
        return 0;
    uint16_t ptr = (uint16_t)(pci_cfg_read(pci_target, PCI_CAPABILITY_LIST, 1) & 0xFC);
    int n = 0;
    while (ptr >= 0x40 && n < max) {
        uint32_t head = pci_cfg_read(pci_target, ptr, 4);
        out[n].ptr = ptr;
        out[n].head = head;
        n++;
        ptr = (uint16_t)((head >> 8) & 0xFC);
    }
    return n;
}

uint16_t caps_find(const struct cap_entry *caps, int n, uint8_t id)
{
    for (int i = 0; i < n; i++)
        if ((caps[i].head & 0xFF) == id)
            return caps[i].ptr;
    return 0;
}

static uint32_t cap_head(const struct cap_entry *caps, int n, uint16_t ptr)
{
    for (int i = 0; i < n; i++)
        if (caps[i].ptr == ptr)
            return caps[i].head;
    return 0;
}

/* ---- MSI-X and MSI ---- */

int msix_setup(const struct cap_entry *caps, int n, struct msix_info *m, const char *why)
{
    memset(m, 0, sizeof *m);
    uint16_t cap = caps_find(caps, n, CAP_MSIX);
    if (!cap) {
        fail(why);
        return 0;
    }
    uint32_t ctrl = cap_head(caps, n, cap) >> 16;
    uint32_t table = pci_cfg_read(pci_target, (uint16_t)(cap + 4), 4);
    uint32_t pba = pci_cfg_read(pci_target, (uint16_t)(cap + 8), 4);
    m->cap = cap;
    m->vectors = (ctrl & 0x7FF) + 1;
    m->table_bar = (int)(table & 7);
    m->table_off = table & ~7u;
    m->pba_bar = (int)(pba & 7);
    m->pba_off = pba & ~7u;
    kprintf("# msix cap 0x%x vectors %u table bar %d 0x%x pba bar %d 0x%x\n", cap, m->vectors,
            m->table_bar, m->table_off, m->pba_bar, m->pba_off);
    if (!dev_bar_usable(m->table_bar, m->table_off + 16, why) ||
        !dev_bar_usable(m->pba_bar, m->pba_off + 8, why)) {
        m->cap = 0;
        return 0;
    }
    /* Enabled with the whole function masked while entry 0 is written, then unmasked. */
    ctrl = (ctrl | MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) & 0xFFFFu;
    pci_cfg_write(pci_target, (uint16_t)(cap + 2), 2, ctrl);
    uint32_t e = m->table_off;
    dev_write32(m->table_bar, e + MSIX_ENTRY_ADDR_LO, PROBE_MSI_ADDRESS);
    dev_write32(m->table_bar, e + MSIX_ENTRY_ADDR_HI, 0);
    dev_write32(m->table_bar, e + MSIX_ENTRY_DATA, PROBE_IRQ_VECTOR);
    dev_write32(m->table_bar, e + MSIX_ENTRY_CTRL, 0); /* vector unmasked */
    pci_cfg_write(pci_target, (uint16_t)(cap + 2), 2, ctrl & ~MSIX_CTRL_MASKALL);
    kprintf("# msix entry 0 address 0x%x data 0x%x unmasked, msix enabled\n", PROBE_MSI_ADDRESS,
            PROBE_IRQ_VECTOR);
    return 1;
}

uint32_t msix_pending(const struct msix_info *m)
{
    uint32_t v = dev_read32(m->pba_bar, m->pba_off);
    kprintf("# msix pba 0x%x\n", v);
    return v;
}

int msi_setup(const struct cap_entry *caps, int n)
{
    uint16_t cap = caps_find(caps, n, CAP_MSI);
    if (!cap)
        return 0;
    uint32_t ctrl = cap_head(caps, n, cap) >> 16;
    int is64 = (ctrl & MSI_CTRL_64BIT) != 0;
    pci_cfg_write(pci_target, (uint16_t)(cap + 4), 4, PROBE_MSI_ADDRESS);
    if (is64)
        pci_cfg_write(pci_target, (uint16_t)(cap + 8), 4, 0);
    pci_cfg_write(pci_target, (uint16_t)(cap + (is64 ? 0xC : 0x8)), 2, PROBE_IRQ_VECTOR);
    /* One vector (MME 0), enabled. */
    pci_cfg_write(pci_target, (uint16_t)(cap + 2), 2, (ctrl & ~MSI_CTRL_MME) | MSI_CTRL_ENABLE);
    kprintf("# msi cap 0x%x%s address 0x%x data 0x%x enabled\n", cap, is64 ? " 64bit" : "",
            PROBE_MSI_ADDRESS, PROBE_IRQ_VECTOR);
    return 1;
}

/* ---- interrupts ---- */

struct idt_gate {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t zero;
    uint8_t type; /* 0x8E: present, ring 0, 32-bit interrupt gate */
    uint16_t offset_hi;
} __attribute__((packed));

struct idt_pointer {
    uint16_t limit;
    uint32_t base;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(8)));
volatile uint32_t irq_count;
volatile uint32_t irq_other;

static void lapic_write(uint32_t reg, uint32_t v)
{
    mmio_write32(LAPIC_BASE + reg, v);
}

static uint32_t lapic_read(uint32_t reg)
{
    return mmio_read32(LAPIC_BASE + reg);
}

__attribute__((used)) static void isr_probe_c(void)
{
    irq_count++;
    lapic_write(LAPIC_EOI, 0);
}

/* Any other vector.  With both PICs masked only a stray local APIC interrupt can come
 * here; an EOI with nothing in service does nothing. */
__attribute__((used)) static void isr_other_c(void)
{
    irq_other++;
    lapic_write(LAPIC_EOI, 0);
}

/* The entry stubs.  They return without IRET: the project's software KVM (kvm-pvm) cannot
 * emulate a protected-mode IRET and stops the guest with an emulation failure.  An
 * interrupt at the same privilege level pushed EFLAGS, CS and EIP; the stub restores the
 * registers, clears IF in the saved EFLAGS (the interrupted code is irq_wait()'s loop,
 * which needs no second interrupt: it re-enables them per wait), reorders the frame to
 * EFLAGS, EIP and returns with POPF and RET 4 (dropping the old EFLAGS slot). */
void isr_probe_entry(void);
void isr_other_entry(void);
__asm__(".text\n"
        "isr_probe_entry:\n"
        "    pushal\n"
        "    cld\n"
        "    call isr_probe_c\n"
        "    jmp isr_return\n"
        "isr_other_entry:\n"
        "    pushal\n"
        "    cld\n"
        "    call isr_other_c\n"
        "isr_return:\n"
        "    popal\n"
        "    andl $0xFFFFFDFF, 8(%esp)\n" /* EIP, CS, EFLAGS: IF off */
        "    pushl %eax\n"
        "    movl 4(%esp), %eax\n"
        "    movl %eax, 8(%esp)\n"  /* EIP over CS */
        "    movl 12(%esp), %eax\n"
        "    movl %eax, 4(%esp)\n"  /* EFLAGS over the first EIP */
        "    popl %eax\n"
        "    popfl\n"
        "    ret $4\n");

static void set_gate(unsigned vector, void (*handler)(void), uint16_t cs)
{
    uint32_t a = (uint32_t)(uintptr_t)handler;
    idt[vector].offset_lo = (uint16_t)a;
    idt[vector].selector = cs;
    idt[vector].zero = 0;
    idt[vector].type = 0x8E;
    idt[vector].offset_hi = (uint16_t)(a >> 16);
}

void irq_init(void)
{
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    for (unsigned v = 0; v < 256; v++)
        set_gate(v, isr_other_entry, cs);
    set_gate(PROBE_IRQ_VECTOR, isr_probe_entry, cs);
    struct idt_pointer p = {sizeof idt - 1, (uint32_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" : : "m"(p));

    outb(PIC1_DATA, 0xFF);
    outb(PIC2_DATA, 0xFF);
    lapic_write(LAPIC_TPR, 0);
    uint32_t svr = lapic_read(LAPIC_SVR);
    lapic_write(LAPIC_SVR, (svr & ~0xFFu) | LAPIC_SVR_ENABLE | LAPIC_SPURIOUS_VECTOR);
    irq_count = 0;
    irq_other = 0;
    kprintf("# irq vector 0x%x via local apic (svr was 0x%x), pics masked\n", PROBE_IRQ_VECTOR,
            svr);
}

/* ---- waits ---- */

uint64_t tsc_now(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

int tsc_expired(uint64_t start)
{
    return tsc_now() - start >= WAIT_CYCLES;
}

static void tsc_delay(uint32_t cycles)
{
    uint64_t start = tsc_now();
    while (tsc_now() - start < cycles)
        __asm__ volatile("pause");
}

int irq_wait(volatile uint32_t *counter, uint32_t want, int (*done)(void))
{
    uint64_t start = tsc_now();
    int ok = 0;
    __asm__ volatile("sti" : : : "memory");
    for (;;) {
        if (*counter >= want && (!done || done())) {
            ok = 1;
            break;
        }
        if (tsc_expired(start))
            break;
        __asm__ volatile("pause" : : : "memory");
    }
    __asm__ volatile("cli" : : : "memory");
    return ok;
}

uint32_t poll32(int bar, uint32_t off, uint32_t mask, uint32_t want, const char *what)
{
    uint64_t start = tsc_now();
    uint32_t pause = 1u << 10;
    for (;;) {
        uint32_t v = dev_read32(bar, off);
        if ((v & mask) == want)
            return v;
        if (tsc_expired(start)) {
            timeout(what);
            return v;
        }
        tsc_delay(pause);
        if (pause < (1u << 24))
            pause <<= 1;
    }
}

/* ---- printing ---- */

void print_hex(const char *label, const volatile uint8_t *p, unsigned n)
{
    char line[3 * 32 + 1];
    static const char digits[] = "0123456789abcdef";
    if (n > 32)
        n = 32;
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        if (i)
            line[k++] = ' ';
        line[k++] = digits[p[i] >> 4];
        line[k++] = digits[p[i] & 0xF];
    }
    line[k] = 0;
    kprintf("# %s %s\n", label, line);
}

void print_ascii(const char *label, const volatile uint8_t *p, unsigned n)
{
    char text[64];
    if (n > sizeof text - 1)
        n = sizeof text - 1;
    unsigned len = 0;
    for (unsigned i = 0; i < n; i++) {
        char c = (char)p[i];
        text[i] = (c >= 0x20 && c < 0x7F) ? c : '.';
        if (c != ' ')
            len = i + 1;
    }
    text[len] = 0;
    kprintf("# %s \"%s\"\n", label, text);
}

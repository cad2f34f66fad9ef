/*
 * COM1 output and the serial protocol (see README.md).
 *
 * The UART is polled.  Under KVM every port access is a VM exit (several microseconds
 * on nested KVM), so the 16-byte FIFO is used: one status poll per 16 characters
 * instead of one per character.  The serial lines are how a test learns what the guest
 * did, so nothing else (no timestamps, no addresses of guest memory) goes into them
 * unless it is deterministic.
 */
#include "probe.h"

#define COM1 0x3F8
#define UART_THR 0
#define UART_IER 1
#define UART_DLL 0
#define UART_DLM 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define UART_FIFO_BYTES 16
#define UART_POLL_LIMIT 1000000u

#define DEBUG_EXIT_PORT 0xF4

int acc_quiet;
uint32_t acc_suppressed;
static const char *first_failure;
static int first_failure_is_timeout;
static unsigned tx_room;

void serial_init(void)
{
    outb(COM1 + UART_IER, 0x00);  /* no interrupts: we poll */
    outb(COM1 + UART_LCR, 0x80);  /* DLAB */
    outb(COM1 + UART_DLL, 0x01);  /* 115200 baud */
    outb(COM1 + UART_DLM, 0x00);
    outb(COM1 + UART_LCR, 0x03);  /* 8N1 */
    outb(COM1 + UART_FCR, 0xC7);  /* FIFO on, cleared, 14-byte trigger */
    outb(COM1 + UART_MCR, 0x03);  /* DTR, RTS */
    tx_room = 0;
}

/* Wait (bounded) until the LSR shows `bits`.  A stuck UART cannot report its own
 * timeout, so on expiry we simply carry on: the missing output is the symptom. */
static void uart_wait(uint8_t bits)
{
    for (uint32_t i = 0; i < UART_POLL_LIMIT; i++)
        if ((inb(COM1 + UART_LSR) & bits) == bits)
            return;
}

static void serial_putc(char c)
{
    if (tx_room == 0) {
        uart_wait(LSR_THRE);
        tx_room = UART_FIFO_BYTES;
    }
    outb(COM1 + UART_THR, (uint8_t)c);
    tx_room--;
}

void serial_drain(void)
{
    uart_wait(LSR_THRE | LSR_TEMT);
    tx_room = UART_FIFO_BYTES;
}

/* ---- formatting ---- */

struct sink {
    char buf[160];
    unsigned len;
};

static void sink_putc(struct sink *s, char c)
{
    if (s->len < sizeof s->buf - 1)
        s->buf[s->len++] = c;
}

static void sink_num(struct sink *s, uint32_t v, unsigned base, unsigned width, char pad)
{
    char tmp[12];
    unsigned n = 0;
    do {
        uint32_t d = v % base;
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    while (n < width && n < sizeof tmp)
        tmp[n++] = pad;
    while (n)
        sink_putc(s, tmp[--n]);
}

static void sink_vformat(struct sink *s, const char *fmt, __builtin_va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            sink_putc(s, *fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        unsigned width = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (unsigned)(*fmt++ - '0');
        switch (*fmt) {
        case 's': {
            const char *str = __builtin_va_arg(ap, const char *);
            while (*str)
                sink_putc(s, *str++);
            break;
        }
        case 'c':
            sink_putc(s, (char)__builtin_va_arg(ap, int));
            break;
        case 'u':
            sink_num(s, __builtin_va_arg(ap, uint32_t), 10, width, pad);
            break;
        case 'd': {
            int32_t v = __builtin_va_arg(ap, int32_t);
            if (v < 0) {
                sink_putc(s, '-');
                v = -v;
            }
            sink_num(s, (uint32_t)v, 10, width, pad);
            break;
        }
        case 'x':
            sink_num(s, __builtin_va_arg(ap, uint32_t), 16, width, pad);
            break;
        case '%':
            sink_putc(s, '%');
            break;
        case '\0':
            return;
        default:
            sink_putc(s, '?');
            break;
        }
    }
}

static void sink_flush(struct sink *s)
{
    for (unsigned i = 0; i < s->len; i++) {
        if (s->buf[i] == '\n')
            serial_putc('\r');
        serial_putc(s->buf[i]);
    }
    s->len = 0;
}

void kprintf(const char *fmt, ...)
{
    struct sink s;
    s.len = 0;
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    sink_vformat(&s, fmt, ap);
    __builtin_va_end(ap);
    sink_flush(&s);
}

void acc_log(char op, const char *space, int bar, uint32_t offset, unsigned size, uint32_t value)
{
    if (acc_quiet) {
        acc_suppressed++;
        return;
    }
    if (bar < 0)
        kprintf("ACC %c %s - 0x%x %u 0x%x\n", op, space, offset, size, value);
    else
        kprintf("ACC %c %s %u 0x%x %u 0x%x\n", op, space, (uint32_t)bar, offset, size, value);
}

void fail(const char *why)
{
    if (!first_failure)
        first_failure = why;
    kprintf("# error %s\n", why);
}

void timeout(const char *what)
{
    kprintf("# timeout %s\n", what);
    if (!first_failure) {
        first_failure = what;
        first_failure_is_timeout = 1;
    }
}

void finish(void)
{
    if (acc_suppressed)
        kprintf("# suppressed %u\n", acc_suppressed);
    if (first_failure)
        kprintf("DONE fail %s%s\n", first_failure_is_timeout ? "timeout-" : "", first_failure);
    else
        kprintf("DONE ok\n");
    serial_drain();
    /* isa-debug-exit: QEMU exits with status (0 << 1) | 1 = 1. */
    outb(DEBUG_EXIT_PORT, 0);
    for (;;)
        __asm__ volatile("cli; hlt");
}

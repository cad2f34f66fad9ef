/*
 * probe_main: read the multiboot command line, scan PCI, set the target up, run one
 * register sequence, report DONE and make QEMU exit through isa-debug-exit.
 *
 * Command line (QEMU -append): space-separated key=value pairs
 *   target=BB:DD.F   the function under test (required)
 *   seq=e1000|generic|virtio|nvme|edu
 *   mmcfg=0xADDR     use PCIe ECAM at ADDR instead of ports 0xCF8/0xCFC
 *   count=N          e1000: repeat the read loop N extra times (default 0)
 *   quiet=1          do not print ACC lines for that repeat loop (count only)
 *   rx=N             e1000: receive N frames the network backend sends (default 0)
 * QEMU puts the kernel's file name first; words without '=' are ignored.
 */
#include "probe.h"
#include "devio.h"

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u
#define MULTIBOOT_INFO_CMDLINE (1u << 2)
#define PROTOCOL "qtrace-probe/1"

enum seq { SEQ_NONE, SEQ_E1000, SEQ_GENERIC, SEQ_VIRTIO, SEQ_NVME, SEQ_EDU };

struct options {
    int have_target;
    enum seq seq;
    uint32_t count;
    int quiet;
    uint32_t rx;
};

/* Does the n-char string a equal the C string b? */
static int streq_n(const char *a, size_t n, const char *b)
{
    if (strlen(b) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parses [0x]HEX or DEC (base 16 when `hex`) of exactly n chars; 0 on any bad char. */
static int parse_num(const char *s, size_t n, int hex, uint32_t *out)
{
    uint32_t v = 0;
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        n -= 2;
        hex = 1;
    }
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        int d = hex_digit(s[i]);
        if (d < 0 || (!hex && d > 9))
            return 0;
        v = v * (hex ? 16u : 10u) + (uint32_t)d;
    }
    *out = v;
    return 1;
}

/* BB:DD.F, all hex. */
static int parse_bdf(const char *s, size_t n, struct pci_addr *out)
{
    uint32_t bus, dev, fn;
    if (n != 7 || s[2] != ':' || s[5] != '.')
        return 0;
    if (!parse_num(s, 2, 1, &bus) || !parse_num(s + 3, 2, 1, &dev) ||
        !parse_num(s + 6, 1, 1, &fn) || dev > 31 || fn > 7)
        return 0;
    out->bus = (uint8_t)bus;
    out->dev = (uint8_t)dev;
    out->fn = (uint8_t)fn;
    return 1;
}

static void parse_arg(const char *key, size_t klen, const char *val, size_t vlen,
                      struct options *o)
{
    uint32_t num;
    int known = 1;
    if (streq_n(key, klen, "target")) {
        if (parse_bdf(val, vlen, &pci_target))
            o->have_target = 1;
        else
            fail("bad-target");
    } else if (streq_n(key, klen, "seq")) {
        if (streq_n(val, vlen, "e1000"))
            o->seq = SEQ_E1000;
        else if (streq_n(val, vlen, "generic"))
            o->seq = SEQ_GENERIC;
        else if (streq_n(val, vlen, "virtio"))
            o->seq = SEQ_VIRTIO;
        else if (streq_n(val, vlen, "nvme"))
            o->seq = SEQ_NVME;
        else if (streq_n(val, vlen, "edu"))
            o->seq = SEQ_EDU;
        else
            fail("bad-seq");
    } else if (streq_n(key, klen, "mmcfg")) {
        if (parse_num(val, vlen, 1, &num) && num != 0 && !(num & 0xFFFFF))
            pci_ecam_base = num;
        else
            fail("bad-mmcfg");
    } else if (streq_n(key, klen, "count")) {
        if (parse_num(val, vlen, 0, &num))
            o->count = num;
        else
            fail("bad-count");
    } else if (streq_n(key, klen, "quiet")) {
        o->quiet = streq_n(val, vlen, "1");
    } else if (streq_n(key, klen, "rx")) {
        if (parse_num(val, vlen, 0, &num))
            o->rx = num;
        else
            fail("bad-rx");
    } else {
        known = 0;
    }
    /* Echo key=value words only: the first word QEMU passes is a host path. */
    char k[16], v[24];
    size_t kl = klen < sizeof k - 1 ? klen : sizeof k - 1;
    size_t vl = vlen < sizeof v - 1 ? vlen : sizeof v - 1;
    memcpy(k, key, kl);
    k[kl] = 0;
    memcpy(v, val, vl);
    v[vl] = 0;
    kprintf("# arg %s=%s%s\n", k, v, known ? "" : " ignored");
}

static void parse_cmdline(const char *s, struct options *o)
{
    while (*s) {
        while (*s == ' ')
            s++;
        const char *word = s;
        while (*s && *s != ' ')
            s++;
        const char *eq = word;
        while (eq < s && *eq != '=')
            eq++;
        if (eq < s)
            parse_arg(word, (size_t)(eq - word), eq + 1, (size_t)(s - eq - 1), o);
    }
}

void probe_main(uint32_t magic, uint32_t info);

void probe_main(uint32_t magic, uint32_t info)
{
    struct options opts = {0, SEQ_NONE, 0, 0, 0};

    serial_init();
    kprintf("\n# " PROTOCOL " start\n");

    if (magic == MULTIBOOT_BOOTLOADER_MAGIC) {
        const uint32_t *mbi = (const uint32_t *)(uintptr_t)info;
        if ((mbi[0] & MULTIBOOT_INFO_CMDLINE) && mbi[4])
            parse_cmdline((const char *)(uintptr_t)mbi[4], &opts);
    } else {
        fail("not-multiboot");
    }
    if (!opts.have_target)
        fail("no-target");
    if (opts.seq == SEQ_NONE)
        fail("no-seq");
    kprintf("# config %s\n", pci_ecam_base ? "ecam" : "cf8");

    int found = pci_scan();
    if (!found && opts.have_target) {
        kprintf("# target not seen on bus 0 scan\n");
        if (pci_target.bus == 0)
            fail("target-not-found");
    }
    if (opts.have_target && opts.seq != SEQ_NONE && (found || pci_target.bus != 0) &&
        pci_setup_target()) {
        if (opts.seq == SEQ_E1000) {
            if (seq_e1000_main(opts.rx) && opts.count) {
                acc_quiet = opts.quiet;
                seq_e1000_repeat(opts.count);
                acc_quiet = 0;
            }
        } else if (opts.seq == SEQ_VIRTIO) {
            seq_virtio();
        } else if (opts.seq == SEQ_NVME) {
            seq_nvme();
        } else if (opts.seq == SEQ_EDU) {
            seq_edu();
        } else {
            seq_generic();
        }
    }
    finish();
}

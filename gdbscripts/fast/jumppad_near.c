/* LD_PRELOAD'd before gdbserver's in-process agent (libinproctrace.so) in QEMU.
 *
 * Why: the agent asks for its jump pad with mmap(NULL, size, RWX, MAP_32BIT|...), so the pad
 * lands in the low 2 GiB, while the debug QEMU is PIE and mapped far above 4 GiB: the pad's
 * 5-byte jumps back to a tracepoint cannot reach (gdb: "Jump back from jump pad too far from
 * tracepoint (offset ... > int32)"). This mmap turns exactly that request (MAP_32BIT with
 * PROT_EXEC, no address) into one just below the executable, within 2 GiB of all its code.
 * Every other mmap goes through unchanged. Built in the container by the fast collector.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/mman.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    static mmap_fn real;
    if (!real)
        real = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
    if (addr == NULL && (flags & MAP_32BIT) && (prot & PROT_EXEC)) {
        uintptr_t base = (uintptr_t)getauxval(AT_PHDR) & ~(uintptr_t)0xfff;
        uintptr_t step = 1 << 20;
        uintptr_t want = (base - len - step) & ~(step - 1);
        int tries;
        for (tries = 0; tries < 1024 && want > step; tries++, want -= step) {
            void *got = real((void *)want, len, prot,
                             (flags & ~MAP_32BIT) | MAP_FIXED_NOREPLACE, fd, off);
            if (got != MAP_FAILED)
                return got;
        }
    }
    return real(addr, len, prot, flags, fd, off);
}

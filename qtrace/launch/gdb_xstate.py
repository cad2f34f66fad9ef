"""gdb 13 on CPUs with AMX: a preloaded shim so that gdb can write the registers back.

Every inferior call the collector makes (``object_resolve_path`` at discovery, and more)
saves and restores the thread's registers, and gdb 13 writes the extended state with
``PTRACE_SETREGSET`` ``NT_X86_XSTATE`` from a buffer sized for the components up to PKRU
(2696 bytes). Linux (since 5.16) accepts only a buffer of the full user XSAVE size, which on
a CPU with AMX includes the 8 KiB tile data (11008 bytes), and refuses anything else with
EFAULT: gdb says "Couldn't write extended state status: Bad address" and the capture stops
(measured on this project's AMX hosts, Linux 6.18; any gdb inferior call fails the same way).

The shim wraps ``ptrace`` in gdb only: a short ``NT_X86_XSTATE`` write is completed from the
kernel's own full buffer (``PTRACE_GETREGSET``) with gdb's bytes laid over its start, the
components past gdb's buffer keeping the state the kernel gave. It is built in the capture's
container (the image has the guest toolchain) and given to gdb with ``LD_PRELOAD``; gdb is
told to keep it out of QEMU's environment. On CPUs without such components it is not used.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BEYOND_GDB13_FLAGS",
    "SHIM_IN_CONTAINER",
    "SHIM_SOURCE",
    "needs_xstate_shim",
    "shim_build_command",
]

BEYOND_GDB13_FLAGS = ("amx_tile",)
"""``/proc/cpuinfo`` flags of user XSAVE components that lie past gdb 13's buffer (AMX tile
data, component 18): with one of them the kernel's size and gdb's differ."""

SHIM_IN_CONTAINER = "/tmp/qtrace-xstate-shim.so"
SHIM_SOURCE_NAME = ".qtrace-xstate-shim.c"

SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#define XSTATE_BV 512          /* the XSAVE header's XSTATE_BV, after the legacy area */
#define GDB_COMPONENTS 10      /* gdb 13 knows components 0-9 (x87 .. PKRU) */
static unsigned char full[64 * 1024];

typedef long (*ptrace_fn)(enum __ptrace_request, ...);

long ptrace(enum __ptrace_request request, ...)
{
    static ptrace_fn real;
    va_list ap;
    va_start(ap, request);
    pid_t pid = va_arg(ap, pid_t);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);
    if (!real)
        real = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
    if (request == PTRACE_SETREGSET && (uintptr_t)addr == NT_X86_XSTATE && data) {
        struct iovec *given = data;
        struct iovec whole = { full, sizeof full };
        if (given->iov_len >= XSTATE_BV + 8 && real(PTRACE_GETREGSET, pid, addr, &whole) == 0
            && whole.iov_len > given->iov_len) {
            uint64_t kept, bv;
            memcpy(&kept, full + XSTATE_BV, 8);
            memcpy(full, given->iov_base, given->iov_len);
            memcpy(&bv, full + XSTATE_BV, 8);
            bv |= kept & ~((1ULL << GDB_COMPONENTS) - 1);
            memcpy(full + XSTATE_BV, &bv, 8);
            return real(PTRACE_SETREGSET, pid, addr, &whole);
        }
    }
    return real(request, pid, addr, data);
}
"""


def needs_xstate_shim(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Does this host's CPU have a user XSAVE component gdb 13 cannot write back?"""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return any(flag in line.split() for flag in BEYOND_GDB13_FLAGS)
    return False


def shim_build_command(out_dir: Path, mount_out: str) -> list[str]:
    """Write the shim's source into the run directory (mounted at ``mount_out``) and return
    the container command that builds it to :data:`SHIM_IN_CONTAINER` and removes the
    source again."""
    (out_dir / SHIM_SOURCE_NAME).write_text(SHIM_SOURCE, encoding="utf-8")
    source = f"{mount_out}/{SHIM_SOURCE_NAME}"
    return [
        "sh",
        "-c",
        (
            f"cc -shared -fPIC -O2 -o {SHIM_IN_CONTAINER} {source} -ldl; status=$?; "
            f"rm -f {source}; exit $status"
        ),
    ]

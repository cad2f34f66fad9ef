"""The stopped thread's registers and memory, read without building a ``gdb.Frame``.

At each stop gdb throws its frames away, and the first register read of a stop through
gdb's API makes it build frame #0 again: ``gdb.newest_frame()`` costs about 35 us (frame
id, unwinder sniffing), ``parse_and_eval("$rsp")`` 8-10 us (more the more debug info gdb
has read), each ``Frame.read_var`` about 10 us more. gdb is the stopped thread's ptrace
tracer, and its Python runs on gdb's own thread, so the collector can ask the kernel
itself: ``PTRACE_GETREGS`` returns every general register in one call (about 1 us) and
``/proc/PID/mem`` reads memory (about 1 us for 4 KiB). These are the values gdb reads: the
thread is stopped, and gdb writes registers through to it (the PC it moves back onto the
breakpoint after the trap is what the kernel returns too).
The first read is checked against gdb's ``$rsp``, ``$rbp``, ``$rax`` and ``$pc``; if the
kernel refuses or they differ, gdb's API is used from then on and a collector error says
why.
"""

import ctypes
import os
import struct

import gdb

# struct user_regs_struct (x86-64, <sys/user.h>): the order PTRACE_GETREGS fills in.
USER_REGS = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
    "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
    "gs_base", "ds", "es", "fs", "gs",
)  # fmt: skip
RBP = USER_REGS.index("rbp")
RAX = USER_REGS.index("rax")
RSP = USER_REGS.index("rsp")
PC = USER_REGS.index("rip")
_CHECKED = (RBP, RAX, RSP, PC)  # what the collector reads; PC: gdb has put it back at the
# breakpoint's address by the time stop() runs (the trap leaves it one byte past)
_PTRACE_GETREGS = 12
_MASK64 = (1 << 64) - 1
U64 = struct.Struct("<Q")


class _State:
    """How registers and memory are read in this gdb (set up at the first read)."""

    inferior = None
    mem_fd = None  # /proc/PID/mem, or None: gdb's Inferior.read_memory
    ptrace = None  # libc's ptrace, or None: gdb's parse_and_eval
    buffer = None
    lwps = {}  # gdb thread number -> LWP
    report = None  # the session's note_error
    checked = False


_state = _State()


def setup(report):
    """Read through the kernel where it lets us (called once QEMU runs); ``report`` gets
    what made the collector fall back to gdb's API."""
    _state.report = report
    _state.inferior = gdb.selected_inferior()
    try:
        _state.mem_fd = os.open("/proc/%d/mem" % _state.inferior.pid, os.O_RDONLY)
    except OSError as exc:
        report("memory read through gdb (/proc/PID/mem: %s)" % exc)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ptrace = libc.ptrace
        ptrace.restype = ctypes.c_long
        ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
        _state.buffer = (ctypes.c_ulong * len(USER_REGS))()
        _state.ptrace = ptrace
    except (OSError, AttributeError) as exc:
        report("registers read through gdb (ptrace: %s)" % exc)


def registers(thread=None):
    """The selected thread's general registers (``thread``: its gdb.InferiorThread, if the
    caller has it), indexed by :data:`USER_REGS` position (the ptrace buffer: read what is
    needed before the next call)."""
    if _state.ptrace is not None:
        thread = thread or gdb.selected_thread()
        lwp = _state.lwps.get(thread.num)
        if lwp is None:
            lwp = _state.lwps[thread.num] = thread.ptid[1]
        if _state.ptrace(_PTRACE_GETREGS, lwp, None, ctypes.byref(_state.buffer)) == 0:
            if not _state.checked:
                _check(_state.buffer)
            if _state.ptrace is not None:
                return _state.buffer
        else:
            _fall_back("ptrace(PTRACE_GETREGS) failed: %s" % os.strerror(ctypes.get_errno()))
    return _by_gdb()


def _by_gdb():
    words = [0] * len(USER_REGS)
    for index in (RBP, RAX, RSP, PC):
        words[index] = int(gdb.parse_and_eval("$" + USER_REGS[index])) & _MASK64
    return words


def _check(words):
    _state.checked = True
    expected = _by_gdb()
    if [words[i] for i in _CHECKED] != [expected[i] for i in _CHECKED]:
        _fall_back("ptrace's registers differ from gdb's")


def _fall_back(why):
    _state.ptrace = None
    if _state.report is not None:
        _state.report("registers read through gdb from now on: %s" % why)


def inferior():
    """The inferior (qtrace runs one QEMU per gdb)."""
    if _state.inferior is None:
        _state.inferior = gdb.selected_inferior()
    return _state.inferior


def memory(address, length):
    """``length`` bytes at ``address``; raises gdb.MemoryError."""
    if _state.mem_fd is not None:
        try:
            data = os.pread(_state.mem_fd, length, address)
        except (OSError, OverflowError):
            data = b""
        if len(data) == length:
            return data
        raise gdb.MemoryError("Cannot access memory at address 0x%x" % address)
    return bytes(inferior().read_memory(address, length))


def stack_block(address, length, needed):
    """Stack memory from ``address``: up to ``length`` bytes, at least ``needed`` (the top of
    a thread's stack may end before ``address + length``); raises gdb.MemoryError."""
    if _state.mem_fd is not None:
        try:
            data = os.pread(_state.mem_fd, length, address)
        except (OSError, OverflowError):
            data = b""
        if len(data) >= needed:
            return data
        raise gdb.MemoryError("Cannot access memory at address 0x%x" % address)
    try:
        return memory(address, length)
    except gdb.MemoryError:
        return memory(address, needed)


def own_code():
    """(start, end) of the executable mappings of the inferior's own binary, from the
    kernel's ``/proc/PID/maps`` (gdb runs next to QEMU, in its container), or None."""
    binary = os.path.realpath(gdb.current_progspace().filename)
    spans = []
    with open("/proc/%d/maps" % inferior().pid, encoding="utf-8") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6 and "x" in fields[1] and fields[5].strip() == binary:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                spans.append((start, end))
    return (min(s for s, _ in spans), max(e for _, e in spans)) if spans else None

"""Backtraces, deduplicated, with a cheap key per hit and gdb's unwinder once per stack.

gdb's unwinder costs about 1 ms per hit on QEMU's deep stacks, which would dominate a
capture. QEMU built with --enable-debug keeps frame pointers (-O0), so the chain of saved
``rbp``/return-address pairs is a cheap exact key: ``(pc, return addresses..., where the
chain ended)``, read from registers and stack memory without a ``gdb.Frame`` (regs.py). A
key seen for the first time is unwound by gdb (symbolized once, written as a ``stack``
record) and checked: gdb's PCs and the key's must agree as far as both go (the chain ends
at the first frame without a frame pointer, gdb's walk at ``main``). A key that fails the
check (a frame without frame pointer inside the chain) is sent through gdb's unwinder at
every hit, so that access's stack id is always its own stack; every other key stays cheap.

Breakpoints on a ``ret`` instruction sit after ``leave``: there ``rbp`` already belongs to
the caller and the function's own return address is at ``[rsp]``.
"""

import struct

import gdb

from qtrace_gdb.regs import PC, RBP, RSP, U64, memory, registers, stack_block

MAX_FRAMES = 64
_MAX_FRAME_BYTES = 1 << 20
_BLOCK_BYTES = 1024
_PAIR = struct.Struct("<QQ")  # saved rbp, return address (x86-64, little endian)


class StackInfo:
    """What is known about one distinct stack: its id, gdb PCs and cached facts."""

    __slots__ = ("id", "pcs", "facts")

    def __init__(self, stack_id, pcs):
        self.id = stack_id
        self.pcs = pcs
        self.facts = {}


class StackTable:
    """Maps each distinct stack to a ``StackInfo``, writing its ``stack`` record once."""

    def __init__(self, out, source_root):
        self._out = out
        self._root = source_root.rstrip("/") + "/"
        self._by_key = {}
        self._by_pcs = {}
        self._inexact = set()  # keys whose chain missed a frame: unwound by gdb every hit
        self.fast = True
        self.fast_misses = 0
        # QEMU's own code (set once QEMU runs): the chain ends at the first return address
        # outside it. Beyond a frame of libc, glib or TCG's generated code, rbp is not a
        # frame pointer (TCG keeps env there), and what it points at can look like one.
        self.own_code = (0, 1 << 64)

    def __len__(self):
        return len(self._by_pcs)

    def current(self, frame=None, at_return=False):
        """The StackInfo of this stop's stack (``frame``: its newest gdb frame, if the
        caller has it; only needed when gdb's unwinder runs)."""
        if not self.fast:
            return self._from_frames(self.walk(frame))
        return self.lookup(self._fast_key(at_return), frame)

    def lookup(self, key, frame=None):
        """The StackInfo of this stop, whose cheap key (:meth:`key_at`) is ``key``."""
        info = self._by_key.get(key)
        if info is not None:
            return info
        info = self._from_frames(self.walk(frame))
        if not self.fast or key in self._inexact:
            return info
        if not _agree(key[0], info.pcs):
            self._inexact.add(key)  # a frame without frame pointer: exactness first
            self.fast_misses += 1
            return info
        self._by_key[key] = info
        return info

    def exact_pcs(self, key):
        """(gdb's PCs for this stop, whose key is ``key``; whether they hold for every stop
        with that key), without writing a stack record: to test what is on the stack of a
        hit that may not be recorded."""
        info = self._by_key.get(key)
        if info is not None:
            return info.pcs, True
        pcs = tuple(f.pc() for f in self.walk())
        return pcs, self.fast and key not in self._inexact and _agree(key[0], pcs)

    def pcs(self, frame=None, at_return=False):
        """This stop's return-address chain (cheap, nothing recorded): to test what is on
        the stack without unwinding with gdb or writing a stack record."""
        return self._fast_key(at_return)[0]

    def _fast_key(self, at_return):
        words = registers()
        pcs = [words[PC]]
        rbp, rsp = words[RBP], words[RSP]
        if at_return:
            pcs.append(U64.unpack(memory(rsp, 8))[0])
        return self.key_at(pcs, rbp)

    def key_at(self, pcs, rbp, base=0, block=b""):
        """The key of a stop whose own PCs are ``pcs`` (its pc and, at a ``ret``, the
        return address at ``[rsp]``), following the frame-pointer chain from ``rbp``;
        ``block`` is stack memory read at ``base`` that the caller already has."""
        # Frames of -O0 code are small: one read usually covers several of them. (Run at
        # every hit: names are bound locally.)
        code_start, code_end = self.own_code
        unpack, append = _PAIR.unpack_from, pcs.append
        last = len(block) - 16
        for _ in range(MAX_FRAMES):
            offset = rbp - base
            if offset < 0 or offset > last:
                try:
                    base, block = rbp, stack_block(rbp, _BLOCK_BYTES, 16)
                except gdb.MemoryError:
                    break
                offset, last = 0, len(block) - 16
            saved_rbp, ret = unpack(block, offset)
            if ret == 0:
                break
            append(ret)
            if not code_start <= ret < code_end:
                break  # returns into libc, glib or TCG generated code: no chain beyond
            if not rbp < saved_rbp < rbp + _MAX_FRAME_BYTES:
                break  # left the frame-pointer chain
            rbp = saved_rbp
        return tuple(pcs), rbp

    def walk(self, frame=None):
        """The frames from ``frame`` (default: the newest) by gdb's unwinder, innermost first."""
        frames = []
        frame = frame or gdb.newest_frame()
        while frame is not None and len(frames) < MAX_FRAMES:
            frames.append(frame)
            try:
                frame = frame.older()
            except gdb.error:
                break
        return frames

    def _from_frames(self, frames):
        pcs = tuple(f.pc() for f in frames)
        info = self._by_pcs.get(pcs)
        if info is None:
            info = StackInfo("s%d" % (len(self._by_pcs) + 1), pcs)
            self._by_pcs[pcs] = info
            self._out.write(
                {"type": "stack", "id": info.id, "frames": [self._symbolize(f) for f in frames]}
            )
            info.facts["frames"] = frames  # valid only during this stop; used to fill facts now
        else:
            info.facts.pop("frames", None)
        return info

    def _symbolize(self, frame):
        name = frame.name()
        if name is None:
            # JIT code (TCG's code_gen_buffer) or stripped libraries have no symbol.
            name = "??"
        entry = {"func": name, "pc": "0x%x" % frame.pc()}
        try:
            sal = frame.find_sal()
        except gdb.error:
            sal = None
        if sal is not None and sal.symtab is not None:
            entry["file"] = self._relative(sal.symtab.fullname())
            if sal.line:
                entry["line"] = sal.line
        else:
            lib = gdb.solib_name(frame.pc())
            if lib:
                entry["file"] = lib
        return entry

    def _relative(self, path):
        if path.startswith(self._root):
            return path[len(self._root) :]
        return path


def _agree(key_pcs, gdb_pcs):
    """Do the chain's PCs and gdb's agree as far as both go? gdb's walk may end first (it
    stops at ``main``), the chain too (at a frame without frame pointer)."""
    common = min(len(key_pcs), len(gdb_pcs))
    return tuple(key_pcs[:common]) == tuple(gdb_pcs[:common])

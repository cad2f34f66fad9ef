"""Backtraces, deduplicated, with a cheap key per hit and gdb's unwinder once per stack.

gdb's unwinder costs about 1 ms per hit on QEMU's deep stacks, which would dominate a
capture. QEMU built with --enable-debug keeps frame pointers (-O0), so the chain of saved
``rbp``/return-address pairs is a cheap exact key: ``(pc, return addresses..., where the
chain ended)``. A key seen for the first time is unwound by gdb (symbolized once, written
as a ``stack`` record) and checked: gdb's PCs must start with the key's PCs. If a check
ever fails (a frame without a frame pointer), the table falls back to gdb's unwinder for
every hit, so an access's stack id is always that hit's own stack.

Breakpoints on a ``ret`` instruction sit after ``leave``: there ``rbp`` already belongs to
the caller and the function's own return address is at ``[rsp]``.
"""

import struct

import gdb

MAX_FRAMES = 64
_MAX_FRAME_BYTES = 1 << 20
_BLOCK_BYTES = 1024
_PAIR = struct.Struct("<QQ")  # saved rbp, return address (x86-64, little endian)
_U64 = struct.Struct("<Q")


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
        self.fast = True
        self.fast_misses = 0
        self._inferior = None

    def __len__(self):
        return len(self._by_pcs)

    def current(self, frame, at_return=False):
        """The StackInfo of the stack whose newest frame is ``frame`` (this stop's)."""
        if not self.fast:
            return self._from_frames(self.walk(frame))
        key = self._fast_key(frame, at_return)
        info = self._by_key.get(key)
        if info is not None:
            return info
        frames = self.walk(frame)
        info = self._from_frames(frames)
        fast_pcs = key[0]
        if tuple(info.pcs[: len(fast_pcs)]) != fast_pcs:
            self.fast = False  # a frame without frame pointer: exactness first
            self.fast_misses += 1
            return info
        self._by_key[key] = info
        return info

    def pcs(self, frame, at_return=False):
        """This stop's return-address chain (cheap, nothing recorded): to test what is on
        the stack without unwinding with gdb or writing a stack record."""
        return self._fast_key(frame, at_return)[0]

    def _fast_key(self, frame, at_return):
        if self._inferior is None:
            self._inferior = gdb.selected_inferior()
        read = self._inferior.read_memory
        pcs = [frame.pc()]
        if at_return:
            rsp = int(frame.read_register("rsp"))
            pcs.append(_U64.unpack(read(rsp, 8))[0])
        rbp = int(frame.read_register("rbp"))
        # Frames of -O0 code are small: one read usually covers several of them.
        base, block = rbp, b""
        for _ in range(MAX_FRAMES):
            offset = rbp - base
            if not 0 <= offset <= len(block) - 16:
                try:
                    base, block = rbp, bytes(read(rbp, _BLOCK_BYTES))
                except gdb.MemoryError:
                    try:
                        base, block = rbp, bytes(read(rbp, 16))
                    except gdb.MemoryError:
                        break
                offset = 0
            saved_rbp, ret = _PAIR.unpack_from(block, offset)
            if ret == 0:
                break
            pcs.append(ret)
            if not rbp < saved_rbp < rbp + _MAX_FRAME_BYTES:
                break  # left the frame-pointer chain (libc, TCG generated code)
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

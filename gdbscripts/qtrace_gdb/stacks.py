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

import gdb

MAX_FRAMES = 64
_MAX_FRAME_BYTES = 1 << 20


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

    def current(self, at_return=False):
        """The StackInfo of the stopped thread's current stack."""
        if not self.fast:
            return self._from_frames(self.walk())
        key = self._fast_key(at_return)
        info = self._by_key.get(key)
        if info is not None:
            return info
        frames = self.walk()
        info = self._from_frames(frames)
        fast_pcs = key[0]
        if tuple(info.pcs[: len(fast_pcs)]) != fast_pcs:
            self.fast = False  # a frame without frame pointer: exactness first
            self.fast_misses += 1
            return info
        self._by_key[key] = info
        return info

    def _fast_key(self, at_return):
        frame = gdb.newest_frame()
        if self._inferior is None:
            self._inferior = gdb.selected_inferior()
        read = self._inferior.read_memory
        pcs = [frame.pc()]
        if at_return:
            rsp = int(frame.read_register("rsp"))
            pcs.append(int.from_bytes(bytes(read(rsp, 8)), "little"))
        rbp = int(frame.read_register("rbp"))
        for _ in range(MAX_FRAMES):
            try:
                pair = bytes(read(rbp, 16))
            except gdb.MemoryError:
                break
            saved_rbp = int.from_bytes(pair[:8], "little")
            ret = int.from_bytes(pair[8:], "little")
            if ret == 0:
                break
            pcs.append(ret)
            if not rbp < saved_rbp < rbp + _MAX_FRAME_BYTES:
                break  # left the frame-pointer chain (libc, TCG generated code)
            rbp = saved_rbp
        return tuple(pcs), rbp

    def walk(self):
        """The current thread's frames by gdb's unwinder, innermost first."""
        frames = []
        frame = gdb.newest_frame()
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
            self._out.write({"type": "stack", "id": info.id, "frames": [self._symbolize(f) for f in frames]})
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
            return path[len(self._root):]
        return path

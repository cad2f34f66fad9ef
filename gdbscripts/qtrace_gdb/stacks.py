"""Backtraces, deduplicated: walk the frames' PCs on every hit, symbolize a stack only once.

Walking PCs with ``Frame.older()`` is cheap next to ``find_sal()``, so every hit gets its
own stack (the key is the exact PC list) while the expensive symbolization runs once per
distinct stack. Paths are written relative to the QEMU source root.
"""

import gdb


class StackTable:
    """Maps each distinct PC list to a stack id, writing its ``stack`` record once."""

    def __init__(self, out, source_root, max_depth=64):
        self._out = out
        self._root = source_root.rstrip("/") + "/"
        self._max_depth = max_depth
        self._ids = {}

    def __len__(self):
        return len(self._ids)

    def walk(self):
        """The current thread's frames, innermost first (gdb.Frame objects)."""
        frames = []
        frame = gdb.newest_frame()
        while frame is not None and len(frames) < self._max_depth:
            frames.append(frame)
            try:
                frame = frame.older()
            except gdb.error:
                break
        return frames

    def stack_id(self, frames):
        """The id of this exact stack, emitting its record the first time it is seen."""
        key = tuple(f.pc() for f in frames)
        found = self._ids.get(key)
        if found is not None:
            return found
        stack_id = "s%d" % (len(self._ids) + 1)
        self._ids[key] = stack_id
        self._out.write({"type": "stack", "id": stack_id, "frames": [self._symbolize(f) for f in frames]})
        return stack_id

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

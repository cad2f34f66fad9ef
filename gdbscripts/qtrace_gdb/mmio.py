"""'qtrace' device register collector: the device's MemoryRegionOps read/write handlers.

Writes are recorded at the handler's entry (the value is an argument). Reads are recorded
at each ``ret`` of the handler, where rax holds the value it returns and the parameters are
still in the frame (QEMU built with --enable-debug is -O0: parameters live on the stack).
Handler signatures, from include/exec/memory.h (MemoryRegionOps):
  read(void *opaque, hwaddr addr, unsigned size) -> uint64_t
  write(void *opaque, hwaddr addr, uint64_t data, unsigned size)
"""

import gdb

from qtrace_gdb.base import (
    HitBreakpoint,
    entry_location,
    find_function,
    function_block,
    parameters,
    return_addresses,
)


def size_mask(size):
    return (1 << (8 * size)) - 1 if 0 < size < 8 else (1 << 64) - 1


class HandlerWrite(HitBreakpoint):
    """Entry of a write handler."""

    def __init__(self, session, spec, symbol):
        self.spec = spec
        self.params = parameters(function_block(symbol))
        super().__init__(session, entry_location(symbol))

    def on_hit(self):
        frame = gdb.newest_frame()
        addr, value, size = (int(frame.read_var(p)) for p in self.params[1:4])
        return self.session.record_access(
            self.spec, "write", addr, size, value & size_mask(size), frame
        )


class HandlerReturn(HitBreakpoint):
    """One ``ret`` instruction of a read handler."""

    def __init__(self, session, spec, symbol, address):
        self.spec = spec
        self.params = parameters(function_block(symbol))
        super().__init__(session, "*%d" % address)

    def on_hit(self):
        frame = gdb.newest_frame()
        addr, size = int(frame.read_var(self.params[1])), int(frame.read_var(self.params[2]))
        value = int(frame.read_register("rax")) & size_mask(size)
        return self.session.record_access(
            self.spec, "read", addr, size, value, frame, at_return=True
        )


def install(session, spec):
    """Breakpoints for one handler spec: {"func", "file", "op", "space", "region"}."""
    symbol = find_function(spec["func"], spec.get("file"))
    if spec["op"] == "write":
        return [HandlerWrite(session, spec, symbol)]
    return [
        HandlerReturn(session, spec, symbol, a) for a in return_addresses(function_block(symbol))
    ]

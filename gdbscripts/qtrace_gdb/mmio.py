"""'qtrace' device register collector: the MemoryRegionOps callbacks discovery found.

One breakpoint set per callback function, shared by every region that uses it; a hit
counts only when QEMU passed it the ``opaque`` of one of the captured device's regions
(``msix_table_mmio_read`` serves every MSI-X device in the machine). Writes are recorded
at the callback's entry (the value is an argument). Reads are recorded at each ``ret``,
with the arguments read at the entry (a handler may change its own parameters) and the
value in rax (``read``) or in ``*data`` (``read_with_attrs``). Signatures, from
MemoryRegionOps (include/system/memory.h):
  read(void *opaque, hwaddr addr, unsigned size) -> uint64_t
  write(void *opaque, hwaddr addr, uint64_t data, unsigned size)
  read_with_attrs(void *opaque, hwaddr addr, uint64_t *data, unsigned size, MemTxAttrs)
  write_with_attrs(void *opaque, hwaddr addr, uint64_t data, unsigned size, MemTxAttrs)
"""

import gdb

from qtrace_gdb.base import (
    HitBreakpoint,
    entry_location,
    function_block,
    parameters,
    return_addresses,
)


def size_mask(size):
    return (1 << (8 * size)) - 1 if 0 < size < 8 else (1 << 64) - 1


class _SiteBreakpoint(HitBreakpoint):
    def __init__(self, session, site, location, enabled):
        self.site = site
        self.params = parameters(function_block(site.function))
        self.spec = {"func": site.function.name, "space": "auto"}
        super().__init__(session, location, enabled)

    def _spec(self, frame):
        """The spec of this hit's region, or None for another device's hit."""
        regions = self.site.regions.get(int(frame.read_var(self.params[0])))
        if regions is None:
            return None
        # Several regions with the same ops and opaque: the stack's accessor names it.
        return dict(self.spec, region=regions[0] if len(regions) == 1 else None)


class HandlerWrite(_SiteBreakpoint):
    """Entry of a ``write``/``write_with_attrs`` callback."""

    def __init__(self, session, site, enabled=False):
        super().__init__(session, site, entry_location(site.function), enabled)

    def on_hit(self):
        frame = gdb.newest_frame()
        spec = self._spec(frame)
        if spec is None:
            return False
        addr, value, size = (int(frame.read_var(p)) for p in self.params[1:4])
        return self.session.record_access(spec, "write", addr, size, value & size_mask(size), frame)


class HandlerReadEntry(_SiteBreakpoint):
    """Entry of a ``read``/``read_with_attrs`` callback: its arguments, kept for the return.

    A handler may change its parameters before returning (``addr -= base``, measured on a
    legacy I/O BAR), so the offset and size are read here, where they are what QEMU
    passed. Kept per thread under the frame's CFA (entry: rbp + 16 after the prologue;
    ``ret``: rsp + 8), which pairs an entry with its own return, nested calls included.
    """

    def __init__(self, session, site, enabled=False):
        super().__init__(session, site, entry_location(site.function), enabled)
        self.by_pointer = site.callback == "read_with_attrs"

    def on_hit(self):
        frame = gdb.newest_frame()
        spec = self._spec(frame)
        if spec is None:
            return False
        size_param = self.params[3] if self.by_pointer else self.params[2]
        args = (
            spec,
            int(frame.read_var(self.params[1])),
            int(frame.read_var(size_param)),
            frame.read_var(self.params[2]) if self.by_pointer else None,
        )
        cfa = int(frame.read_register("rbp")) + 16
        self.session.reads_in_flight.setdefault(gdb.selected_thread().num, {})[cfa] = args
        return False


class HandlerReturn(_SiteBreakpoint):
    """One ``ret`` instruction of a ``read``/``read_with_attrs`` callback.

    A read made by another of the device's read handlers (an index/data pair whose data
    register calls the main register handler) is that handler's implementation, not a
    guest access: only the outermost read on a thread is recorded.
    """

    def __init__(self, session, site, address, enabled=False):
        super().__init__(session, site, "*%d" % address, enabled)
        self.by_pointer = site.callback == "read_with_attrs"
        self._u64 = gdb.lookup_type("uint64_t").pointer()

    def on_hit(self):
        frame = gdb.newest_frame()
        in_flight = self.session.reads_in_flight.get(gdb.selected_thread().num)
        if not in_flight:
            return False
        cfa = int(frame.read_register("rsp")) + 8
        args = in_flight.pop(cfa, None)
        for stale in [c for c in in_flight if c < cfa]:  # deeper frames that never returned
            del in_flight[stale]
        if args is None:
            return False
        spec, addr, size, data = args
        if in_flight:
            return False  # nested inside another read handler of the device's
        if self.by_pointer:
            value = int(data.cast(self._u64).dereference())
        else:
            value = int(frame.read_register("rax"))
        return self.session.record_access(
            spec, "read", addr, size, value & size_mask(size), frame, at_return=True
        )


def install(session, site, enabled):
    """The breakpoints of one discovered callback (``discovery.HandlerSite``)."""
    if site.callback.startswith("write"):
        return [HandlerWrite(session, site, enabled)]
    block = function_block(site.function)
    returns = [HandlerReturn(session, site, a, enabled) for a in return_addresses(block)]
    return [HandlerReadEntry(session, site, enabled), *returns]

"""'qtrace' device register collector: the MemoryRegionOps callbacks discovery found.

One breakpoint set per callback function, shared by every region that uses it; a hit
counts only when QEMU passed it the ``opaque`` of one of the captured device's regions
(``msix_table_mmio_read`` serves every MSI-X device in the machine). Writes are recorded
at the callback's entry (the value is an argument). Reads are recorded at each ``ret``,
with the value in rax (``read``) or in ``*data`` (``read_with_attrs``). Their arguments:
- a handler that keeps its parameters (no write to their stack slots, ``frame_slots.py``;
  152 of the 168 ``*_read`` handlers of QEMU 10.2.2) is stopped at its ``ret`` alone: the
  arguments are still in its dead frame. One stop per read instead of two (a stop costs
  gdb ~110 us);
- one that changes them (``addr -= base``, measured on a legacy I/O BAR) is also stopped
  at its entry, where the arguments are what QEMU passed, kept for the return.
Parameters and the stack key come from one read of stack memory (params.py, regs.py), never
from a ``gdb.Frame``, except at a breakpoint's first hit (checked against gdb) and when a
stack is new. Signatures, from MemoryRegionOps (include/system/memory.h):
  read(void *opaque, hwaddr addr, unsigned size) -> uint64_t
  write(void *opaque, hwaddr addr, uint64_t data, unsigned size)
  read_with_attrs(void *opaque, hwaddr addr, uint64_t *data, unsigned size, MemTxAttrs)
  write_with_attrs(void *opaque, hwaddr addr, uint64_t data, unsigned size, MemTxAttrs)
"""

import struct

import gdb

from qtrace_gdb.base import (
    HitBreakpoint,
    entry_location,
    function_block,
    parameters,
    return_addresses,
)
from qtrace_gdb.params import entry_slots, return_slots
from qtrace_gdb.regs import RAX, RBP, RSP, U64, memory, registers, stack_block

# One read of this many bytes covers a hit's parameters and usually its whole
# frame-pointer chain (-O0 frames are small; TCG's chain ends at the generated code).
STACK_BLOCK_BYTES = 4096
# At a ``ret`` the dead frame's slots lie within the red zone below rsp: the stack block
# starts there. The popped rbp is at [rsp - 8], the return address at [rsp].
_RED_ZONE_BYTES = 128
_PAIR = struct.Struct("<QQ")


def size_mask(size):
    return (1 << (8 * size)) - 1 if 0 < size < 8 else (1 << 64) - 1


class ReadNesting:
    """Which read-handler hits are guest accesses: only the outermost read on a thread.

    A read handler stopped at its entry and its return is in flight between the two (per
    gdb thread, under its CFA); one stopped at its return alone is seen on the stack
    instead (its code among the hit's PCs). A read made while another is in flight on its
    thread, or under a return-alone read handler of the device's, is that handler's own
    implementation (an index/data pair whose data register calls the main handler).
    """

    def __init__(self, stacks):
        self.stacks = stacks
        self.in_flight = {}  # gdb thread -> {CFA: (spec, addr, size, data pointer)}
        self.ranges = []  # (start, end) of the read handlers stopped at their return alone
        self._under = {}  # stack key -> is a return-alone read handler on that stack

    def begin(self, thread, cfa, args):
        self.in_flight.setdefault(thread, {})[cfa] = args

    def end(self, thread, cfa):
        """(the entry arguments of the read returning at ``cfa``, or None; is another
        read still in flight on the thread)."""
        in_flight = self.in_flight.get(thread)
        if not in_flight:
            return None, False
        args = in_flight.pop(cfa, None)
        for stale in [c for c in in_flight if c < cfa]:  # deeper frames that never returned
            del in_flight[stale]
        return args, bool(in_flight)

    def under_another(self, key):
        """Does the stack of this stop (key ``key``) pass through a return-alone read
        handler, beyond the returning one itself?"""
        if not self.ranges:
            return False
        under = self._under.get(key)
        if under is None:
            pcs, exact = self.stacks.exact_pcs(key)
            under = any(a <= pc < b for pc in pcs[1:] for a, b in self.ranges)
            if exact:
                self._under[key] = under
        return under


class _SiteBreakpoint(HitBreakpoint):
    def __init__(self, session, site, location, enabled):
        self.site = site
        self.params = parameters(function_block(site.function))
        self.spec = {"func": site.function.name, "space": "auto"}
        self._specs = {}
        self.slots = None
        super().__init__(session, location, enabled)

    def _spec(self, frame):
        """The spec of this hit's region, or None for another device's hit."""
        return self._spec_of(int(frame.read_var(self.params[0])))

    def _spec_of(self, opaque):
        if opaque in self._specs:
            return self._specs[opaque]
        regions = self.site.regions.get(opaque)
        # Several regions with the same ops and opaque: the stack's accessor names it.
        spec = None
        if regions is not None:
            spec = dict(self.spec, region=regions[0] if len(regions) == 1 else None)
        self._specs[opaque] = spec
        return spec

    def _values(self, block, offset):
        """The parameters of ``self.slots`` from stack memory, checked at the first hit."""
        values = self.slots.values(block, offset)
        if not self.slots.checked:
            values = self.slots.check(values, self.session.note_error)
        return values


class _EntryBreakpoint(_SiteBreakpoint):
    """A breakpoint past a handler's prologue, reading its first ``count`` parameters."""

    count = 0

    def __init__(self, session, site, enabled):
        super().__init__(session, site, entry_location(site.function), enabled)
        locations = getattr(self, "locations", None) or []
        self.pc = locations[0].address if len(locations) == 1 else None
        if self.pc is not None:
            block = function_block(site.function)
            self.slots = entry_slots(block, self.params[: self.count], self.pc)

    def entry(self, block_bytes):
        """(rbp, where the stack block starts, the block, the parameters' values); the
        hit's gdb thread is left in ``self.hit_thread`` (``thread`` is gdb's)."""
        self.hit_thread = gdb.selected_thread()
        rbp = registers(self.hit_thread)[RBP]
        base = rbp + self.slots.low
        block = stack_block(base, block_bytes, 16 - self.slots.low)
        return rbp, base, block, self._values(block, 0)


class HandlerWrite(_EntryBreakpoint):
    """Entry of a ``write``/``write_with_attrs`` callback."""

    count = 4  # opaque, addr, data, size

    def on_hit(self):
        if self.slots is None:
            return self._by_gdb()
        rbp, base, block, (opaque, addr, value, size) = self.entry(STACK_BLOCK_BYTES)
        spec = self._spec_of(opaque)
        if spec is None:
            return False
        key = self.session.stacks.key_at([self.pc], rbp, base, block)
        return self.session.record_access(
            spec, "write", addr, size, value & size_mask(size), key=key, thread=self.hit_thread
        )

    def _by_gdb(self):
        frame = gdb.newest_frame()
        spec = self._spec(frame)
        if spec is None:
            return False
        addr, value, size = (int(frame.read_var(p)) for p in self.params[1:4])
        return self.session.record_access(
            spec, "write", addr, size, value & size_mask(size), frame=frame
        )


class HandlerReadEntry(_EntryBreakpoint):
    """Entry of a read callback that changes its parameters: its arguments, kept for the
    return (``ReadNesting``: per thread under the frame's CFA, rbp + 16 after the
    prologue, which pairs an entry with its own return, nested calls included)."""

    def __init__(self, session, site, enabled=False):
        self.by_pointer = site.callback == "read_with_attrs"
        self.count = 4 if self.by_pointer else 3  # opaque, addr, [data,] size
        super().__init__(session, site, enabled)

    def on_hit(self):
        if self.slots is None:
            frame = gdb.newest_frame()
            rbp = int(frame.read_register("rbp"))
            values = tuple(int(frame.read_var(p)) for p in self.params[: self.count])
        else:
            rbp, _, _, values = self.entry(16 - self.slots.low)
        spec = self._spec_of(values[0])
        if spec is None:
            return False
        if self.by_pointer:
            args = (spec, values[1], values[3], values[2])
        else:
            args = (spec, values[1], values[2], None)
        self.session.reads.begin(gdb.selected_thread().num, rbp + 16, args)
        return False


class HandlerReturn(_SiteBreakpoint):
    """One ``ret`` instruction of a ``read``/``read_with_attrs`` callback: the read, with
    the arguments from the dead frame (``slots``: the handler keeps its parameters) or
    from its entry's hit (``HandlerReadEntry``).

    A read made by another of the device's read handlers is that handler's
    implementation, not a guest access: only the outermost read on a thread is recorded
    (``ReadNesting``).
    """

    def __init__(self, session, site, address, enabled=False, slots=None):
        super().__init__(session, site, "*%d" % address, enabled)
        self.address = address
        self.by_pointer = site.callback == "read_with_attrs"
        self.slots = slots

    def on_hit(self):
        if self.slots is not None:
            return self._alone()
        thread = gdb.selected_thread()
        words = registers(thread)
        rsp, rbp, rax = words[RSP], words[RBP], words[RAX]
        args, nested = self.session.reads.end(thread.num, rsp + 8)
        if args is None or nested:
            return False
        block = stack_block(rsp, STACK_BLOCK_BYTES, 8)
        key = self.session.stacks.key_at([self.address, U64.unpack_from(block)[0]], rbp, rsp, block)
        if self.session.reads.under_another(key):
            return False
        return self._record(key, thread, rax, *args)

    def _alone(self):
        thread = gdb.selected_thread()
        words = registers(thread)
        rsp, rax = words[RSP], words[RAX]
        base = rsp - _RED_ZONE_BYTES
        block = stack_block(base, STACK_BLOCK_BYTES, _RED_ZONE_BYTES + 8)
        values = self._values(block, _RED_ZONE_BYTES - 8 + self.slots.low)
        spec = self._spec_of(values[0])
        if spec is None:
            return False
        rbp, ret = _PAIR.unpack_from(block, _RED_ZONE_BYTES - 8)
        key = self.session.stacks.key_at([self.address, ret], rbp, base, block)
        reads = self.session.reads
        if reads.in_flight and reads.end(thread.num, rsp + 8)[1]:
            return False
        if reads.under_another(key):
            return False
        if self.by_pointer:
            return self._record(key, thread, rax, spec, values[1], values[3], values[2])
        return self._record(key, thread, rax, spec, values[1], values[2], None)

    def _record(self, key, thread, rax, spec, addr, size, data):
        if self.by_pointer:
            value = U64.unpack(memory(data, 8))[0]
        else:
            value = rax
        return self.session.record_access(
            spec,
            "read",
            addr,
            size,
            value & size_mask(size),
            at_return=True,
            key=key,
            thread=thread,
        )


def install(session, site, enabled):
    """The breakpoints of one discovered callback (``discovery.HandlerSite``)."""
    if site.callback.startswith("write"):
        return [HandlerWrite(session, site, enabled)]
    block = function_block(site.function)
    params = parameters(block)
    count = 4 if site.callback == "read_with_attrs" else 3
    slots = return_slots(block, params[:count]) if len(params) >= count else None
    returns = [HandlerReturn(session, site, a, enabled, slots) for a in return_addresses(block)]
    if slots is not None:
        session.reads.ranges.append((block.start, block.end))
        return returns
    return [HandlerReadEntry(session, site, enabled), *returns]

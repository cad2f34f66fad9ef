"""'qtrace' DMA collector: every guest-memory access the device makes, whichever API it uses.

A PCI device reaches guest memory through its bus-master address space
(``PCIDevice.bus_master_as``) or, for device models that bypass the bus-master window and
any IOMMU, through ``address_space_memory`` itself, by three routes: copies through
``dma_memory_rw_relaxed`` (what ``pci_dma_rw``, ``dma_memory_read``/``write`` and the
scatter-gather helpers end in), mappings (``address_space_map``: the block layer then
reads or writes guest memory directly, recorded as ``mapped``, without bytes), and the
MemoryRegionCaches the virtqueue code reads its rings through (``address_space_cache_init``,
then the ``*_cached`` accessors). An access to the bus-master address space is the
device's; one to ``address_space_memory``, or a cache initialized on it, is the device's
when the device's code is on the stack (its handlers and the callbacks found to be its own,
``async_work.DeviceScope``). ``address_space_read_full``/``address_space_write`` are not
hooked: every KVM exit's own dispatch goes through them (a Python stop per port I/O exit),
and device DMA reaches them only through the routes above.

Copies are recorded at the ``ret`` (the bytes are in ``buf`` in either direction), cached
16-bit loads at their ``ret`` (rax), stores at the entry. Signatures (include/system/dma.h,
system/physmem.c, include/exec/memory_ldst_cached.h.inc; QEMU 7.2 to 10.x; the static
inline ones have, at -O0, a copy in each C file that uses them, and each copy gets
breakpoints):
  MemTxResult dma_memory_rw_relaxed(AddressSpace *as, dma_addr_t addr, void *buf,
                                    dma_addr_t len, DMADirection dir, MemTxAttrs attrs)
  void *address_space_map(AddressSpace *as, hwaddr addr, hwaddr *plen, bool is_write,
                          MemTxAttrs attrs)
  int64_t address_space_cache_init(MemoryRegionCache *cache, AddressSpace *as, hwaddr addr,
                                   hwaddr len, bool is_write)
  uint16_t address_space_lduw_le_cached(MemoryRegionCache *cache, hwaddr addr, ...)
  void address_space_stw_le_cached(MemoryRegionCache *cache, hwaddr addr, uint16_t val, ...)
  MemTxResult address_space_read_cached(MemoryRegionCache *cache, hwaddr addr, void *buf,
                                        hwaddr len)
  MemTxResult address_space_write_cached(MemoryRegionCache *cache, hwaddr addr,
                                         const void *buf, hwaddr len)
DMA_DIRECTION_TO_DEVICE (0) is a read of guest memory.
"""

import struct

import gdb

from qtrace_gdb.base import (
    HitBreakpoint,
    all_functions,
    entry_location,
    function_block,
    in_copies_only,
    parameters,
    return_addresses,
    source_location,
)


DMA_DIRECTION_TO_DEVICE = 0
COPY_FUNCTION = "dma_memory_rw_relaxed"


class DmaCollector:
    """The DMA breakpoints of one capture, and the device's MemoryRegionCaches."""

    def __init__(self, session):
        self.session = session
        self.caches = {}  # MemoryRegionCache * -> guest-physical base
        self.entry_locations = set()
        self.bus_master_as = None
        self.system_memory = None
        self.scope = None

    def install(self):
        hooks = []
        for name, make in (
            ("dma_memory_rw_relaxed", _returns(DmaCopy)),
            ("address_space_map", _entry(AsMap)),
        ):
            for symbol in all_functions(name):
                hooks.extend(make(self, symbol))
        for symbol in all_functions("address_space_cache_init"):
            hooks.extend(_entry(CacheInit)(self, symbol))
        for name, make in CACHED_ACCESSORS:
            for symbol in all_functions(name):
                hooks.extend(make(self, symbol))
        return hooks

    def set_device(self, bus_master_as, scope):
        """Discovery found the device: record only what goes through its address spaces."""
        self.bus_master_as = bus_master_as
        self.scope = scope
        self.system_memory = int(gdb.parse_and_eval("&address_space_memory"))

    def owns(self, address_space, frame):
        """Is an access to this address space, made at this stop, the device's?"""
        if self.bus_master_as is None:
            return False
        if address_space == self.bus_master_as:
            return True
        return address_space == self.system_memory and self.scope.code_on_stack(
            self.session.stacks.pcs(frame)
        )

    def record(self, frame, op, addr, data, size, api, at_return, mapped=False):
        cap = self.session.dma_cap_bytes
        record = {
            "type": "dma",
            "op": op,
            "addr": addr,
            "size": size,
            "data": None if mapped else data[:cap].hex(),
            "truncated": True if not mapped and size > cap else None,
            "api": api,
            "mapped": True if mapped else None,
        }
        return self.session.record_event(record, frame, at_return=at_return)


class _DmaBreakpoint(HitBreakpoint):
    def __init__(self, collector, symbol, location):
        self.collector = collector
        self.api = symbol.name
        self.params = parameters(function_block(symbol))
        super().__init__(collector.session, location)

    def var(self, frame, index):
        # By name: one breakpoint can have a location in several copies of an inline function.
        return frame.read_var(self.params[index].name)

    def bytes_at(self, pointer, size):
        cap = min(size, self.collector.session.dma_cap_bytes)
        if not cap:
            return b""
        return bytes(gdb.selected_inferior().read_memory(int(pointer), cap))

    def mine(self, frame):
        return self.collector.owns(int(self.var(frame, 0)), frame)


class DmaCopy(_DmaBreakpoint):
    def on_hit(self):
        frame = gdb.newest_frame()
        if not self.mine(frame):
            return False
        size = int(self.var(frame, 3))
        data = self.bytes_at(self.var(frame, 2), size)
        op = "read" if int(self.var(frame, 4)) == DMA_DIRECTION_TO_DEVICE else "write"
        addr = int(self.var(frame, 1))
        return self.collector.record(frame, op, addr, data, size, self.api, True)


class AsMap(_DmaBreakpoint):
    def on_hit(self):
        frame = gdb.newest_frame()
        if not self.mine(frame):
            return False
        size = int(self.var(frame, 2).dereference())
        op = "write" if bool(self.var(frame, 3)) else "read"
        addr = int(self.var(frame, 1))
        return self.collector.record(frame, op, addr, b"", size, self.api, False, mapped=True)


class CacheInit(_DmaBreakpoint):
    def on_hit(self):
        frame = gdb.newest_frame()
        cache = int(self.var(frame, 0))
        if self.collector.owns(int(self.var(frame, 1)), frame):
            self.collector.caches[cache] = int(self.var(frame, 2))
        else:
            self.collector.caches.pop(cache, None)
        return False


class CachedAccess(_DmaBreakpoint):
    """One MemoryRegionCache accessor: ``op`` is its direction, ``at_return`` where it is
    hit (loads at their ``ret``, stores at the entry), ``width`` 2 for the 16-bit
    ``lduw``/``stw`` ones (value in rax or the ``val`` parameter), 0 for the buffer ones
    (``buf``, ``len``)."""

    op = "read"
    at_return = True
    width = 0

    def on_hit(self):
        frame = gdb.newest_frame()
        base = self.collector.caches.get(int(self.var(frame, 0)))
        if base is None:
            return False
        if self.width:
            if self.at_return:
                value = int(frame.read_register("rax"))
            else:
                value = int(self.var(frame, 2))
            order = "<" if self.api.endswith("_le_cached") else ">"
            size, data = 2, struct.pack(order + "H", value & 0xFFFF)
        else:
            size = int(self.var(frame, 3))
            data = self.bytes_at(self.var(frame, 2), size)
        addr = base + int(self.var(frame, 1))
        return self.collector.record(frame, self.op, addr, data, size, self.api, self.at_return)


def _cached(op, width):
    """The CachedAccess class of one accessor kind."""
    fields = {"op": op, "at_return": op == "read", "width": width}
    return type("Cached%s%s" % (op.title(), width * 8 or ""), (CachedAccess,), fields)


def _entry(cls):
    def make(collector, symbol):
        # Copies of a static inline function share one location (entry_location): one
        # breakpoint with a location in each copy.
        location = entry_location(symbol)
        if location in collector.entry_locations:
            return []
        collector.entry_locations.add(location)
        hook = cls(collector, symbol, location)
        if symbol.symtab is not None and not in_copies_only(hook, symbol):
            hook.delete()  # the name is also another file's function: name the header too
            hook = cls(collector, symbol, source_location(symbol))
        return [hook]

    return make


def _returns(cls):
    def make(collector, symbol):
        block = function_block(symbol)
        return [cls(collector, symbol, "*%d" % a) for a in return_addresses(block)]

    return make


_LOAD16, _STORE16 = _cached("read", 2), _cached("write", 2)
CACHED_ACCESSORS = (
    ("address_space_lduw_le_cached", _returns(_LOAD16)),
    ("address_space_lduw_be_cached", _returns(_LOAD16)),
    ("address_space_stw_le_cached", _entry(_STORE16)),
    ("address_space_stw_be_cached", _entry(_STORE16)),
    ("address_space_read_cached", _returns(_cached("read", 0))),
    ("address_space_write_cached", _entry(_cached("write", 0))),
)

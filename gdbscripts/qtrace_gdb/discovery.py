"""Discovery: the captured device's MemoryRegions, read from the running QEMU.

Once QEMU has created and realized its devices (the collector stops it at ``vm_start``,
before any vCPU runs), the device is found by its qdev path (the host gives it a known
``id``, so it is ``/machine/peripheral/<id>``). Its ``PCIDevice.io_regions[]`` hold the
MemoryRegion each BAR registered; each region's tree (subregions, aliases) is walked and,
for every region, its name, size, offset from the BAR's start, kind (handlers, RAM, ROM,
container, alias) and the functions of its ``MemoryRegionOps`` are read. Those functions,
with the ``opaque`` QEMU passes them, are what the collector breaks on: nothing here knows
any device model; every device's windows, subregions inside a BAR and MSI-X tables come
out of the same walk (a unit test checks that no device is named in the collector).

Struct fields read (include/system/memory.h, include/hw/pci/pci_device.h; the same in
QEMU 7.2 to 10.x): MemoryRegion.{name, size (Int128), addr, ram, rom_device, readonly,
ram_device, terminates, ops, opaque, alias, alias_offset, subregions, subregions_link};
PCIDevice.{io_regions[].{memory, size, type}, config_read, config_write, name};
PCIBus.parent_dev for the bridges above the device.
"""

import gdb

from qtrace_gdb.base import function_symbol

PCI_NUM_REGIONS = 7  # six BARs and the expansion ROM
PCI_BASE_ADDRESS_SPACE_IO = 0x1
OPS_CALLBACKS = ("read", "write", "read_with_attrs", "write_with_attrs")
MAX_REGIONS = 512  # a bound on the walk (a region tree is tens of regions)


class DiscoveryError(Exception):
    """The device or its regions could not be read; the message says which and why."""


class HandlerSite:
    """One MemoryRegionOps callback as the collector breaks on it."""

    __slots__ = ("callback", "function", "regions")

    def __init__(self, callback, function):
        self.callback = callback  # "read", "write", "read_with_attrs", "write_with_attrs"
        self.function = function  # gdb.Symbol
        self.regions = {}  # opaque (int) -> [region name, ...]


class Discovered:
    """What the walk found: the header's region map, the handler sites, the PCI devices, and
    what identifies the device's objects later (the opaques its callbacks receive, its
    MemoryRegions, its bus-master address space, its re-entrancy guard)."""

    def __init__(self, device, walker, bridges):
        self.device = device  # gdb.Value, PCIDevice *
        self.regions = walker.regions  # [dict] in the trace header's ``regions`` shape
        self.sites = list(walker.sites.values())  # [HandlerSite]
        self.bridges = bridges  # [gdb.Value PCIDevice *]: the bridges above, nearest first
        self.region_pointers = walker.pointers  # MemoryRegion * -> name
        self.opaques = {o for site in self.sites for o in site.regions}
        # Every DMA of a PCI device goes through its bus-master address space.
        self.bus_master_as = int(device["bus_master_as"].address)
        self.reentrancy_guard = _reentrancy_guard(device)


def discover(qdev_path):
    """Walk the device at ``qdev_path``; call at a stop (it calls into QEMU once)."""
    pci_type = gdb.lookup_type("PCIDevice").pointer()
    try:
        found = gdb.parse_and_eval('object_resolve_path("%s", 0)' % qdev_path)
    except gdb.error as exc:
        raise DiscoveryError("cannot call object_resolve_path in QEMU: %s" % exc)
    if int(found) == 0:
        raise DiscoveryError("QEMU has no object at %s" % qdev_path)
    device = found.cast(pci_type)
    walker = _Walker()
    for bar in range(PCI_NUM_REGIONS):
        entry = device["io_regions"][bar]
        memory = entry["memory"]
        if int(memory) == 0:
            continue
        space = "pio" if int(entry["type"]) & PCI_BASE_ADDRESS_SPACE_IO else "mmio"
        walker.walk(memory, bar, 0, space, 0)
    walker.config_hooks(device)
    return Discovered(device, walker, _bridges(device))


class _Walker:
    def __init__(self):
        self.regions = []
        self.sites = {}  # (callback, function address) -> HandlerSite
        self.seen = set()
        self.pointers = {}
        self._u64 = gdb.lookup_type("uint64_t").pointer()

    def walk(self, mr_pointer, bar, offset, space, depth):
        key = int(mr_pointer)
        if key in self.seen or len(self.regions) >= MAX_REGIONS:
            return
        self.seen.add(key)
        mr = mr_pointer.dereference()
        name = mr["name"].string() if int(mr["name"]) else "(unnamed)"
        self.pointers[key] = name
        alias = mr["alias"]
        kind = _kind(mr)
        region = {
            "name": name,
            "bar": bar,
            "offset": offset,
            "size": self._size(mr),
            "kind": kind,
            "space": space,
            "depth": depth,
            "handlers": {},
            "alias_of": None,
        }
        self.regions.append(region)
        if kind == "io":
            region["handlers"] = self._handlers(mr, name)
        if int(alias):
            target = alias.dereference()
            region["alias_of"] = target["name"].string() if int(target["name"]) else None
            # The alias shows its target from alias_offset on: the target's own tree sits
            # at (offset - alias_offset) in this BAR, seen through the alias's window.
            self.walk(alias, bar, offset - int(mr["alias_offset"]), space, depth + 1)
        children = []
        child = mr["subregions"]["tqh_first"]
        while int(child):
            children.append(child)
            child = child.dereference()["subregions_link"]["tqe_next"]
        for child in sorted(children, key=lambda c: int(c.dereference()["addr"])):
            self.walk(child, bar, offset + int(child.dereference()["addr"]), space, depth + 1)

    def config_hooks(self, device):
        hooks = {}
        for field in ("config_read", "config_write"):
            symbol = function_symbol(device[field])
            if symbol is not None:
                hooks[field] = symbol.name
        size = 4096 if _is_express(device) else 256
        self.regions.append(
            {
                "name": "pci-config",
                "bar": None,
                "offset": 0,
                "size": size,
                "kind": "pci-config",
                "space": "pci-config",
                "depth": 0,
                "handlers": hooks,
                "alias_of": None,
            }
        )

    def _handlers(self, mr, name):
        ops = mr["ops"]
        if int(ops) == 0:
            return {}
        handlers = {}
        opaque = int(mr["opaque"])
        for callback in OPS_CALLBACKS:
            symbol = function_symbol(ops.dereference()[callback])
            if symbol is None:
                continue
            handlers[callback] = symbol.name
            site_key = (callback, int(symbol.value().address))
            site = self.sites.get(site_key)
            if site is None:
                site = self.sites[site_key] = HandlerSite(callback, symbol)
            site.regions.setdefault(opaque, []).append(name)
        return handlers

    def _size(self, mr):
        # Int128 is a 128-bit integer (or a two-word struct); read it as two words.
        words = mr["size"].address.cast(self._u64)
        return int(words[0]) | (int(words[1]) << 64)


def _kind(mr):
    if bool(mr["ram_device"]):
        return "ram-device"
    if bool(mr["ram"]):
        return "rom" if bool(mr["readonly"]) else "ram"
    if bool(mr["rom_device"]):
        return "rom"
    if int(mr["alias"]):
        return "alias"
    if not bool(mr["terminates"]):
        return "container"
    return "io"


def _is_express(device):
    """Does the device have PCIe's 4 KiB configuration space (QEMU_PCI_CAP_EXPRESS)?"""
    try:
        express = int(gdb.parse_and_eval("QEMU_PCI_CAP_EXPRESS"))
    except gdb.error:
        return False
    return bool(int(device["cap_present"]) & express)


def _reentrancy_guard(device):
    """&DeviceState.mem_reentrancy_guard (QEMU 8.1+: the device's bottom halves carry it)."""
    try:
        return int(device["qdev"]["mem_reentrancy_guard"].address)
    except gdb.error:
        return None


def _bridges(device):
    """The PCI-to-PCI bridges between the device and its root bus, nearest first."""
    bus_type = gdb.lookup_type("PCIBus").pointer()
    found = []
    current = device
    for _ in range(32):  # bus depth is bounded by the bus numbers; 32 is plenty
        bus = current["qdev"]["parent_bus"]
        if int(bus) == 0:
            break
        parent = bus.cast(bus_type)["parent_dev"]
        if int(parent) == 0:
            break
        found.append(parent)
        current = parent
    return found

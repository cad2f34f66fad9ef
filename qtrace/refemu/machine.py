"""A small PC-like machine to host device models: RAM, port I/O, PCI bus 0.

Why: scripts, unit tests and the trace replay need to drive a device the way a guest
does (configuration cycles through 0xCF8/0xCFC, BAR programming, MMIO and port I/O,
DMA into RAM, an interrupt line) without QEMU. The machine has an i440FX-like host
bridge at 00.0 so a bus scan looks familiar, and devices at the slots you choose.

Routing rules: a memory access goes to the device window that holds it, otherwise to
RAM (sparse, so any address is RAM). A port access goes to the configuration mechanism
(0xCF8 dword, 0xCFC-0xCFF), then to device I/O windows; nobody else answers, so an
unclaimed port reads all ones and swallows writes, as on a PC.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from qtrace.refemu.bus import AddressSpace
from qtrace.refemu.device import PciDevice
from qtrace.refemu.memory import SparseMemory
from qtrace.refemu.pci import (
    COMMAND_IO,
    COMMAND_MASTER,
    COMMAND_MEMORY,
    PciFunction,
    PciHost,
    PciIdentity,
)

__all__ = ["HOST_BRIDGE_IDENTITY", "RefMachine"]

DeviceT = TypeVar("DeviceT", bound=PciDevice)

logger = logging.getLogger(__name__)

# The i440FX host bridge QEMU's "pc" machine puts at 00.0 (ids seen by the probe guest).
HOST_BRIDGE_IDENTITY = PciIdentity(
    vendor_id=0x8086, device_id=0x1237, class_code=0x060000, revision=0x02
)

_SIZES = (1, 2, 4, 8)


class RefMachine:
    """RAM, a memory and an I/O address space, and PCI bus 0.

    Devices are models implementing :class:`~qtrace.refemu.device.PciDevice` (each in its
    device's pack), plugged in with :meth:`plug`.

    Example (the e1000 pack's model):
        >>> from qtrace.devices.e1000.model import E1000
        >>> m = RefMachine()
        >>> nic = m.plug(2, E1000())
        >>> m.assign_bars(nic.pci, {0: 0xFEBC0000, 1: 0xC000})
        >>> hex(m.read(0xFEBC0008, 4))
        '0x80080783'
    """

    def __init__(self) -> None:
        self.memory = SparseMemory()
        self.memory_space = AddressSpace("memory")
        self.io_space = AddressSpace("io")
        self.pci = PciHost()
        self.devices: dict[int, PciDevice] = {}
        self._add_function(0, PciFunction("00:00.0", HOST_BRIDGE_IDENTITY))

    # -- building ------------------------------------------------------------------------

    def plug(self, slot: int, device: DeviceT) -> DeviceT:
        """Plug a built device model into ``slot`` of bus 0 and return it (typed as given)."""
        self._add_function(slot, device.pci)
        self.devices[slot] = device
        return device

    def _add_function(self, slot: int, fn: PciFunction) -> None:
        self.pci.add(0, slot, 0, fn)
        fn.attach(self.memory_space, self.io_space, self.memory)

    def reset(self) -> None:
        """Power-on reset of every device (RAM keeps its contents, as on a warm reset)."""
        self.pci.address = 0
        for (_bus, slot, _fn), function in self.pci.functions.items():
            device = self.devices.get(slot)
            if device is not None:
                device.reset()
            else:
                function.reset()

    def assign_bars(
        self, fn: PciFunction, bars: dict[int, int], command: int | None = None
    ) -> None:
        """Do what firmware does: program BARs, then enable decoding and bus mastering.

        Args:
            fn: The function to configure.
            bars: BAR index -> base address.
            command: COMMAND value to write; default IO | MEMORY | MASTER.
        """
        for index, base in bars.items():
            fn.config_write(0x10 + 4 * index, 4, base)
        fn.config_write(
            0x04, 2, COMMAND_IO | COMMAND_MEMORY | COMMAND_MASTER if command is None else command
        )

    # -- CPU accesses -----------------------------------------------------------------------

    def read(self, addr: int, size: int) -> int:
        """A CPU memory read of ``size`` bytes: a device window, else RAM."""
        self._check(size)
        value = self.memory_space.read(addr, size)
        return self.memory.read_int(addr, size) if value is None else value

    def write(self, addr: int, size: int, value: int) -> None:
        """A CPU memory write: a device window, else RAM."""
        self._check(size)
        if not self.memory_space.write(addr, size, value):
            self.memory.write_int(addr, size, value)

    def pio_read(self, port: int, size: int) -> int:
        """A CPU port read (``in``): config mechanism, device I/O windows, else all ones."""
        self._check(size, pio=True)
        if self.pci.claims(port, size):
            return self.pci.read(port, size)
        value = self.io_space.read(port, size)
        if value is None:
            logger.debug("unclaimed port read %#x/%d", port, size)
            return (1 << (8 * size)) - 1
        return value

    def pio_write(self, port: int, size: int, value: int) -> None:
        """A CPU port write (``out``); unclaimed writes are dropped."""
        self._check(size, pio=True)
        if self.pci.claims(port, size):
            self.pci.write(port, size, value)
        elif not self.io_space.write(port, size, value):
            logger.debug("unclaimed port write %#x/%d = %#x", port, size, value)

    def inb(self, port: int) -> int:
        return self.pio_read(port, 1)

    def inw(self, port: int) -> int:
        return self.pio_read(port, 2)

    def inl(self, port: int) -> int:
        return self.pio_read(port, 4)

    def outb(self, port: int, value: int) -> None:
        self.pio_write(port, 1, value)

    def outw(self, port: int, value: int) -> None:
        self.pio_write(port, 2, value)

    def outl(self, port: int, value: int) -> None:
        self.pio_write(port, 4, value)

    # -- configuration cycles through mechanism #1 -------------------------------------------

    def config_read(self, slot: int, offset: int, size: int, function: int = 0) -> int:
        """Read config space of ``00:slot.function`` the way a guest does (0xCF8/0xCFC)."""
        self.outl(0xCF8, _config_address(slot, function, offset))
        return self.pio_read(0xCFC + (offset & 3), size)

    def config_write(
        self, slot: int, offset: int, size: int, value: int, function: int = 0
    ) -> None:
        """Write config space of ``00:slot.function`` through 0xCF8/0xCFC."""
        self.outl(0xCF8, _config_address(slot, function, offset))
        self.pio_write(0xCFC + (offset & 3), size, value)

    @staticmethod
    def _check(size: int, pio: bool = False) -> None:
        if size not in _SIZES or (pio and size == 8):
            raise ValueError(f"unsupported access size {size}")


def _config_address(slot: int, function: int, offset: int) -> int:
    return 0x8000_0000 | (slot & 0x1F) << 11 | (function & 0x7) << 8 | (offset & 0xFC)

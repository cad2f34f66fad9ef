"""PCI functions (type-0 configuration space) and configuration mechanism #1.

Why this exists: a trace of a real guest starts with firmware and drivers talking to the
device through configuration space (ids, BAR sizing, enabling decode), and the device's
register windows only appear once BARs are programmed. The model follows the PCI Local
Bus Specification 3.0 (section 6, configuration space; section 3.2.2.3.2, configuration
mechanism #1): per-byte writable masks keep read-only fields read-only, status error bits
are write-one-to-clear, writing all ones to a BAR reads back its size mask, and a BAR
decodes only while the matching COMMAND enable bit is set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from qtrace.devices import pci_config_map
from qtrace.refemu.bus import AddressSpace, Region
from qtrace.refemu.capability import Capability, install_capabilities
from qtrace.refemu.memory import SparseMemory
from qtrace.refemu.regmap import Field, Reg, RegisterMap, Unimplemented

__all__ = [
    "COMMAND_INTX_DISABLE",
    "COMMAND_IO",
    "COMMAND_MASTER",
    "COMMAND_MEMORY",
    "CONFIG_ADDRESS_PORT",
    "CONFIG_DATA_PORT",
    "CONFIG_HEADER",
    "DMA_RANDOM_WRITE",
    "BarDef",
    "PciFunction",
    "PciHost",
    "PciIdentity",
    "config_register_name",
]

logger = logging.getLogger(__name__)

CONFIG_SIZE_BYTES = 256
CONFIG_ADDRESS_PORT = 0xCF8
CONFIG_DATA_PORT = 0xCFC

COMMAND_IO = 1 << 0
COMMAND_MEMORY = 1 << 1
COMMAND_MASTER = 1 << 2
COMMAND_MWI = 1 << 4
COMMAND_PARITY = 1 << 6
COMMAND_SERR = 1 << 8
COMMAND_INTX_DISABLE = 1 << 10

# Status bits 15:11 report errors and are cleared by writing 1 (PCI 3.0, 6.2.3).
STATUS_W1C = 0xF800
STATUS_INTERRUPT = 1 << 3  # the function's INTx is asserted (whatever COMMAND says)
STATUS_CAP_LIST = 1 << 4  # the capabilities pointer at 0x34 is valid

DMA_RANDOM_WRITE = "random-write"
"""The DMA listeners' op for a write of random bytes (an entropy device's): the transfer's
address and length mean something, its content does not (no two sides agree on it)."""

_BAR_FIRST, _BAR_LAST = 0x10, 0x24
_IO_SPACE_END = 0x1_0000  # x86 port space
_MEM32_END = 0xFFFF_FFFF  # a 32-bit window whose last byte reaches here never decodes
_MEM64_END = 0xFFFF_FFFF_FFFF_FFFF


def config_register_name(offset: int, size: int) -> str:
    """The configuration-header register(s) a ``size``-byte access at ``offset`` touches.

    Names come from the one PCI header map (``qtrace/devices/pci-config.toml``), so a
    ``verify`` mismatch names config registers as reports do (``COMMAND``, ``STATUS``,
    ``COMMAND+STATUS`` for a dword access).
    """
    return pci_config_map().decode("pci-config", offset, size, 0).name


def _dword_row(dword: int) -> Reg:
    """One dword of the header, its fields shifted into place (for mismatch decoding)."""
    parts = [r for r in pci_config_map().registers("pci-config") if dword <= r.offset < dword + 4]
    several = len(parts) > 1
    fields = tuple(
        Field(
            f"{r.name}.{f.name}" if several else f.name,
            f.lo + 8 * (r.offset - dword),
            f.hi + 8 * (r.offset - dword),
        )
        for r in parts
        for f in r.fields
        if f.hi + 8 * (r.offset - dword) < 32
    )
    return Reg(dword, config_register_name(dword, 4), fields=fields)


# The type-0 header per dword, named and decoded from the devices' PCI header map.
CONFIG_HEADER = RegisterMap(_dword_row(dword) for dword in range(0, 0x40, 4))


@dataclass(frozen=True)
class BarDef:
    """One base address register: its index, window size (a power of two) and space.

    ``mem64``: a 64-bit memory BAR, which takes the next BAR's dword for the address's
    upper half (PCI 3.0, 6.2.5.1); ``prefetchable``: the memory is prefetchable.
    """

    index: int
    size_bytes: int
    io: bool = False
    mem64: bool = False
    prefetchable: bool = False

    @property
    def offset(self) -> int:
        return _BAR_FIRST + 4 * self.index

    @property
    def type_bits(self) -> int:
        """The read-only low bits: 1 for I/O; for memory, type (bits 2:1, 10b for 64-bit)
        and prefetchable (bit 3)."""
        if self.io:
            return 1
        return (0b100 if self.mem64 else 0) | (0b1000 if self.prefetchable else 0)

    @property
    def address_mask(self) -> int:
        """Writable address bits, i.e. what reads back after writing all ones."""
        return ~(self.size_bytes - 1) & 0xFFFF_FFFF


@dataclass(frozen=True)
class PciIdentity:
    """The read-only identity of a function and its fixed header values."""

    vendor_id: int
    device_id: int
    class_code: int
    revision: int = 0
    subsystem_vendor_id: int = 0
    subsystem_id: int = 0
    interrupt_pin: int = 0
    header_type: int = 0
    cache_line_size: int = 0
    command_wmask: int = COMMAND_IO | COMMAND_MEMORY | COMMAND_MASTER
    latency_writable: bool = True


class PciFunction:
    """One PCI function: its 256-byte configuration space and BAR windows.

    Args:
        name: Unique owner name for the windows it maps (e.g. ``"00:02.0"``).
        identity: Ids and fixed values.
        bars: BAR definitions with the region each one serves.
        unimplemented: Config dwords the model does not implement (offset -> (name, reason));
            accessing them raises :class:`~qtrace.refemu.regmap.Unimplemented`.
        capabilities: The capability list, in list order (the first is where 0x34
            points); each structure's bytes and writable bits (PCI 3.0, 6.7).
        device_specific_writable: Bytes 0x40-0xFF that no capability holds read and
            write like memory (PCI 3.0 leaves that region to the device; QEMU 10.2.2 makes
            it writable, observed on edu and virtio-rng-pci); otherwise they read 0.

    Attributes:
        blocked_read_fill: What a DMA read returns while bus mastering is off: 0xFF (a
            master abort, the PCI default) or what a device's emulator is seen to give.
        dma_ignores_master: The device's DMA does not go through the function's bus-master
            path, so COMMAND.MASTER does not gate it (QEMU's virtio devices without
            VIRTIO_F_IOMMU_PLATFORM, observed); MSI messages still do.
        config_read_listeners: Told ``(offset, size)`` before a configuration read, so a
            device can put a computed value in place (a window onto a BAR).
        msi_listeners: Told ``(address, data)`` of every MSI/MSI-X message sent.
    """

    def __init__(
        self,
        name: str,
        identity: PciIdentity,
        bars: Sequence[tuple[BarDef, Region]] = (),
        unimplemented: Mapping[int, tuple[str, str]] | None = None,
        capabilities: Sequence[Capability] = (),
        device_specific_writable: bool = False,
    ) -> None:
        self.name = name
        self.identity = identity
        self.bars = list(bars)
        self.unimplemented = dict(unimplemented or {})
        self.capabilities = tuple(capabilities)
        self.device_specific_writable = device_specific_writable
        self.blocked_read_fill = 0xFF
        self.dma_ignores_master = False
        self.config_read_listeners: list[Callable[[int, int], None]] = []
        self.msi_listeners: list[Callable[[int, int], None]] = []
        self.config = bytearray(CONFIG_SIZE_BYTES)
        self._wmask = bytearray(CONFIG_SIZE_BYTES)
        self._w1cmask = bytearray(CONFIG_SIZE_BYTES)
        self._spaces: tuple[AddressSpace, AddressSpace] | None = None
        self._memory: SparseMemory | None = None
        self.dma_blocked = 0
        self.config_listeners: list[Callable[[int, int], None]] = []
        # Each DMA transfer as it happens: (op, guest address, bytes moved); blocked
        # transfers move nothing and are not reported.
        self.dma_listeners: list[Callable[[str, int, bytes], None]] = []
        self.reset()

    # -- wiring ------------------------------------------------------------------------

    def attach(
        self, memory_space: AddressSpace, io_space: AddressSpace, memory: SparseMemory
    ) -> None:
        """Connect the function to the machine's address spaces and RAM (for DMA)."""
        self._spaces = (memory_space, io_space)
        self._memory = memory
        self._remap()

    def reset(self) -> None:
        """Power-on values: ids, zeroed BARs, decoding off."""
        ident = self.identity
        cfg, wm = self.config, self._wmask
        cfg[:] = bytes(CONFIG_SIZE_BYTES)
        wm[:] = bytes(CONFIG_SIZE_BYTES)
        self._w1cmask[:] = bytes(CONFIG_SIZE_BYTES)
        self._put(0x00, 2, ident.vendor_id)
        self._put(0x02, 2, ident.device_id)
        self._put(0x08, 1, ident.revision)
        self._put(0x09, 3, ident.class_code)
        self._put(0x0C, 1, ident.cache_line_size)
        self._put(0x0E, 1, ident.header_type)
        self._put(0x2C, 2, ident.subsystem_vendor_id)
        self._put(0x2E, 2, ident.subsystem_id)
        self._put(0x3D, 1, ident.interrupt_pin)
        self._put(0x04, 2, ident.command_wmask, wm)
        self._put(0x06, 2, STATUS_W1C, self._w1cmask)
        self._put(0x0C, 1, 0xFF, wm)
        if ident.latency_writable:
            self._put(0x0D, 1, 0xFF, wm)
        self._put(0x3C, 1, 0xFF, wm)
        for bar, _region in self.bars:
            self._put(bar.offset, 4, bar.type_bits)
            self._put(bar.offset, 4, bar.address_mask & ~(0x3 if bar.io else 0xF), wm)
            if bar.mem64:
                self._put(bar.offset + 4, 4, ~((bar.size_bytes - 1) >> 32), wm)  # upper half
        if self.device_specific_writable:
            wm[0x40:] = b"\xff" * (CONFIG_SIZE_BYTES - 0x40)
        if self.capabilities:
            install_capabilities(cfg, wm, self.capabilities)
            self._put(0x06, 2, STATUS_CAP_LIST)
        self._remap()

    # -- configuration space -----------------------------------------------------------

    def config_read(self, offset: int, size: int) -> int:
        """A ``size``-byte read at ``offset`` of configuration space."""
        self._check(offset, size)
        for listener in self.config_read_listeners:
            listener(offset, size)
        return int.from_bytes(self.config[offset : offset + size], "little")

    def config_write(self, offset: int, size: int, value: int) -> None:
        """A ``size``-byte write; read-only bits keep their value, W1C bits clear."""
        self._check(offset, size)
        for i in range(size):
            byte = (value >> (8 * i)) & 0xFF
            pos = offset + i
            old = self.config[pos] & ~(byte & self._w1cmask[pos])
            self.config[pos] = (old & ~self._wmask[pos]) | (byte & self._wmask[pos])
        if offset < _BAR_LAST + 4 and offset + size > 0x04:
            self._remap()
        for listener in self.config_listeners:
            listener(offset, size)

    @property
    def command(self) -> int:
        return self.config_read_raw(0x04, 2)

    def config_read_raw(self, offset: int, size: int) -> int:
        """Read configuration bytes without the unimplemented check (for the model's use)."""
        return int.from_bytes(self.config[offset : offset + size], "little")

    def config_put(self, offset: int, size: int, value: int) -> None:
        """Store configuration bytes as the device (read-only ones included), no listeners."""
        self._put(offset, size, value)

    def set_status(self, bits: int, on: bool) -> None:
        """Set or clear STATUS bits the device owns (e.g. :data:`STATUS_INTERRUPT`)."""
        status = self.config_read_raw(0x06, 2)
        self._put(0x06, 2, status | bits if on else status & ~bits)

    def bar_address(self, index: int) -> int | None:
        """Where BAR ``index`` decodes now, or ``None`` when it does not decode.

        A BAR decodes when COMMAND enables its space, its address is not 0, and the
        window fits below the top of its space (I/O: 64 KiB; memory: the last byte below
        0xFFFFFFFF, so the all-ones sizing pattern never decodes).
        """
        bar = next((b for b, _ in self.bars if b.index == index), None)
        if bar is None:
            return None
        enable = COMMAND_IO if bar.io else COMMAND_MEMORY
        if not self.command & enable:
            return None
        base = self.config_read_raw(bar.offset, 4) & bar.address_mask
        if bar.mem64:
            base |= self.config_read_raw(bar.offset + 4, 4) << 32
        limit = _IO_SPACE_END if bar.io else _MEM64_END if bar.mem64 else _MEM32_END
        if base == 0 or base + bar.size_bytes > limit:
            return None
        return base

    # -- DMA -----------------------------------------------------------------------------

    def dma_read(self, addr: int, size_bytes: int) -> bytes:
        """Read guest memory as bus master; :attr:`blocked_read_fill` bytes when not allowed."""
        if self._memory is None or not (self.dma_ignores_master or self.command & COMMAND_MASTER):
            self.dma_blocked += 1
            logger.debug("%s: DMA read at %#x blocked (bus master disabled)", self.name, addr)
            return bytes((self.blocked_read_fill,)) * size_bytes
        data = self._memory.read(addr, size_bytes)
        for listener in self.dma_listeners:
            listener("read", addr, data)
        return data

    def dma_write(self, addr: int, data: bytes, *, random: bool = False) -> None:
        """Write guest memory as bus master; dropped when not allowed. ``random``: the
        bytes are random (listeners hear :data:`DMA_RANDOM_WRITE`)."""
        if self._memory is None or not (self.dma_ignores_master or self.command & COMMAND_MASTER):
            self.dma_blocked += 1
            logger.debug("%s: DMA write at %#x dropped (bus master disabled)", self.name, addr)
            return
        self._memory.write(addr, data)
        op = DMA_RANDOM_WRITE if random else "write"
        for listener in self.dma_listeners:
            listener(op, addr, data)

    def msi_write(self, address: int, data: int) -> None:
        """Send an MSI/MSI-X message: the device writes ``data`` (a dword) at ``address``
        as bus master (PCI 3.0, 6.8), so it is dropped while bus mastering is off."""
        for listener in self.msi_listeners:
            listener(address, data)
        if self._memory is None or not self.command & COMMAND_MASTER:
            logger.debug("%s: MSI to %#x dropped (bus master disabled)", self.name, address)
            return
        self._memory.write_int(address, 4, data)

    # -- internals -------------------------------------------------------------------------

    def _put(self, offset: int, size: int, value: int, target: bytearray | None = None) -> None:
        buf = self.config if target is None else target
        buf[offset : offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def _check(self, offset: int, size: int) -> None:
        if size not in (1, 2, 4) or offset < 0 or offset + size > CONFIG_SIZE_BYTES:
            raise ValueError(f"bad config access: {size} bytes at {offset:#x}")
        entry = self.unimplemented.get(offset & ~3)
        if entry is not None:
            raise Unimplemented("pci-config", offset, entry[0], entry[1])

    def _remap(self) -> None:
        if self._spaces is None:
            return
        memory_space, io_space = self._spaces
        for bar, region in self.bars:
            space = io_space if bar.io else memory_space
            owner = f"{self.name}/BAR{bar.index}"
            base = self.bar_address(bar.index)
            if base is None:
                space.unmap(owner)
            else:
                space.map(owner, base, bar.size_bytes, region)


class PciHost:
    """Configuration mechanism #1 on ports 0xCF8 (address) and 0xCFC-0xCFF (data).

    Only dword accesses at 0xCF8 hit the address register (other sizes belong to other
    chipset ports, e.g. 0xCF9 reset control, and are not claimed here). Data-port
    accesses of 1, 2 or 4 bytes at 0xCFC+n reach config offset ``register + n`` of the
    addressed function; with the enable bit clear or no function there, reads return all
    ones (a master abort) and writes are dropped.
    """

    ENABLE = 1 << 31

    def __init__(self) -> None:
        self.address = 0
        self.functions: dict[tuple[int, int, int], PciFunction] = {}

    def add(self, bus: int, slot: int, function: int, fn: PciFunction) -> None:
        """Put ``fn`` at ``bus:slot.function``."""
        key = (bus, slot, function)
        if key in self.functions:
            raise ValueError(f"PCI {bus:02x}:{slot:02x}.{function} is taken")
        self.functions[key] = fn

    def claims(self, port: int, size: int) -> bool:
        """Whether this access is a configuration-mechanism access."""
        if port == CONFIG_ADDRESS_PORT:
            return size == 4
        return CONFIG_DATA_PORT <= port and port + size <= CONFIG_DATA_PORT + 4

    def read(self, port: int, size: int) -> int:
        """Read the address register or the addressed config bytes."""
        if port == CONFIG_ADDRESS_PORT:
            return self.address
        target = self._target(port)
        if target is None:
            return (1 << (8 * size)) - 1
        fn, offset = target
        return fn.config_read(offset, size)

    def write(self, port: int, size: int, value: int) -> None:
        """Latch the address register or write the addressed config bytes."""
        if port == CONFIG_ADDRESS_PORT:
            self.address = value & 0xFFFF_FFFF
            return
        target = self._target(port)
        if target is not None:
            fn, offset = target
            fn.config_write(offset, size, value)

    def _target(self, port: int) -> tuple[PciFunction, int] | None:
        addr = self.address
        if not addr & self.ENABLE:
            return None
        key = ((addr >> 16) & 0xFF, (addr >> 11) & 0x1F, (addr >> 8) & 0x7)
        fn = self.functions.get(key)
        if fn is None:
            return None
        return fn, (addr & 0xFC) + (port - CONFIG_DATA_PORT)

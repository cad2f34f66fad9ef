"""Guest-level steps run identically on the model and on QEMU, and the two sides that run them.

Why: a differential test is only fair if both sides see the very same guest accesses.
A :class:`Step` is one guest action (a register or port access, a configuration access
through 0xCF8/0xCFC, or planting bytes in RAM), and :class:`Side` is the small set of
CPU operations both the reference machine and a qtest session provide. Everything the
test does, including PCI setup (BARs, COMMAND, the chipset's PIRQ routing), goes
through steps, so the model is programmed exactly as QEMU is. Nothing here names a
device: the slot, interrupt input and BAR placement come from the device's pack
(``[model.qtest]``), register names from its model's maps.

Two kinds of step exist for devices that work asynchronously. A *clock* step moves QEMU's
virtual clock (qtest ``clock_step``) and the model's alike, so timers fire on both sides at
the same virtual time. A *sync* step is a read that waits for QEMU: the model reads first
(after finishing its pending off-vCPU work, :meth:`~qtrace.refemu.AsyncDevice.settle`),
and QEMU is read until it gives the same value or :data:`SYNC_TIMEOUT_S` passes; the last
values are compared like any read. It stands for a driver polling a status register
until the device's thread or bottom half is done. A sync step reads only registers or RAM
whose reads have no side effects. An *adopt* step (setup only) reads QEMU and gives the
value to the model (``adopt``): for state QEMU keeps over a machine reset that no guest
access can set (a counter), so each run starts from where QEMU is.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from qtrace.refemu import AsyncDevice, PciDevice, RefMachine, RegisterMap
from qtrace.refemu.pci import BarDef, config_register_name
from qtrace.verify.qtest import QtestClient

if TYPE_CHECKING:
    from qtrace.verify.netdev import FrameLink

__all__ = [
    "BAR0_BASE",
    "CLOCK_ALIGN",
    "DEFAULT_BARS",
    "IO_BASE",
    "SYNC_TIMEOUT_S",
    "ModelSide",
    "QemuSide",
    "RegisterNames",
    "Scenario",
    "Side",
    "Space",
    "Step",
    "apply",
    "bar_placement",
    "config_address",
    "setup_steps",
    "sync_read",
]

BAR0_BASE = 0xFEBC_0000  # the memory BAR (BAR0): where SeaBIOS puts it on the pc machine
IO_BASE = 0xC000  # the I/O BAR (BAR1)
PIIX_SLOT = 1  # the PIIX3 ISA bridge: PIRQ routing registers 0x60-0x63
PIRQ_ROUTE = 0x0B0B_0A0A  # PIRQA..D -> ISA IRQ 10, 10, 11, 11 (SeaBIOS's choice)
# A slot's INTA swizzles to PIRQ (slot + pin - 1) mod 4, which PIRQ_ROUTE sends to an ISA
# IRQ; QEMU's pc machine wires ISA IRQ n to I/O APIC input n. The pack's [model.qtest]
# gsi is that input for its slot (slot 5: PIRQB, ISA IRQ 10, I/O APIC input 10).
COMMAND_ENABLE = 0x0007  # IO | MEMORY | MASTER
DEFAULT_BARS: Mapping[int, int] = {0: BAR0_BASE, 1: IO_BASE}
"""Where BARs go when a pack's ``[model.qtest]`` says nothing: the memory BAR 0 and the
I/O BAR 1 (the e1000's pair)."""
CLOCK_ALIGN = 0
"""A clock step of this many ns aligns both clocks to the next whole millisecond (QEMU's
device timers are often set in ms, so both sides must agree on where a ms begins)."""
_MS = 1_000_000
SYNC_TIMEOUT_S = 1.0
"""How long a sync step waits for QEMU to reach the model's value."""
SYNC_GRACE_S = 0.001
"""After QEMU reached it: time for work that finishes right after the observed state
(a thread that clears its busy bit, then takes the big lock to raise its interrupt)."""

Space = Literal["mmio", "io", "port", "config", "ram", "clock", "net"]


@dataclass(frozen=True)
class Step:
    """One guest action.

    Attributes:
        op: ``read``, ``write``, ``sync`` (a read that waits for QEMU, see the module
            docstring; ``ram`` sync steps read RAM) or ``adopt`` (setup: QEMU's value
            read and handed to the model).
        space: ``mmio`` (offset in memory BAR ``bar``, default 0), ``io`` (offset in I/O
            BAR ``bar``, default 1), ``port`` (absolute port), ``config`` (the device's
            configuration offset, via 0xCF8/0xCFC), ``ram`` (plant ``data`` at physical
            address ``offset``; sync: read ``size`` bytes there), ``clock`` (a write:
            advance virtual time by ``value`` ns; :data:`CLOCK_ALIGN`: to the next ms) or
            ``net`` (a write: the network backend sends the frame ``data`` to the NIC).
        offset: Offset or address in that space.
        size: Access size in bytes (1, 2, 4, 8).
        value: Value written (ignored for reads).
        data: Bytes for ``ram`` steps.
        bar: The BAR an ``mmio`` or ``io`` step addresses (``None``: 0 and 1).
    """

    op: Literal["read", "write", "sync", "adopt"]
    space: Space
    offset: int
    size: int = 4
    value: int = 0
    data: bytes = b""
    bar: int | None = None

    def register(self, names: RegisterNames | None = None) -> str:
        """A printable name for the target register (BAR registers named by ``names``)."""
        if self.bar is not None and self.space in ("mmio", "io"):
            namer = getattr(names, "bar_register_name", None)
            return namer(self.bar, self.offset) if namer else f"bar{self.bar}+{self.offset:#x}"
        if self.space == "mmio" and names is not None:
            return names.mmio_registers.name_at(self.offset)
        if self.space == "io" and names is not None:
            return names.io_registers.name_at(self.offset)
        if self.space == "config":
            return config_register_name(self.offset, self.size)
        if self.space in ("mmio", "io"):
            return f"{self.space}+{self.offset:#x}"
        return self.space

    def describe(self, names: RegisterNames | None = None) -> str:
        """The step as text, registers named by ``names`` (a device model)."""
        if self.space == "clock":
            return "clock: align to the next ms" if not self.value else f"clock +{self.value} ns"
        if self.space == "ram" and self.op == "sync":
            return f"sync{self.size} ram[{self.offset:#x}]"
        if self.space == "ram":
            return f"ram[{self.offset:#x}] <- {len(self.data)} bytes"
        if self.space == "net":
            return f"frame of {len(self.data)} bytes to {self.data[:6].hex(':')} from the wire"
        space = self.space if self.bar is None else f"{self.space}{self.bar}"
        where = f"{space} {self.offset:#06x} ({self.register(names)})"
        if self.op in ("read", "sync", "adopt"):
            return f"{self.op}{self.size} {where}"
        return f"write{self.size} {where} = {self.value:#x}"

    def __str__(self) -> str:
        return self.describe()


class RegisterNames(Protocol):
    """Where a step's BAR registers get their names: a model's two register maps."""

    @property
    def mmio_registers(self) -> RegisterMap: ...

    @property
    def io_registers(self) -> RegisterMap: ...


@dataclass(frozen=True)
class Scenario:
    """A named list of steps and the RAM ranges (address, length) to compare after each."""

    name: str
    steps: tuple[Step, ...]
    watch: tuple[tuple[int, int], ...] = field(default=())


def config_address(slot: int, offset: int, function: int = 0) -> int:
    """The 0xCF8 value that selects ``00:slot.function`` dword ``offset``."""
    return 0x8000_0000 | slot << 11 | function << 8 | (offset & 0xFC)


class Side(Protocol):
    """The CPU operations a differential step needs, the device's slot and BAR bases."""

    @property
    def slot(self) -> int: ...

    @property
    def bars(self) -> Mapping[int, int]: ...

    def pio_read(self, port: int, size: int) -> int: ...

    def pio_write(self, port: int, size: int, value: int) -> None: ...

    def mem_read(self, addr: int, size: int) -> int: ...

    def mem_write(self, addr: int, size: int, value: int) -> None: ...

    def ram_write(self, addr: int, data: bytes) -> None: ...

    def ram_read(self, addr: int, size_bytes: int) -> bytes: ...

    @property
    def irq_level(self) -> bool: ...

    def let_interrupt_delay_pass(self) -> None:
        """Let the device's interrupt-moderation delay expire (a no-op for an untimed side)."""
        ...

    def clock_step(self, ns: int) -> None:
        """Advance virtual time by ``ns`` (:data:`CLOCK_ALIGN`: to the next whole ms)."""
        ...

    def sync(self, read: Step, model_value: int | None) -> int:
        """A sync step's read: the model side settles and reads once; QEMU reads until it
        gives ``model_value`` or the time is up. Returns the value read last."""
        ...

    def adopt(self, step: Step, value: int) -> None:
        """An adopt step: the model takes ``value`` (QEMU's) for what ``step`` reads."""
        ...

    def deliver(self, frame: bytes) -> None:
        """The network backend sends ``frame`` to the NIC (a ``net`` step)."""
        ...


class ModelSide:
    """The reference machine with the device model at ``slot``, its BARs at ``bars``."""

    def __init__(self, nic: PciDevice, slot: int, bars: Mapping[int, int] = DEFAULT_BARS) -> None:
        self.machine = RefMachine()
        self.slot = slot
        self.bars = bars
        self.nic = self.machine.plug(slot, nic)
        self.now_ns = 0
        self.dma_written: list[tuple[int, int]] = []  # (address, length) since last taken
        self._transmitted_seen = 0
        self.nic.pci.dma_listeners.append(self._dma)

    def _dma(self, op: str, addr: int, data: bytes) -> None:
        if op == "write":
            self.dma_written.append((addr, len(data)))

    def take_dma_written(self) -> list[tuple[int, int]]:
        """The RAM ranges the model wrote by DMA since the last call."""
        taken, self.dma_written = self.dma_written, []
        return taken

    def take_transmitted(self) -> list[bytes]:
        """The frames the model transmitted since the last call (a NIC's ``transmitted``)."""
        sent: list[bytes] = getattr(self.nic, "transmitted", [])
        new, self._transmitted_seen = sent[self._transmitted_seen :], len(sent)
        return new

    def deliver(self, frame: bytes) -> None:
        offer = getattr(self.nic, "offer", None)
        if offer is None:
            raise ValueError(f"the {type(self.nic).__name__} model takes no frames")
        offer(frame)

    def pio_read(self, port: int, size: int) -> int:
        return self.machine.pio_read(port, size)

    def pio_write(self, port: int, size: int, value: int) -> None:
        self.machine.pio_write(port, size, value)

    def mem_read(self, addr: int, size: int) -> int:
        return self.machine.read(addr, size)

    def mem_write(self, addr: int, size: int, value: int) -> None:
        self.machine.write(addr, size, value)

    def ram_write(self, addr: int, data: bytes) -> None:
        self.machine.memory.write(addr, data)

    def ram_read(self, addr: int, size_bytes: int) -> bytes:
        return self.machine.memory.read(addr, size_bytes)

    @property
    def irq_level(self) -> bool:
        return self.nic.irq.level

    def let_interrupt_delay_pass(self) -> None:
        return None  # the model has no interrupt moderation: nothing is ever deferred

    def clock_step(self, ns: int) -> None:
        if ns == CLOCK_ALIGN:
            ns = -self.now_ns % _MS
        self.now_ns += ns
        if isinstance(self.nic, AsyncDevice) and ns:
            self.nic.advance(ns)

    def sync(self, read: Step, model_value: int | None) -> int:
        if isinstance(self.nic, AsyncDevice):
            self.nic.settle()
        return apply(self, read) or 0

    def adopt(self, step: Step, value: int) -> None:
        adopt = getattr(self.nic, "adopt", None)
        if adopt is None:
            raise ValueError(f"{type(self.nic).__name__} adopts nothing ({step})")
        adopt(step.bar, step.offset, step.size, value)


class QemuSide:
    """QEMU through qtest: the device at ``slot``, its line the intercepted input ``gsi``.

    ``interrupt_delay_ns``: how long QEMU may delay raising the line (the device's
    interrupt moderation); :meth:`let_interrupt_delay_pass` steps the clock that far.
    ``link``: the host end of the NIC's network backend, for ``net`` steps.
    """

    def __init__(
        self,
        client: QtestClient,
        slot: int,
        gsi: int,
        interrupt_delay_ns: int = 0,
        bars: Mapping[int, int] = DEFAULT_BARS,
        link: FrameLink | None = None,
    ) -> None:
        self.client = client
        self.slot = slot
        self.gsi = gsi
        self.interrupt_delay_ns = interrupt_delay_ns
        self.bars = bars
        self.link = link

    def pio_read(self, port: int, size: int) -> int:
        return self.client.in_(port, size)

    def pio_write(self, port: int, size: int, value: int) -> None:
        self.client.out(port, size, value)

    def mem_read(self, addr: int, size: int) -> int:
        return self.client.mem_read(addr, size)

    def mem_write(self, addr: int, size: int, value: int) -> None:
        self.client.mem_write(addr, size, value)

    def ram_write(self, addr: int, data: bytes) -> None:
        self.client.write(addr, data)

    def ram_read(self, addr: int, size_bytes: int) -> bytes:
        return self.client.read(addr, size_bytes)

    @property
    def irq_level(self) -> bool:
        return self.client.irq_level(self.gsi)

    def let_interrupt_delay_pass(self) -> None:
        if self.interrupt_delay_ns:
            self.client.clock_step(self.interrupt_delay_ns)

    def clock_step(self, ns: int) -> None:
        if ns == CLOCK_ALIGN:
            now = self.client.clock_step(1)
            ns = -now % _MS
            if not ns:
                return
        self.client.clock_step(ns)

    def deliver(self, frame: bytes) -> None:
        if self.link is None:
            raise ValueError("QEMU was started without a network backend for the NIC")
        self.link.send(frame)

    def sync(self, read: Step, model_value: int | None) -> int:
        deadline = time.monotonic() + SYNC_TIMEOUT_S
        while True:
            value = apply(self, read) or 0
            if value == model_value:
                time.sleep(SYNC_GRACE_S)
                return value
            if time.monotonic() > deadline:
                return value
            time.sleep(SYNC_GRACE_S / 4)

    def adopt(self, step: Step, value: int) -> None:
        return None  # QEMU is what the model adopts


def sync_read(step: Step) -> Step:
    """The plain read a sync step makes."""
    return Step("read", step.space, step.offset, step.size, bar=step.bar)


def apply(side: Side, step: Step) -> int | None:
    """Run ``step`` on ``side``; the value read, or ``None`` for a write. (A sync step is
    run by :meth:`Side.sync`; here it reads once.)"""
    mask = (1 << (8 * step.size)) - 1
    value = step.value & mask
    if step.space == "clock":
        side.clock_step(step.value)
        return None
    if step.space == "net":
        side.deliver(step.data)
        return None
    if step.space == "ram":
        if step.op != "write":
            return int.from_bytes(side.ram_read(step.offset, step.size), "little")
        side.ram_write(step.offset, step.data)
        return None
    if step.space == "config":
        side.pio_write(0xCF8, 4, config_address(side.slot, step.offset))
        port = 0xCFC + (step.offset & 3)
    elif step.space == "io":
        port = side.bars[1 if step.bar is None else step.bar] + step.offset
    elif step.space == "port":
        port = step.offset
    else:
        addr = side.bars[0 if step.bar is None else step.bar] + step.offset
        if step.op != "write":
            return side.mem_read(addr, step.size)
        side.mem_write(addr, step.size, value)
        return None
    if step.op != "write":
        return side.pio_read(port, step.size)
    side.pio_write(port, step.size, value)
    return None


def bar_placement(
    bars: Sequence[BarDef], bases: Mapping[int, int] = DEFAULT_BARS
) -> list[tuple[BarDef, int]]:
    """Each of the model's BARs with the address ``bases`` gives it.

    Raises:
        ValueError: A BAR has no address (the pack's ``[model.qtest] bars`` must place it).
    """
    missing = [bar.index for bar in bars if bar.index not in bases]
    if missing:
        raise ValueError(f"no address for BAR(s) {missing}: set [model.qtest] bars in the pack")
    return [(bar, bases[bar.index]) for bar in bars]


def setup_steps(gsi: int, placement: Sequence[tuple[BarDef, int]] | None = None) -> list[Step]:
    """What firmware would do: PIIX3 PIRQ routing, the BARs (``placement``; default the
    memory BAR 0 at :data:`BAR0_BASE` and the I/O BAR 1 at :data:`IO_BASE`), the
    interrupt line register (``gsi``) and COMMAND. A device's own steps follow
    (its support's ``setup_steps``)."""
    piix = config_address(PIIX_SLOT, 0x60)
    if placement is None:
        placement = [(BarDef(0, 0), BAR0_BASE), (BarDef(1, 0, io=True), IO_BASE)]
    bars: list[Step] = []
    for bar, base in placement:
        bars.append(Step("write", "config", bar.offset, 4, (base | bar.type_bits) & 0xFFFF_FFFF))
        if bar.mem64:
            bars.append(Step("write", "config", bar.offset + 4, 4, base >> 32))
    return [
        Step("write", "port", 0xCF8, 4, piix),
        Step("write", "port", 0xCFC, 4, PIRQ_ROUTE),
        *bars,
        Step("write", "config", 0x3C, 1, gsi),
        Step("write", "config", 0x04, 2, COMMAND_ENABLE),
    ]

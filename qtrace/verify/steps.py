"""Guest-level steps run identically on the model and on QEMU, and the two sides that run them.

Why: a differential test is only fair if both sides see the very same guest accesses.
A :class:`Step` is one guest action (a register or port access, a configuration access
through 0xCF8/0xCFC, or planting bytes in RAM), and :class:`Side` is the small set of
CPU operations both the reference machine and a qtest session provide. Everything the
test does, including PCI setup (BARs, COMMAND, the chipset's PIRQ routing), goes
through steps, so the model is programmed exactly as QEMU is. Nothing here names a
device: the slot and interrupt input come from the device's pack (``[model.qtest]``),
register names from its model's maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from qtrace.refemu import PciDevice, RefMachine, RegisterMap
from qtrace.refemu.pci import config_register_name
from qtrace.verify.qtest import QtestClient

__all__ = [
    "BAR0_BASE",
    "IO_BASE",
    "ModelSide",
    "QemuSide",
    "RegisterNames",
    "Scenario",
    "Side",
    "Space",
    "Step",
    "apply",
    "config_address",
    "setup_steps",
]

BAR0_BASE = 0xFEBC_0000  # the memory BAR (BAR0): where SeaBIOS puts it on the pc machine
IO_BASE = 0xC000  # the I/O BAR (BAR1)
PIIX_SLOT = 1  # the PIIX3 ISA bridge: PIRQ routing registers 0x60-0x63
PIRQ_ROUTE = 0x0B0B_0A0A  # PIRQA..D -> ISA IRQ 10, 10, 11, 11 (SeaBIOS's choice)
# A slot's INTA swizzles to PIRQ (slot + pin - 1) mod 4, which PIRQ_ROUTE sends to an ISA
# IRQ; QEMU's pc machine wires ISA IRQ n to I/O APIC input n. The pack's [model.qtest]
# gsi is that input for its slot (slot 5: PIRQB, ISA IRQ 10, I/O APIC input 10).
COMMAND_ENABLE = 0x0007  # IO | MEMORY | MASTER

Space = Literal["mmio", "io", "port", "config", "ram"]


@dataclass(frozen=True)
class Step:
    """One guest action.

    Attributes:
        op: ``read`` or ``write`` (``ram`` steps are always writes).
        space: ``mmio`` (BAR0 offset), ``io`` (I/O BAR offset), ``port`` (absolute port),
            ``config`` (the device's configuration offset, via 0xCF8/0xCFC) or ``ram``
            (plant ``data`` at physical address ``offset``).
        offset: Offset or address in that space.
        size: Access size in bytes (1, 2, 4).
        value: Value written (ignored for reads).
        data: Bytes for ``ram`` steps.
    """

    op: Literal["read", "write"]
    space: Space
    offset: int
    size: int = 4
    value: int = 0
    data: bytes = b""

    def register(self, names: RegisterNames | None = None) -> str:
        """A printable name for the target register (BAR registers named by ``names``)."""
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
        if self.space == "ram":
            return f"ram[{self.offset:#x}] <- {len(self.data)} bytes"
        where = f"{self.space} {self.offset:#06x} ({self.register(names)})"
        if self.op == "read":
            return f"read{self.size} {where}"
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
    """The CPU operations a differential step needs, and the device's slot."""

    @property
    def slot(self) -> int: ...

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


class ModelSide:
    """The reference machine with the device model at ``slot``."""

    def __init__(self, nic: PciDevice, slot: int) -> None:
        self.machine = RefMachine()
        self.slot = slot
        self.nic = self.machine.plug(slot, nic)

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


class QemuSide:
    """QEMU through qtest: the device at ``slot``, its line the intercepted input ``gsi``.

    ``interrupt_delay_ns``: how long QEMU may delay raising the line (the device's
    interrupt moderation); :meth:`let_interrupt_delay_pass` steps the clock that far.
    """

    def __init__(
        self, client: QtestClient, slot: int, gsi: int, interrupt_delay_ns: int = 0
    ) -> None:
        self.client = client
        self.slot = slot
        self.gsi = gsi
        self.interrupt_delay_ns = interrupt_delay_ns

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
        self.client.clock_step(self.interrupt_delay_ns)


def apply(side: Side, step: Step) -> int | None:
    """Run ``step`` on ``side``; the value read, or ``None`` for a write."""
    mask = (1 << (8 * step.size)) - 1
    value = step.value & mask
    if step.space == "ram":
        side.ram_write(step.offset, step.data)
        return None
    if step.space == "config":
        side.pio_write(0xCF8, 4, config_address(side.slot, step.offset))
        port = 0xCFC + (step.offset & 3)
    elif step.space == "io":
        port = IO_BASE + step.offset
    elif step.space == "port":
        port = step.offset
    else:
        addr = BAR0_BASE + step.offset
        if step.op == "read":
            return side.mem_read(addr, step.size)
        side.mem_write(addr, step.size, value)
        return None
    if step.op == "read":
        return side.pio_read(port, step.size)
    side.pio_write(port, step.size, value)
    return None


def setup_steps(gsi: int) -> list[Step]:
    """What firmware would do: PIIX3 PIRQ routing, BAR0 (memory) and BAR1 (I/O), the
    interrupt line register (``gsi``) and COMMAND. A device's own steps follow
    (its support's ``setup_steps``)."""
    piix = config_address(PIIX_SLOT, 0x60)
    return [
        Step("write", "port", 0xCF8, 4, piix),
        Step("write", "port", 0xCFC, 4, PIRQ_ROUTE),
        Step("write", "config", 0x10, 4, BAR0_BASE),
        Step("write", "config", 0x14, 4, IO_BASE | 1),
        Step("write", "config", 0x3C, 1, gsi),
        Step("write", "config", 0x04, 2, COMMAND_ENABLE),
    ]

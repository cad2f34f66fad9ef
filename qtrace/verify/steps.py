"""Guest-level steps run identically on the model and on QEMU, and the two sides that run them.

Why: a differential test is only fair if both sides see the very same guest accesses.
A :class:`Step` is one guest action (a register or port access, a configuration access
through 0xCF8/0xCFC, or planting bytes in RAM), and :class:`Side` is the small set of
CPU operations both the reference machine and a qtest session provide. Everything the
test does, including PCI setup (BARs, COMMAND, the chipset's PIRQ routing), goes
through steps, so the model is programmed exactly as QEMU is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from qtrace.refemu import E1000, IO_REGISTERS, MAC_REGISTERS, RefMachine
from qtrace.refemu.pci import config_register_name
from qtrace.verify.qtest import QtestClient

__all__ = [
    "BAR0_BASE",
    "E1000_GSI",
    "E1000_SLOT",
    "IO_BASE",
    "ModelSide",
    "QemuSide",
    "Side",
    "Space",
    "Step",
    "apply",
    "config_address",
    "setup_steps",
]

E1000_SLOT = 5
BAR0_BASE = 0xFEBC_0000  # where SeaBIOS puts it on the pc machine
IO_BASE = 0xC000
PIIX_SLOT = 1  # the PIIX3 ISA bridge: PIRQ routing registers 0x60-0x63
PIRQ_ROUTE = 0x0B0B_0A0A  # PIRQA..D -> ISA IRQ 10, 10, 11, 11 (SeaBIOS's choice)
# INTA of slot 5 swizzles to PIRQB ((slot + pin - 1) mod 4 = 1), which PIRQ_ROUTE sends to
# ISA IRQ 10; QEMU's pc machine wires ISA IRQ n to I/O APIC input n (observed: the
# intercepted ``ioapic`` input 10 follows the e1000's line).
E1000_GSI = 10
COMMAND_ENABLE = 0x0007  # IO | MEMORY | MASTER
_EECD = 0x10
_EECD_SK, _EECD_CS, _EECD_DI = 0x1 | 0x40, 0x2 | 0x40, 0x4 | 0x40  # with EE_REQ
_EEPROM_READ_WORD0 = 0b110 << 6  # start bit, read opcode, address 0
# The longest interrupt-moderation delay: ITR is 16 bits of 256 ns units (SDM 13.4.18).
INTERRUPT_DELAY_MAX_NS = 0xFFFF * 256 + 1

Space = Literal["mmio", "io", "port", "config", "ram"]


@dataclass(frozen=True)
class Step:
    """One guest action.

    Attributes:
        op: ``read`` or ``write`` (``ram`` steps are always writes).
        space: ``mmio`` (BAR0 offset), ``io`` (I/O BAR offset), ``port`` (absolute port),
            ``config`` (the e1000's configuration offset, via 0xCF8/0xCFC) or ``ram``
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

    @property
    def register(self) -> str:
        """A printable name for the target register."""
        if self.space == "mmio":
            return MAC_REGISTERS.name_at(self.offset)
        if self.space == "io":
            return IO_REGISTERS.name_at(self.offset)
        if self.space == "config":
            return config_register_name(self.offset, self.size)
        return self.space

    def __str__(self) -> str:
        if self.space == "ram":
            return f"ram[{self.offset:#x}] <- {len(self.data)} bytes"
        where = f"{self.space} {self.offset:#06x} ({self.register})"
        if self.op == "read":
            return f"read{self.size} {where}"
        return f"write{self.size} {where} = {self.value:#x}"


def config_address(slot: int, offset: int, function: int = 0) -> int:
    """The 0xCF8 value that selects ``00:slot.function`` dword ``offset``."""
    return 0x8000_0000 | slot << 11 | function << 8 | (offset & 0xFC)


class Side(Protocol):
    """The CPU operations a differential step needs."""

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
    """The reference machine with an e1000 (or a variant) at slot 5."""

    def __init__(self, nic: E1000) -> None:
        self.machine = RefMachine()
        self.nic = self.machine.plug(E1000_SLOT, nic)

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
    """QEMU through qtest; the line is I/O APIC input :data:`E1000_GSI`."""

    def __init__(self, client: QtestClient) -> None:
        self.client = client

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
        return self.client.irq_level(E1000_GSI)

    def let_interrupt_delay_pass(self) -> None:
        self.client.clock_step(INTERRUPT_DELAY_MAX_NS)


def apply(side: Side, step: Step) -> int | None:
    """Run ``step`` on ``side``; the value read, or ``None`` for a write."""
    mask = (1 << (8 * step.size)) - 1
    value = step.value & mask
    if step.space == "ram":
        side.ram_write(step.offset, step.data)
        return None
    if step.space == "config":
        side.pio_write(0xCF8, 4, config_address(E1000_SLOT, step.offset))
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


def setup_steps() -> list[Step]:
    """What firmware would do (PIRQ routing, BAR0/BAR1, interrupt line, COMMAND), then
    the EEPROM interface brought to a known state.

    Observed in QEMU 10.2.2: a machine reset does not reset the EEPROM bit-bang
    interface (EECD's pins, EE_REQ and the DO level survive ``system_reset``), so each
    run starts by selecting the EEPROM, clocking in a read command (after which DO is the
    dummy 0), deselecting it and clearing EECD, on both sides.
    """
    piix = config_address(PIIX_SLOT, 0x60)
    steps = [
        Step("write", "port", 0xCF8, 4, piix),
        Step("write", "port", 0xCFC, 4, PIRQ_ROUTE),
        Step("write", "config", 0x10, 4, BAR0_BASE),
        Step("write", "config", 0x14, 4, IO_BASE | 1),
        Step("write", "config", 0x3C, 1, E1000_GSI),
        Step("write", "config", 0x04, 2, COMMAND_ENABLE),
        Step("write", "mmio", _EECD, 4, _EECD_CS),
    ]
    for bit in range(8, -1, -1):
        di = ((_EEPROM_READ_WORD0 >> bit) & 1) * _EECD_DI
        steps += [
            Step("write", "mmio", _EECD, 4, _EECD_CS | di),
            Step("write", "mmio", _EECD, 4, _EECD_CS | _EECD_SK | di),
        ]
    steps += [Step("write", "mmio", _EECD, 4, 0)]
    return steps

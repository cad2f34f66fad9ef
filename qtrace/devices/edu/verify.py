"""What ``qtrace verify edu`` needs beyond the model: setup, random sequences, coverage.

Why here: generic verify (:mod:`qtrace.verify`) drives QEMU under qtest for any device;
what is edu's own is in its pack. ``pack.toml``'s ``[model] verify`` names
:data:`SUPPORT`.

How edu's asynchrony is compared (the model's side is in
:mod:`qtrace.devices.edu.model.edu`):

* The factorial runs on QEMU's thread, in real time. Every factorial write is preceded
  by an acknowledge of the factorial's interrupt bit and followed by two sync steps:
  STATUS (QEMU is polled until COMPUTING reads as the model's, i.e. clear) and
  INTR_STATUS (until the bit, if IRQFACT asked for it, shows). The thread clears
  COMPUTING before it raises the interrupt, so only the second sync proves it is done,
  and only if the bit was clear before: hence the acknowledge (without it a late raise
  landed after the next step, seen in about one run of 2,000). The line and the MSI
  message are compared after the syncs. Not compared: what a
  read returns *while* the thread runs (COMPUTING set, the factorial register still
  holding its operand) and what a second factorial write does then (QEMU ignores it): when
  QEMU's thread gets to run is up to the host's scheduler, so no fixed sequence can hit
  that window reliably.
* The DMA runs from a virtual-clock timer: clock steps move QEMU's clock and the model's
  together, so the transfer, START clearing and the interrupt are compared exactly,
  including a step that ends one nanosecond before the timer is due.
* Interrupts: the INTx line (I/O APIC input 10) and the MSI message, which the live test
  points at watched RAM (a message is a dword write there).

Setup (:func:`setup_steps`): QEMU 10.2.2's edu keeps its state over a machine reset, so
each run starts by letting any transfer still pending finish, acknowledging every
interrupt, restoring LIVENESS, STATUS and FACTORIAL, zeroing the DMA buffer by a transfer
from zeroed RAM, clearing the DMA registers and the MSI capability, then aligning both
clocks to a whole millisecond (the DMA timer is due in whole milliseconds).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from qtrace.devices.edu.model import (
    BUFFER_BYTES,
    BUFFER_START,
    DEFAULT_DMA_MASK,
    EDU_REGISTERS,
    MSI_OFFSET,
    Edu,
    offset_of,
)
from qtrace.devices.edu.model.edu_dma import in_buffer
from qtrace.devices.edu.model.edu_regs import DMA_CMD_START, DMA_CMD_TO_RAM, INTR_FACTORIAL
from qtrace.verify.coverage import CoverageSpec, HeldBits, TrackedRegister
from qtrace.verify.steps import CLOCK_ALIGN, Step
from qtrace.verify.support import DeviceSupport

__all__ = [
    "COVERAGE",
    "HELD",
    "MSI_SLOT",
    "RAM_DEST",
    "RAM_SOURCE",
    "SUPPORT",
    "generate",
    "keeps_generator_rules",
    "setup_steps",
]

_MS = 1_000_000
RAM_SOURCE, RAM_SOURCE_BYTES = 0x0100_0000, 0x2000
"""Guest RAM a transfer to the device reads from: planted with random bytes each run."""
RAM_DEST, RAM_DEST_BYTES = 0x0100_4000, 0x400
"""Guest RAM a transfer to RAM writes: planted and watched (compared after each step)."""
MSI_SLOT = 0x0100_5000
"""Where the live test points the MSI message: watched, so every message is compared."""
_ZEROS = 0x0100_6000  # zeroed RAM the setup copies into the device's buffer

_ID, _LIVENESS, _FACTORIAL = offset_of("ID"), offset_of("LIVENESS"), offset_of("FACTORIAL")
_STATUS, _INTR_STATUS = offset_of("STATUS"), offset_of("INTR_STATUS")
_RAISE, _ACK = offset_of("INTR_RAISE"), offset_of("INTR_ACK")
_SRC, _DST, _COUNT, _CMD = (offset_of(n) for n in ("DMA_SRC", "DMA_DST", "DMA_COUNT", "DMA_CMD"))
_MSI_CONTROL, _MSI_ADDRESS, _MSI_UPPER, _MSI_DATA = (MSI_OFFSET + d for d in (2, 4, 8, 0xC))
_COMMAND = 0x04
_COMMAND_KEPT = 0x0003  # IO | MEMORY: the BAR stays decoded
_COMMAND_MASTER, _COMMAND_INTX_DISABLE = 0x0004, 0x0400
_FACTORIAL_HELD = 0xFFC0_0000
_DMA_DUE_NS = 100 * _MS


def _write(offset: int, value: int, size: int = 4) -> Step:
    return Step("write", "mmio", offset, size, value)


def _read(offset: int, size: int = 4) -> Step:
    return Step("read", "mmio", offset, size)


def _config(offset: int, size: int, value: int) -> Step:
    return Step("write", "config", offset, size, value)


def _factorial(value: int) -> list[Step]:
    """A factorial write and what makes its end observable: the factorial's interrupt bit
    acknowledged before, the syncs on COMPUTING and on that bit after."""
    return [
        _write(_ACK, INTR_FACTORIAL),
        _write(_FACTORIAL, value),
        Step("sync", "mmio", _STATUS, 4),
        Step("sync", "mmio", _INTR_STATUS, 4),
    ]


def setup_steps() -> list[Step]:
    """edu brought to its power-on state on both sides (QEMU keeps it over a reset).

    First the previous run's work is let finish: a factorial still computing (none should
    be: every factorial write is synced; with IRQFACT cleared first it would raise
    nothing) and a transfer still pending (a clock step past its timer)."""
    return [
        _write(_STATUS, 0),
        Step("sync", "mmio", _STATUS, 4),
        Step("write", "clock", 0, value=_DMA_DUE_NS + _MS),  # a transfer left pending runs
        _write(_ACK, 0xFFFF_FFFF),
        _write(_LIVENESS, 0xFFFF_FFFF),  # reads back 0
        *_factorial(34),  # 34! is 0 modulo 2^32
        Step("write", "ram", _ZEROS, data=bytes(BUFFER_BYTES)),
        _write(_SRC, _ZEROS),
        _write(_DST, BUFFER_START),
        _write(_COUNT, BUFFER_BYTES),
        _write(_CMD, DMA_CMD_START),
        Step("write", "clock", 0, value=_DMA_DUE_NS + _MS),
        *(_write(offset, 0) for offset in (_SRC, _DST, _COUNT)),
        *(_config(offset, 4, 0) for offset in (_MSI_ADDRESS, _MSI_UPPER, _MSI_DATA)),
        _config(_MSI_CONTROL, 2, 0),
        Step("write", "clock", 0, value=CLOCK_ALIGN),
    ]


# -- coverage and held bits --------------------------------------------------------------------

_WIDE = frozenset({"DMA_SRC", "DMA_DST", "DMA_COUNT", "DMA_CMD"})
COVERAGE_REGISTERS = tuple(
    TrackedRegister(reg.name, "mmio", reg.offset, 64 if reg.name in _WIDE else 32)
    for reg in EDU_REGISTERS
)
READ_BACK = {"INTR_RAISE": "INTR_STATUS", "INTR_ACK": "INTR_STATUS"}
PLAIN_WRITES = "plain writes"

HELD: tuple[HeldBits, ...] = (
    HeldBits(
        "FACTORIAL", _FACTORIAL_HELD, 0,
        "a write starts n multiplications on QEMU's thread: with n of 32 bits it runs for "
        "seconds (the debug build does about a million a millisecond); n stays below 2^22",
    ),
    HeldBits(
        "DMA_CMD", DMA_CMD_START, 0,
        "START is written only by a transfer, right after source, destination and count "
        "were set inside the 4 KiB buffer and the planted RAM: QEMU 10.2.2 stops or crashes "
        "on a transfer outside its buffer",
        sequences=PLAIN_WRITES,
    ),
)  # fmt: skip

COVERAGE = CoverageSpec(registers=COVERAGE_REGISTERS, read_back=READ_BACK, held=HELD)


def _hold(name: str, value: int) -> int:
    for rule in HELD:
        if rule.register == name:
            value = rule.force(value)
    return value


# -- random sequences ----------------------------------------------------------------------------

_OP_WEIGHTS = {
    "read": 60, "write": 50, "pair": 30, "factorial": 18, "transfer": 16, "clock": 16,
    "raise": 14, "ack": 12, "msi": 6, "command": 4, "odd access": 4,
}  # fmt: skip
_OPS, _OP_WEIGHT_VALUES = tuple(_OP_WEIGHTS), tuple(_OP_WEIGHTS.values())
_NAMES = tuple(reg.name for reg in EDU_REGISTERS)
_RESERVED = (0x0C, 0x10, 0x28, 0x68, 0x7C, 0xA0, 0x100, 0xFFFFC)
_MIN_ACTIONS, _MAX_ACTIONS = 6, 30


def _value(rnd: random.Random, bits: int) -> int:
    choice = rnd.randrange(8)
    if choice == 0:
        return 0
    if choice == 1:
        return (1 << bits) - 1
    return rnd.getrandbits(bits)


def _register_write(rnd: random.Random, name: str, value: int | None = None) -> list[Step]:
    reg = EDU_REGISTERS.named(name)
    wide = name in _WIDE
    size = 8 if wide and rnd.randrange(2) else 4
    value = _hold(name, _value(rnd, 8 * size) if value is None else value)
    return _factorial(value) if name == "FACTORIAL" else [_write(reg.offset, value, size)]


def _read_of(rnd: random.Random, name: str) -> Step:
    reg = EDU_REGISTERS.named(name)
    return _read(reg.offset, 8 if name in _WIDE and rnd.randrange(2) else 4)


def _transfer(rnd: random.Random) -> list[Step]:
    """A DMA inside the buffer and the planted RAM, RAM-side addresses with random bits
    above the 28-bit mask (QEMU clamps them), then maybe time to complete it."""
    to_ram = rnd.randrange(2) == 1
    ram, ram_bytes = (RAM_DEST, RAM_DEST_BYTES) if to_ram else (RAM_SOURCE, RAM_SOURCE_BYTES)
    most = min(ram_bytes, BUFFER_BYTES)
    count = rnd.choice((0, 1, rnd.randint(1, most), most, rnd.randint(1, 64)))
    device = BUFFER_START + rnd.randint(0, BUFFER_BYTES - count)
    ram_at = ram + rnd.randint(0, ram_bytes - count)
    if rnd.randrange(3) == 0:
        ram_at |= rnd.getrandbits(36) << 28  # beyond dma_mask: masked off
    src, dst = (device, ram_at) if to_ram else (ram_at, device)
    cmd = DMA_CMD_START | (DMA_CMD_TO_RAM if to_ram else 0) | rnd.randrange(2) << 2
    if rnd.randrange(4) == 0:
        cmd |= rnd.getrandbits(61) << 3  # other bits are stored as written
    steps = [_write(_SRC, src, 8), _write(_DST, dst, 8), _write(_COUNT, count, 8)]
    steps.append(_write(_CMD, cmd, 8 if cmd >> 32 else rnd.choice((4, 8))))
    if rnd.randrange(3):
        steps.append(_read(_CMD))
    if rnd.randrange(2):
        steps += _clock(rnd)
    return steps


def _clock(rnd: random.Random) -> list[Step]:
    ns = rnd.choice((
        rnd.randint(1, 150 * _MS), _DMA_DUE_NS - 1, _DMA_DUE_NS, _DMA_DUE_NS + _MS,
        rnd.randint(1, 2 * _MS),
    ))  # fmt: skip
    return [Step("write", "clock", 0, value=ns), _read(_CMD)]


def _msi(rnd: random.Random) -> list[Step]:
    steps = []
    if rnd.randrange(2):
        steps += [_config(_MSI_ADDRESS, 4, MSI_SLOT), _config(_MSI_UPPER, 4, 0)]
        steps.append(_config(_MSI_DATA, 2, rnd.getrandbits(16)))
    control = rnd.getrandbits(16) if rnd.randrange(4) == 0 else rnd.randrange(2)
    steps.append(_config(_MSI_CONTROL, 2, control))
    steps.append(Step("read", "config", MSI_OFFSET, 4))
    return steps


def _command(rnd: random.Random) -> list[Step]:
    value = _COMMAND_KEPT | (_COMMAND_MASTER if rnd.randrange(4) else 0)
    value |= _COMMAND_INTX_DISABLE if rnd.randrange(3) == 0 else 0
    return [_config(_COMMAND, 2, value), Step("read", "config", 0x04, 4)]


def _odd_access(rnd: random.Random) -> list[Step]:
    """Sizes and offsets the document rules out: refused by QEMU or by the device."""
    offset = rnd.choice((*(r.offset for r in EDU_REGISTERS), *_RESERVED))
    kind = rnd.randrange(4)
    if kind == 0:
        return [_read(offset & ~7, 8)]
    size = rnd.choice((1, 2))
    if kind == 1:
        return [_read(offset + size * rnd.randrange(4 // size), size)]
    if kind == 2:
        return [_write(rnd.choice(_RESERVED), rnd.getrandbits(32)), _read(offset)]
    target = rnd.choice((_LIVENESS, _STATUS, _RAISE))
    return [Step("write", "mmio", target, size, rnd.getrandbits(8 * size)), _read(target)]


def _action(rnd: random.Random) -> list[Step]:
    [op] = rnd.choices(_OPS, weights=_OP_WEIGHT_VALUES)
    if op == "read":
        return [_read_of(rnd, rnd.choice(_NAMES))]
    if op == "write":
        name = rnd.choice(_NAMES)
        return [*_register_write(rnd, name), _read_of(rnd, READ_BACK.get(name, name))]
    if op == "pair":
        name = rnd.choice(("LIVENESS", "STATUS", "DMA_SRC", "DMA_DST", "DMA_COUNT"))
        value = _value(rnd, 64 if name in _WIDE else 32)
        mask = (1 << (64 if name in _WIDE else 32)) - 1
        return [
            *_register_write(rnd, name, value), _read_of(rnd, name),
            *_register_write(rnd, name, ~value & mask), _read_of(rnd, name),
        ]  # fmt: skip
    if op == "factorial":
        steps = [_write(_STATUS, rnd.choice((0, 0x80, 0x80, rnd.getrandbits(32))))]
        n = rnd.choice((rnd.randint(0, 40), rnd.getrandbits(22), rnd.getrandbits(12)))
        return [*steps, *_register_write(rnd, "FACTORIAL", n), _read(_FACTORIAL)]
    if op == "transfer":
        return _transfer(rnd)
    if op == "clock":
        return _clock(rnd)
    if op in ("raise", "ack"):
        value = rnd.choice((1, 0x100, 1 << rnd.randrange(32), rnd.getrandbits(32), 0))
        return [_write(_RAISE if op == "raise" else _ACK, value), _read(_INTR_STATUS)]
    if op == "msi":
        return _msi(rnd)
    if op == "command":
        return _command(rnd)
    return _odd_access(rnd)


def generate(rnd: random.Random) -> list[Step]:
    """One random sequence: the planted RAM (a transfer's source, its watched destination,
    the MSI slot), then 6 to 30 actions, every choice from ``rnd``.

    An action is a read; a write and its read-back (arbitrary values of the register's
    width, 4- or 8-byte wide for the DMA registers); a value and its complement; a
    factorial (with or without IRQFACT) and the syncs that wait for QEMU's thread; a
    transfer; a clock step; an interrupt raise or acknowledge; an MSI reconfiguration (the
    message into :data:`MSI_SLOT`, random data, enable or not); a COMMAND change (bus
    mastering, INTx disable); or an access the document rules out (8 bytes below 0x80, 1 or
    2 bytes, reserved offsets).
    """
    steps = [
        Step("write", "ram", RAM_SOURCE, data=rnd.randbytes(RAM_SOURCE_BYTES)),
        Step("write", "ram", RAM_DEST, data=rnd.randbytes(RAM_DEST_BYTES)),
        Step("write", "ram", MSI_SLOT, data=bytes(16)),
    ]
    for _ in range(rnd.randint(_MIN_ACTIONS, _MAX_ACTIONS)):
        steps += _action(rnd)
    return steps


def keeps_generator_rules(steps: Sequence[Step]) -> bool:
    """Whether every transfer ``steps`` start stays inside the device's buffer and the
    planted RAM, and every factorial write has its acknowledge before and its syncs after:
    the sequences the generator makes. The shrinker tries only such sequences (QEMU
    crashes on the others, or the comparison would race with QEMU's thread).

    Run on a model, since what a command starts depends on the registers at that moment.
    """
    model = Edu()
    model.pci.config_write(_COMMAND, 2, 0x0007)
    for index, step in enumerate(steps):
        if step.space == "clock":
            model.advance(step.value or 1)
        elif step.space == "config" and step.op == "write":
            model.pci.config_write(step.offset, step.size, step.value)
        elif step.space == "mmio" and step.op == "sync":
            model.settle()
        elif step.space == "mmio" and step.op == "write":
            if step.offset == _FACTORIAL and not _observable(steps, index):
                return False
            if step.offset == _CMD and not _starts_in_bounds(model, step):
                return False
            try:
                model.mmio_write(step.offset, step.size, step.value)
            except ValueError:
                continue
    return True


def _observable(steps: Sequence[Step], index: int) -> bool:
    """The factorial write at ``index`` is framed as :func:`_factorial` frames it."""
    acked = index > 0 and steps[index - 1] == _write(_ACK, INTR_FACTORIAL)
    return acked and [s.op for s in steps[index + 1 : index + 3]] == ["sync", "sync"]


def _starts_in_bounds(model: Edu, step: Step) -> bool:
    dma = model.dma
    if dma.running or not step.value & DMA_CMD_START or step.size < 4:
        return True
    mask = DEFAULT_DMA_MASK
    if step.value & DMA_CMD_TO_RAM:
        device, ram, window, size = dma.src, dma.dst & mask, RAM_DEST, RAM_DEST_BYTES
    else:
        device, ram, window, size = dma.dst, dma.src & mask, RAM_SOURCE, RAM_SOURCE_BYTES
    fits_ram = window <= ram and ram + dma.count <= window + size
    return in_buffer(device, dma.count) and fits_ram


SUPPORT = DeviceSupport(
    setup_steps=setup_steps,
    generate=generate,
    sequence_valid=keeps_generator_rules,
    sequence_watch=((RAM_DEST, RAM_DEST_BYTES), (MSI_SLOT, 16)),
    coverage=COVERAGE,
)

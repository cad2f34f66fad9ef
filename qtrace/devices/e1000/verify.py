"""What ``qtrace verify`` needs of the e1000 beyond its model: the pack's verify support.

Why here: generic verify (:mod:`qtrace.verify`) replays traces and drives QEMU under
qtest for any device; the e1000's own knowledge is in its pack. ``pack.toml``'s
``[model] verify`` names :data:`SUPPORT`, which holds:

* the volatile rules: bits QEMU sets from its autonegotiation timer or from frames the
  host backend delivers, which a trace does not record (:mod:`qtrace.verify.volatile`
  says how rules are applied). EERD's DONE and MDIC's READY are not among them: QEMU and
  the model both complete those at once, so their timing cannot differ (a trace from real
  hardware would need rules for them);
* the replay quirks (:mod:`qtrace.devices.e1000.replay_quirks`): causes QEMU's timer sets,
  frames a network backend delivered;
* the EEPROM interface reset before each live run (:func:`setup_steps`);
* the random sequences of ``verify --live`` (:func:`generate`, :data:`HELD`, coverage in
  :data:`COVERAGE`) and the fixed scenarios
  (:mod:`qtrace.devices.e1000.scenarios`);
* the longest interrupt-moderation delay.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import partial

from qtrace.devices.e1000.model import IO_REGISTERS, MAC_REGISTERS
from qtrace.devices.e1000.model.e1000_regs import TCTL_EN
from qtrace.devices.e1000.replay_quirks import E1000ReplayQuirks
from qtrace.devices.e1000.rx_sequences import RECEIVE, generate_receive, keeps_receive_holds
from qtrace.devices.e1000.scenarios import (
    BUF_BASE,
    DESC_BYTES,
    RING_DESCRIPTORS,
    SCENARIOS,
    tx_descriptor,
)
from qtrace.refemu import Kind, RegisterMap
from qtrace.verify.coverage import CoverageSpec, CoverSpace, HeldBits, TrackedRegister
from qtrace.verify.steps import Step
from qtrace.verify.support import DeviceSupport
from qtrace.verify.volatile import VolatileRule

__all__ = [
    "COVERAGE",
    "HELD",
    "LIVE_RING",
    "PARKED_RING",
    "RANDOM_REGISTERS",
    "SEQ_RING_BASE",
    "SUPPORT",
    "VOLATILE",
    "generate",
    "hold",
    "keeps_held_bits",
    "setup_steps",
]

_AUTONEG = (
    "set by QEMU's autonegotiation timer (~500 ms after reset or restart), not by a guest access"
)
_HOST_RX = "set when the host backend delivers a frame, which a trace does not record"


def _mdic_phy_reg(*numbers: int) -> Callable[[int], bool]:
    """Applies to MDIC values whose REGADD field is one of ``numbers``."""
    return lambda value: (value >> 16) & 0x1F in numbers


_HOST_COUNTERS = (
    "TPR", "GPRC", "GORCL", "GORCH", "TORL", "TORH", "PRC64", "PRC127", "PRC255", "PRC511",
    "PRC1023", "PRC1522", "BPRC", "MPRC", "MPC", "RNBC",
)  # fmt: skip

VOLATILE: tuple[VolatileRule, ...] = (
    VolatileRule("STATUS", 1 << 1, f"LU (link up) is {_AUTONEG}"),
    VolatileRule("ICR", 1 << 2, f"LSC is {_AUTONEG}"),
    VolatileRule("ICR", (1 << 4) | (1 << 6) | (1 << 7), f"RXDMT0, RXO and RXT0 are {_HOST_RX}",
                 host_frames=True),
    VolatileRule("MDIC", (1 << 2) | (1 << 5),
                 f"PHY status link and AN-complete bits are {_AUTONEG}",
                 applies=_mdic_phy_reg(0x01)),
    VolatileRule("MDIC", 0xFFFF, f"link partner and 1000BASE-T status data are {_AUTONEG}",
                 applies=_mdic_phy_reg(0x05, 0x06, 0x0A)),
    *(VolatileRule(name, 0, f"counts frames that are {_HOST_RX}", kind="at-least", host_frames=True)
      for name in _HOST_COUNTERS),
)  # fmt: skip


_EECD = 0x10
_EECD_SK, _EECD_CS, _EECD_DI = 0x1 | 0x40, 0x2 | 0x40, 0x4 | 0x40  # with EE_REQ
_EEPROM_READ_WORD0 = 0b110 << 6  # start bit, read opcode, address 0
# The longest interrupt-moderation delay. ITR is 16 bits of 256 ns units (SDM 13.4.18), but
# the absolute delay timers RADV and TADV count 16 bits of 1.024 us (13.4.32, 13.4.44), and
# QEMU 10.2.2 holds a raise back by them too (qtest, issue 13: RDTR 1, RADV 0x4000, a cause
# after an ICR read raised the line only 16.78 ms later, past the ITR maximum).
INTERRUPT_DELAY_MAX_NS = 0xFFFF * 1024 + 1


def setup_steps() -> list[Step]:
    """The EEPROM interface brought to a known state, after the generic PCI setup.

    Observed in QEMU 10.2.2: a machine reset does not reset the EEPROM bit-bang
    interface (EECD's pins, EE_REQ and the DO level survive ``system_reset``), so each
    run starts by selecting the EEPROM, clocking in a read command (after which DO is the
    dummy 0), deselecting it and clearing EECD, on both sides.
    """
    steps = [Step("write", "mmio", _EECD, 4, _EECD_CS)]
    for bit in range(8, -1, -1):
        di = ((_EEPROM_READ_WORD0 >> bit) & 1) * _EECD_DI
        steps += [
            Step("write", "mmio", _EECD, 4, _EECD_CS | di),
            Step("write", "mmio", _EECD, 4, _EECD_CS | _EECD_SK | di),
        ]
    return [*steps, Step("write", "mmio", _EECD, 4, 0)]


# -- random sequences ------------------------------------------------------------------------
#
# Every register of the model (BAR0 and the I/O BAR) is written with arbitrary 32-bit values,
# in any order (generate), 1- and 2-byte accesses included (QEMU widens those to a 4-byte
# access at that address, docs/refemu.md). The coverage report (qtrace.verify.coverage)
# counts each bit written 0 and 1 and read back. Only the bits in HELD are ever held back,
# each for the reason it gives, and each is written freely in the other kind of sequence.

SEQ_RING_BASE = 0x0040_0000
"""The random sequences' transmit ring: 8 planted descriptors, then zeros. TDH reaches at
most 0xFFFF descriptors (1 MiB) past the base, and nothing else writes that MiB in QEMU's
RAM (the scenarios' rings and buffers are below it), so both sides fetch the same bytes."""
SEQ_RING_BYTES = RING_DESCRIPTORS * DESC_BYTES
RECEIVE_SHARE = 4
"""One random sequence in this many is a receive sequence (frames arrive:
:mod:`qtrace.devices.e1000.rx_sequences`); the others are register sequences."""

LIVE_RING = "with the transmit ring live"
PARKED_RING = "with the transmit ring parked"
"""Each random sequence is one of two kinds: with the transmit ring *live* (TCTL.EN may be
set, so the ring must be the planted one) or *parked* (TCTL.EN stays clear, so the ring's
base, length and head take any value). Between them every bit of TCTL, TDBAL, TDBAH and
TDLEN is written both ways."""

_MDIC_PHY_CONTROL_WRITE = 0x0420_0000  # MDIC opcode 01b (write), PHY address 1, register 0
_MDIC_TARGET = 0x0FFF_0000  # opcode, PHY address and register number
_PHY_RESTART_AN = 1 << 9

HELD: tuple[HeldBits, ...] = (
    HeldBits(
        "RCTL", 0x3 << 6, 0,
        "loopback mode would make the guest's own transmissions its received frames; these "
        "sequences test frames from the wire",
        sequences=RECEIVE,
    ),
    HeldBits(
        "TCTL", TCTL_EN, 0,
        "the ring's base, length and head are arbitrary in these sequences: a transmit would "
        "fetch descriptors and buffers from anywhere (firmware ROM, MMIO, unassigned space) "
        "and write back there",
        sequences=PARKED_RING,
    ),
    HeldBits(
        "TDBAL", 0xFFFF_FFF0, SEQ_RING_BASE,
        "a transmit may run: the ring must be the planted one, in RAM both sides hold "
        "(bits 3:0 stay free: descriptor fetches ignore them)",
        sequences=LIVE_RING,
    ),
    HeldBits(
        "TDBAH", 0xFFFF_FFFF, 0, "a transmit may run: the ring must be the planted one",
        sequences=LIVE_RING,
    ),
    HeldBits(
        "TDLEN", 0x000F_FC00, 0,
        "a transmit may run: at most 56 descriptors per pass (a pass over the largest ring, "
        "65,535 descriptors, costs the model 0.14 s)",
        sequences=LIVE_RING,
    ),
    HeldBits(
        "MDIC", _PHY_RESTART_AN, 0,
        "restarting autonegotiation drops the link (observed: STATUS.LU and the PHY's link "
        "status clear at once) until QEMU's autonegotiation timer brings it back; the untimed "
        "model has no such timer",
        applies=lambda value: value & _MDIC_TARGET == _MDIC_PHY_CONTROL_WRITE,
        applies_to="PHY writes to register 0 (control) at PHY address 1",
    ),
)  # fmt: skip

# Writes to IMC show in IMS, writes to ICS in ICR (ICS reads return ICR too).
READ_BACK = {"IMC": "IMS", "ICS": "ICR"}

# Values worth trying besides arbitrary ones (drawn one time in four).
_KNOWN_VALUES: dict[str, tuple[int, ...]] = {
    "CTRL": (0x0014_0240, 0x0414_0240, 0x8014_0240, 0x0000_0001),
    "EECD": (0x0, 0x40, 0x30, 0x70, 0x1, 0x5, 0x45),
    "EERD": (0x1, 0x101, 0x3F01, 0x4001),
    "MDIC": (0x0822_0000, 0x0820_0000, 0x0821_0000, 0x0824_0000, 0x0424_01E1, 0x2822_0000),
    "ICR": (0xFFFF_FFFF, 0x1, 0x4),
    "ICS": (0x1, 0x2, 0x4, 0x80, 0x8000_0000),
    "IMS": (0x1, 0x3, 0x4, 0x9D, 0xFFFF_FFFF),
    "IMC": (0x1, 0x4, 0xFFFF_FFFF),
    "TCTL": (0x0, 0x2, 0x0004_010A),
    "TDBAL": (SEQ_RING_BASE,),
    "TDBAH": (0,),
    "TDLEN": (0x80, 0x0),
    "TDH": (0, 1, 7),
    "TDT": (0, 1, 3, 7),
}
_RING_CMDS = (0x0B, 0x09, 0x03, 0x02, 0x0A, 0x1B, 0x13)
_ACCESS_SIZES = (4, 4, 4, 4, 4, 4, 2, 1)  # mostly dword accesses, as drivers make them
# Interrupt and transmit registers interact with each other, so they are drawn more often;
# an array counts as one register (its element is drawn uniformly).
_WEIGHTS = {"ICR": 8, "ICS": 6, "IMS": 5, "IMC": 4, "TDT": 4, "TCTL": 3, "TDH": 2, "TDLEN": 2,
            "MTA": 4, "VFTA": 4, "RAL": 2, "RAH": 2}  # fmt: skip
_MASK32 = 0xFFFF_FFFF
_MIN_ACTIONS, _MAX_ACTIONS = 8, 40  # actions per sequence (see generate)
# How often each kind of action is drawn (see generate). Sweeps are rare because they are
# long (4 steps per element: 512 for MTA); one sweep covers a whole array.
_OP_WEIGHTS = {"read": 120, "write": 80, "write+read": 100, "pair": 60, "block": 3, "sweep": 1}
_BLOCK = 8
_ARRAYS = ("MTA", "VFTA", "RAL", "RAH")


def _tracked() -> tuple[TrackedRegister, ...]:
    """Every register the model implements, in BAR0 and in the I/O BAR."""
    spaces: tuple[tuple[CoverSpace, RegisterMap], ...] = (
        ("mmio", MAC_REGISTERS),
        ("io", IO_REGISTERS),
    )
    return tuple(
        TrackedRegister(reg.name, space, reg.offset)
        for space, table in spaces
        for reg in table
        if reg.kind is not Kind.UNIMPL
    )


COVERAGE = CoverageSpec(registers=_tracked(), read_back=READ_BACK, held=HELD, narrow="widen")
RANDOM_REGISTERS: tuple[TrackedRegister, ...] = COVERAGE.registers
"""The registers random sequences write and read: all of them."""


def _groups() -> dict[str, tuple[TrackedRegister, ...]]:
    groups: dict[str, list[TrackedRegister]] = {}
    for reg in RANDOM_REGISTERS:
        groups.setdefault(reg.name.split("[", 1)[0], []).append(reg)
    return {name: tuple(regs) for name, regs in groups.items()}


def hold(name: str, value: int, kind: str) -> int:
    """``value`` (a whole register's) with the bits :data:`HELD` holds in ``kind`` sequences."""
    for rule in HELD:
        if rule.register == name and rule.sequences in ("all", kind):
            value = rule.force(value)
    return value


def keeps_held_bits(steps: Sequence[Step]) -> bool:
    """Whether ``steps`` is a sequence the generator could have made: the ring planted
    first, and every write keeping :data:`HELD` for one kind of sequence (and, with the
    ring live, the ring base written before TCTL.EN is set; with frames arriving, what
    :func:`~qtrace.devices.e1000.rx_sequences.keeps_receive_holds` checks). The shrinker
    tries only such sequences, so a counterexample never sends a transmit, or puts a frame,
    where the generator would not.
    """
    if not steps or steps[0].space != "ram":
        return False
    if any(step.space == "net" for step in steps):
        return keeps_receive_holds(steps) and _keeps(steps, PARKED_RING)
    return any(_keeps(steps, kind) for kind in (LIVE_RING, PARKED_RING))


def _keeps(steps: Sequence[Step], kind: str) -> bool:
    ring_set = False
    for step in steps:
        if step.op != "write" or step.space != "mmio":
            continue
        reg = MAC_REGISTERS.at(step.offset)
        if reg is None:
            continue
        value = step.value & ((1 << (8 * step.size)) - 1)  # widened by QEMU: zero-extended
        if hold(reg.name, value, kind) != value:
            return False
        if kind == LIVE_RING:
            ring_set = ring_set or reg.name == "TDBAL"
            if reg.name == "TCTL" and value & TCTL_EN and not ring_set:
                return False
    return True


def generate(rnd: random.Random) -> list[Step]:
    """One random sequence: a planted transmit ring (programmed when the sequence's ring
    is live), then 8 to 40 actions on any register, every choice from ``rnd``.

    An action is a read; a write; a write and the read that shows it; a *pair* (a value
    and its complement, each read back: every bit both ways at once); a *block* (a pair
    for each of 8 registers that are neighbours in the register table, in random order);
    or a *sweep* (a pair for every element of an array, as drivers clear MTA and VFTA).
    Values are uniform 32-bit three times in four, else one of the register's known values,
    0 or all ones; reads and single writes are 1 or 2 bytes wide one time in four. Bits in
    :data:`HELD` are held for the sequence's kind.

    Why not hypothesis's strategies: its integers repeat a few "interesting" values (in
    2,000 sequences only a few hundred distinct values were written, their high bits
    rarely 1), and hypothesis 6.1xx mixes in constants found in the source of every local
    module imported, so a "derandomized" run drew other sequences under pytest than from
    the command line (at 1,000 sequences: 100% bit coverage in one process, 70% in the
    other). A seeded ``random.Random`` is uniform and the same everywhere.
    """
    if not rnd.randrange(RECEIVE_SHARE):  # frames arrive: the receive side, transmit parked
        return [*_planted_tx_ring(bytes(SEQ_RING_BYTES)), *generate_receive(rnd)]
    kind = rnd.choice((LIVE_RING, PARKED_RING))
    cmds = [rnd.choice(_RING_CMDS) for _ in range(RING_DESCRIPTORS)]
    ring = b"".join(tx_descriptor(BUF_BASE + 0x40 * i, 60, c) for i, c in enumerate(cmds))
    steps = _planted_tx_ring(ring)
    if kind == LIVE_RING:  # the ring where the held bits keep it
        steps += [
            Step("write", "mmio", MAC_REGISTERS.named(name).offset, 4, value)
            for name, value in (("TDBAL", SEQ_RING_BASE), ("TDBAH", 0), ("TDLEN", 0x80))
        ]
    for _ in range(rnd.randint(_MIN_ACTIONS, _MAX_ACTIONS)):
        steps += _action(rnd, kind)
    return steps


def _planted_tx_ring(ring: bytes) -> list[Step]:
    """The transmit ring, and its frames' buffers: QEMU's RAM keeps what earlier runs left
    there, and the frames QEMU transmits are compared with the model's."""
    return [
        Step("write", "ram", SEQ_RING_BASE, data=ring),
        Step("write", "ram", BUF_BASE, data=bytes(0x40 * RING_DESCRIPTORS)),
    ]


_GROUPS = _groups()
_DRAW_ORDER = tuple(name for name in sorted(_GROUPS) for _ in range(_WEIGHTS.get(name, 1)))
_BY_NAME = {reg.name: reg for reg in RANDOM_REGISTERS}
_SCALARS = [reg for reg in RANDOM_REGISTERS if "[" not in reg.name]
_BLOCKS = [_SCALARS[i : i + _BLOCK] for i in range(0, len(_SCALARS), _BLOCK)]
_OPS = tuple(_OP_WEIGHTS)
_OP_WEIGHT_VALUES = tuple(_OP_WEIGHTS.values())


def _action(rnd: random.Random, kind: str) -> list[Step]:
    [op] = rnd.choices(_OPS, weights=_OP_WEIGHT_VALUES)
    if op == "sweep":
        regs = list(_GROUPS[rnd.choice(_ARRAYS)])
        return [s for reg in regs for s in _pair(reg, rnd.getrandbits(32), kind)]
    if op == "block":
        regs = rnd.sample(block := rnd.choice(_BLOCKS), len(block))
        return [s for reg in regs for s in _pair(reg, rnd.getrandbits(32), kind)]
    reg = rnd.choice(_GROUPS[rnd.choice(_DRAW_ORDER)])
    if op == "read":
        return [_read(rnd, reg)]
    if rnd.randrange(4):
        value = rnd.getrandbits(32)
    else:
        value = rnd.choice(_KNOWN_VALUES.get(reg.name.split("[", 1)[0], ()) + (0, _MASK32))
    if op == "pair":
        return _pair(reg, value, kind)
    size = rnd.choice(_ACCESS_SIZES)
    value = hold(reg.name, value & ((1 << (8 * size)) - 1), kind)
    if value >> (8 * size):  # holding needs bits a narrow write cannot carry
        step = Step("write", reg.space, reg.offset, 4, value)
    else:
        step = Step("write", reg.space, reg.offset + size * rnd.randrange(4 // size), size, value)
    if op == "write":
        return [step]
    return [step, _read(rnd, _BY_NAME[READ_BACK.get(reg.name, reg.name)])]


def _read(rnd: random.Random, reg: TrackedRegister) -> Step:
    size = rnd.choice(_ACCESS_SIZES)
    return Step("read", reg.space, reg.offset + size * rnd.randrange(4 // size), size)


def _pair(reg: TrackedRegister, value: int, kind: str) -> list[Step]:
    """The value and its complement, each written whole and read back."""
    shown_by = _BY_NAME[READ_BACK.get(reg.name, reg.name)]
    back = Step("read", shown_by.space, shown_by.offset, 4)
    return [
        Step("write", reg.space, reg.offset, 4, hold(reg.name, value & _MASK32, kind)),
        back,
        Step("write", reg.space, reg.offset, 4, hold(reg.name, ~value & _MASK32, kind)),
        back,
    ]


SUPPORT = DeviceSupport(
    volatile=VOLATILE,
    scenarios=SCENARIOS,
    setup_steps=setup_steps,
    generate=generate,
    sequence_valid=keeps_held_bits,
    sequence_watch=((SEQ_RING_BASE, SEQ_RING_BYTES),),
    interrupt_delay_ns=INTERRUPT_DELAY_MAX_NS,
    replay_quirks=partial(E1000ReplayQuirks, volatile=VOLATILE),
    coverage=COVERAGE,
)

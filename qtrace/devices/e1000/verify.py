"""What ``qtrace verify`` needs of the e1000 beyond its model: the pack's verify support.

Why here: generic verify (:mod:`qtrace.verify`) replays traces and drives QEMU under
qtest for any device; the e1000's own knowledge is in its pack. ``pack.toml``'s
``[model] verify`` names :data:`SUPPORT`, which holds:

* the volatile rules: bits QEMU sets from its autonegotiation timer or from frames the
  host backend delivers, which a trace does not record (:mod:`qtrace.verify.volatile`
  says how rules are applied). EERD's DONE and MDIC's READY are not among them: QEMU and
  the model both complete those at once, so their timing cannot differ (a trace from real
  hardware would need rules for them);
* the replay quirk for causes QEMU's timer sets (:class:`TimerCauses`);
* the EEPROM interface reset before each live run (:func:`setup_steps`);
* the random sequences of ``verify --live`` (:func:`sequences`) and the fixed scenarios
  (:mod:`qtrace.devices.e1000.scenarios`);
* the longest interrupt-moderation delay.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from qtrace.devices.e1000.model import E1000, MAC_REGISTERS
from qtrace.devices.e1000.scenarios import (
    BUF_BASE,
    DESC_BYTES,
    RING_BASE,
    RING_DESCRIPTORS,
    SCENARIOS,
    tx_descriptor,
)
from qtrace.refemu import PciDevice
from qtrace.trace import Access, Trace
from qtrace.verify.steps import Step
from qtrace.verify.support import DeviceSupport
from qtrace.verify.volatile import VolatileRule, rules_for

__all__ = ["RANDOM_REGISTERS", "SUPPORT", "VOLATILE", "TimerCauses", "sequences", "setup_steps"]

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


_ICR_OFFSET = 0xC0  # interrupt cause read (8254x SDM 13.4.17)
_ICS_OFFSET = 0xC8  # interrupt cause set (13.4.18)
_EECD = 0x10
_EECD_SK, _EECD_CS, _EECD_DI = 0x1 | 0x40, 0x2 | 0x40, 0x4 | 0x40  # with EE_REQ
_EEPROM_READ_WORD0 = 0b110 << 6  # start bit, read opcode, address 0
# The longest interrupt-moderation delay: ITR is 16 bits of 256 ns units (SDM 13.4.18).
INTERRUPT_DELAY_MAX_NS = 0xFFFF * 256 + 1


class TimerCauses:
    """The replay quirk: interrupt causes QEMU's autonegotiation timer set unrecorded.

    Causes such as LSC are set by QEMU's autonegotiation timer at a moment the trace
    does not record; they show only when the guest next reads ICR, and they raise the
    line as soon as IMS enables them (e.g. an IMS write). If QEMU's next ICR read holds
    timer-set causes the model lacks and the model's mask enables them, the timer fired
    before this access: they are set in the model (as QEMU's timer did, through ICS).
    """

    def __init__(self, trace: Trace, model: PciDevice, host_frames: bool) -> None:
        if not isinstance(model, E1000):
            raise TypeError(f"the e1000's replay quirks need its model, not {type(model).__name__}")
        self.nic = model
        self.timer_bits = 0
        for rule in rules_for(VOLATILE, "ICR", 0, host_frames=host_frames):
            if rule.kind == "mask":
                self.timer_bits |= rule.ignore
        icr_reads = [
            a for a in trace.accesses
            if a.space == "mmio" and a.op == "read" and a.offset == _ICR_OFFSET and a.size == 4
        ]  # fmt: skip
        self._icr_read_seqs = [a.seq for a in icr_reads]
        self._icr_read_values = [a.value for a in icr_reads]

    def explains_raised_line(self, access: Access) -> bool:
        """See :class:`TimerCauses`; True when the missing causes were set in the model."""
        index = bisect.bisect_right(self._icr_read_seqs, access.seq)
        if not self.timer_bits or index >= len(self._icr_read_seqs):
            return False
        next_icr = self._icr_read_values[index]
        missing = next_icr & self.timer_bits & ~self.nic.reg("ICR")
        if not missing or not missing & self.nic.reg("IMS"):
            return False
        self.nic.mmio_write(_ICS_OFFSET, 4, missing)
        return True


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


# Registers the model claims to implement fully, with the write values worth trying
# beyond random ones. Ring base registers only take the planted ring's address so the
# device never DMAs outside RAM the test controls.
RANDOM_REGISTERS: dict[str, tuple[int, ...]] = {
    "CTRL": (0x0014_0240, 0x0414_0240, 0x8014_0240, 0x0000_0001),
    "STATUS": (),
    # EECD writes keep CS low: the bit-bang protocol is the EECD scenario's job, and QEMU's
    # DO level on a CS rising edge mid-read is not yet understood (docs/refemu.md).
    "EECD": (0x0, 0x40, 0x30, 0x70, 0x1, 0x5, 0x45),
    "EERD": (0x1, 0x101, 0x3F01, 0x4001),
    "CTRL_EXT": (),
    "MDIC": (0x0822_0000, 0x0820_0000, 0x0821_0000, 0x0824_0000, 0x0424_01E1, 0x2822_0000),
    "FCAL": (), "FCAH": (), "FCT": (), "VET": (),
    "ICR": (0xFFFF_FFFF, 0x1, 0x4), "ITR": (),
    "ICS": (0x1, 0x2, 0x4, 0x80, 0x8000_0000),
    "IMS": (0x1, 0x3, 0x4, 0x9D, 0xFFFF_FFFF),
    "IMC": (0x1, 0x4, 0xFFFF_FFFF),
    "RCTL": (), "TCTL": (0x0, 0x2, 0x0004_010A), "TIPG": (), "LEDCTL": (), "PBA": (),
    "RDTR": (), "RXDCTL": (), "RADV": (), "RSRPD": (),
    "TDBAL": (RING_BASE,), "TDBAH": (0,), "TDLEN": (0x80, 0x0),
    "TDH": (0, 1, 7), "TDT": (0, 1, 3, 7),
    "TIDV": (), "TXDCTL": (), "TADV": (), "RXCSUM": (),
    "MTA[0]": (), "MTA[127]": (), "RAL[0]": (), "RAH[0]": (), "RAL[15]": (), "RAH[15]": (),
    "VFTA[0]": (), "WUC": (), "WUFC": (), "MANC": (),
    "TPT": (), "GPTC": (), "GOTCL": (), "GOTCH": (), "TOTL": (), "TOTH": (), "BPTC": (),
    "MPTC": (), "PTC64": (), "TSCTC": (),
}  # fmt: skip
_FREE_WRITE = {  # registers whose writes may take any value
    name for name, values in RANDOM_REGISTERS.items() if not values or name in ("IMS", "IMC", "ICR")
}
_RING_CMDS = (0x0B, 0x09, 0x03, 0x02, 0x0A, 0x1B, 0x13)
_ACCESS_SIZES = (4, 4, 4, 4, 4, 4, 2, 1)  # mostly dword accesses, as drivers make them
# Interrupt and transmit registers interact with each other, so they are drawn more often.
_WEIGHTS = {"ICR": 8, "ICS": 6, "IMS": 5, "IMC": 4, "TDT": 4, "TCTL": 3, "TDH": 2, "TDLEN": 2}
_DRAW_ORDER = tuple(name for name in sorted(RANDOM_REGISTERS) for _ in range(_WEIGHTS.get(name, 1)))


def sequences() -> Any:
    """The hypothesis strategy of random sequences: a planted transmit ring, then 3 to
    40 accesses to :data:`RANDOM_REGISTERS` (hypothesis is imported here, only when
    random sequences run)."""
    from hypothesis import strategies as st

    offsets = {name: MAC_REGISTERS.named(name).offset for name in RANDOM_REGISTERS}

    @st.composite
    def step(draw: Any) -> Step:
        name = draw(st.sampled_from(_DRAW_ORDER))
        offset = offsets[name]
        via_io = draw(st.integers(0, 9)) == 0
        known = RANDOM_REGISTERS[name]
        read = draw(st.booleans())
        if read and via_io:
            return Step("read", "io", 0x04)
        if not read and not (name in _FREE_WRITE or not known):
            # Registers limited to known values (ring bases, MDIC, EECD, ...): whole writes.
            return Step("write", "mmio", offset, 4, draw(st.sampled_from(known)))
        # Narrow (1- and 2-byte) accesses at any naturally aligned byte of the register:
        # QEMU widens them to a 4-byte access at that address (docs/refemu.md).
        size = draw(st.sampled_from(_ACCESS_SIZES))
        at = offset + size * draw(st.integers(0, 4 // size - 1))
        if read:
            return Step("read", "mmio", at, size)
        value = draw(
            st.one_of(st.sampled_from(known or (0, 0xFFFF_FFFF)), st.integers(0, 0xFFFF_FFFF))
        )
        return Step("write", "mmio", at, size, value & ((1 << (8 * size)) - 1))

    @st.composite
    def sequence(draw: Any) -> list[Step]:
        cmds = draw(
            st.lists(
                st.sampled_from(_RING_CMDS), min_size=RING_DESCRIPTORS, max_size=RING_DESCRIPTORS
            )
        )
        ring = b"".join(tx_descriptor(BUF_BASE + 0x40 * i, 60, c) for i, c in enumerate(cmds))
        return [
            Step("write", "ram", RING_BASE, data=ring),
            *draw(st.lists(step(), min_size=3, max_size=40)),
        ]

    return sequence()


SUPPORT = DeviceSupport(
    volatile=VOLATILE,
    scenarios=SCENARIOS,
    setup_steps=setup_steps,
    sequences=sequences,
    sequence_watch=((RING_BASE, RING_DESCRIPTORS * DESC_BYTES),),
    interrupt_delay_ns=INTERRUPT_DELAY_MAX_NS,
    replay_quirks=TimerCauses,
)

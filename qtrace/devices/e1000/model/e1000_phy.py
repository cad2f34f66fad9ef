"""The 82540EM's internal copper PHY, reached through MDIC.

Why: drivers identify the PHY (PHYID1/PHYID2), reset it, restart autonegotiation and
poll link state through MDIC (SDM 13.4.6), one 16-bit PHY register per MDIC
transaction. The internal PHY (an M88E1011-class core) answers at PHY address 1; any
other address, or a register it does not have, completes with MDIC's ERROR bit (as real
hardware does for an absent PHY). Values are given "after autonegotiation finished with
the link up", which is the state QEMU's NIC settles in shortly after reset (register
0x0F, extended status, answers with MDIC.ERROR in QEMU 10.2.2, observed, so the model
has no such register); the trace replay treats the timer-driven bits as volatile (see
``qtrace.verify.volatile``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PHY_ADDRESS", "PHY_REGISTERS", "MdicResult", "Phy", "PhyReg"]

PHY_ADDRESS = 1

_CTRL_RESET = 1 << 15
_CTRL_RESTART_AN = 1 << 9


@dataclass(frozen=True)
class PhyReg:
    """One PHY register: number, name, reset value, writable bits, provenance."""

    number: int
    name: str
    reset: int
    wmask: int
    note: str


# Number -> register (IEEE 802.3 clause 22 layout plus the vendor-specific ones drivers read).
PHY_REGISTERS: dict[int, PhyReg] = {
    r.number: r
    for r in (
        PhyReg(0x00, "PCTRL", 0x1140, 0xFFC0,
               "autonegotiation enabled, full duplex, 1000 Mb/s; RESET and RESTART_AN self-clear "
               "(RESET resets no register, observed in QEMU 10.2.2); bits 5:0 reserved, read 0 "
               "(802.3 22.2.4.1; observed: writing 0x003F reads back 0)"),
        PhyReg(0x01, "PSTATUS", 0x794D, 0,
               "10/100 abilities, extended status, preamble suppression, AN able, link up, "
               "extended caps; "
               "AN complete clear at power-on (observed in QEMU 10.2.2)"),
        PhyReg(0x02, "PHYID1", 0x0141, 0, "Marvell OUI bits 3:18"),
        PhyReg(0x03, "PHYID2", 0x0C20, 0, "OUI bits 19:24, model, revision of the 82540EM's PHY"),
        PhyReg(0x04, "PHY_AUTONEG_ADV", 0x0DE1, 0xFFFF, "802.3 selector, 10/100 half/full, pause"),
        PhyReg(0x05, "PHY_LP_ABILITY", 0x01E0, 0,
               "link partner 10/100 half/full (observed in QEMU 10.2.2)"),
        PhyReg(0x06, "PHY_AUTONEG_EXP", 0x0000, 0, "autonegotiation expansion"),
        PhyReg(0x09, "PHY_1000T_CTRL", 0x0E00, 0xFFFF, "advertise 1000BASE-T full and half duplex"),
        PhyReg(0x0A, "PHY_1000T_STATUS", 0x3C00, 0,
               "local and remote receiver OK, partner 1000BASE-T FD/HD"),
        PhyReg(0x10, "M88_PHY_SPEC_CTRL", 0x0360, 0xFFFF,
               "vendor control; reset value observed in QEMU 10.2.2"),
        PhyReg(0x11, "M88_PHY_SPEC_STATUS", 0xAC00, 0,
               "1000 Mb/s, full duplex, speed/duplex resolved, link"),
        PhyReg(0x14, "M88_EXT_PHY_SPEC_CTRL", 0x0D60, 0xFFFF,
               "vendor control; reset value observed in QEMU 10.2.2"),
        PhyReg(0x15, "M88_RX_ERR_CNTR", 0x0000, 0,
               "receive error counter (observed present in QEMU 10.2.2)"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class MdicResult:
    """What a completed MDIC transaction leaves: the data and whether it failed."""

    data: int
    error: bool


class Phy:
    """PHY register file with MDIC semantics."""

    def __init__(self) -> None:
        self.regs: dict[int, int] = {}
        self.reset()

    def reset(self) -> None:
        """Every register back to its reset value (power-on only)."""
        self.regs = {n: r.reset for n, r in PHY_REGISTERS.items()}

    def read(self, phy_address: int, number: int) -> MdicResult:
        """An MDIC read of ``number`` at ``phy_address``."""
        if phy_address != PHY_ADDRESS or number not in self.regs:
            return MdicResult(0, error=True)
        return MdicResult(self.regs[number], error=False)

    def write(self, phy_address: int, number: int, data: int) -> MdicResult:
        """An MDIC write; read-only bits keep their value, self-clearing bits clear; a
        read-only or absent register answers ERROR."""
        reg = PHY_REGISTERS.get(number)
        if phy_address != PHY_ADDRESS or reg is None or not reg.wmask:
            # Observed in QEMU 10.2.2: a write to a read-only register (status, ids, link
            # partner, ...) fails like one to an absent register (MDIC.ERROR), value kept.
            return MdicResult(data, error=True)
        # Observed in QEMU 10.2.2: PCTRL.RESET only self-clears; the other registers
        # (advertisement, 1000BASE-T control, the vendor controls) keep what was written.
        value = (self.regs[number] & ~reg.wmask) | (data & reg.wmask)
        if number == 0x00:
            value &= ~(_CTRL_RESET | _CTRL_RESTART_AN)
        self.regs[number] = value & 0xFFFF
        return MdicResult(data, error=False)

"""Registers whose values depend on time or on the host, and how they are compared.

Why: a replay feeds the model only the guest's accesses. Some bits in QEMU's answers
come from things a trace does not record: QEMU's autonegotiation timer (link up, about
half a second after reset or an autonegotiation restart, then LSC), and frames the host
backend delivers. Those bits are not skipped wholesale: each rule names the register,
the bits it sets aside, and why; the other bits of the same read are compared as usual,
and every read a rule relaxed is counted and reported as "masked".

Rule kinds:

* ``mask``: ``(qemu ^ model) & ~ignore == 0``.
* ``at-least``: QEMU's value must be at least the model's; for counters of host frames,
  which can only add to what the guest-visible trace explains.

EERD's DONE and MDIC's READY are not here: QEMU and the model both complete those at
once, so their timing cannot differ. A trace from real hardware would need rules for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["VOLATILE", "VolatileRule", "explain", "rules_for"]

_AUTONEG = (
    "set by QEMU's autonegotiation timer (~500 ms after reset or restart), not by a guest access"
)
_HOST_RX = "set when the host backend delivers a frame, which a trace does not record"


def _mdic_phy_reg(*numbers: int) -> Callable[[int], bool]:
    """Applies to MDIC values whose REGADD field is one of ``numbers``."""
    return lambda value: (value >> 16) & 0x1F in numbers


@dataclass(frozen=True)
class VolatileRule:
    """How one register's time- or host-dependent bits are compared.

    Attributes:
        register: Register name in the model's table.
        ignore: Bits set aside (``mask`` rules), in register (dword) position.
        reason: Why these bits cannot be predicted from the trace.
        kind: ``mask`` or ``at-least``.
        applies: Optional predicate on QEMU's value that selects when the rule applies.
        host_frames: The rule is about frames from a network backend; it applies only
            when the captured QEMU had one (without, such bits are compared strictly).
    """

    register: str
    ignore: int
    reason: str
    kind: Literal["mask", "at-least"] = "mask"
    applies: Callable[[int], bool] | None = None
    host_frames: bool = False


_HOST_COUNTERS = (
    "TPR", "GPRC", "GORCL", "GORCH", "TORL", "TORH", "PRC64", "PRC127", "PRC255", "PRC511",
    "PRC1023", "PRC1522", "BPRC", "MPRC", "MPC", "RNBC",
)  # fmt: skip

VOLATILE: tuple[VolatileRule, ...] = (
    VolatileRule("STATUS", 1 << 1, f"LU (link up) is {_AUTONEG}"),
    VolatileRule("ICR", 1 << 2, f"LSC is {_AUTONEG}"),
    VolatileRule("ICR", (1 << 4) | (1 << 6) | (1 << 7), f"RXDMT0, RXO and RXT0 are {_HOST_RX}",
                 host_frames=True),
    VolatileRule("MDIC", (1 << 2) | (1 << 5), f"PHY status link and AN-complete bits are {_AUTONEG}",
                 applies=_mdic_phy_reg(0x01)),
    VolatileRule("MDIC", 0xFFFF, f"link partner and 1000BASE-T status data are {_AUTONEG}",
                 applies=_mdic_phy_reg(0x05, 0x06, 0x0A)),
    *(VolatileRule(name, 0, f"counts frames that are {_HOST_RX}", kind="at-least", host_frames=True)
      for name in _HOST_COUNTERS),
)  # fmt: skip


def rules_for(
    register: str, qemu_value: int, *, host_frames: bool = True
) -> tuple[VolatileRule, ...]:
    """The rules that apply to a read of ``register`` that returned ``qemu_value`` (dword position).

    ``host_frames``: whether QEMU had a network backend that could deliver frames.
    """
    return tuple(
        r
        for r in VOLATILE
        if r.register == register
        and (r.applies is None or r.applies(qemu_value))
        and (host_frames or not r.host_frames)
    )


def explain(
    rules: tuple[VolatileRule, ...], qemu_value: int, model_value: int, shift: int = 0
) -> tuple[VolatileRule, ...] | None:
    """The rules that account for the difference between the values, or None if they do not.

    ``mask`` rules combine: their ignored bits are OR-ed, and the rules returned are those
    whose bits actually differ. An ``at-least`` rule accounts for any model value not
    above QEMU's. ``shift`` places a narrow read inside its dword.
    """
    for rule in rules:
        if rule.kind == "at-least" and qemu_value >= model_value:
            return (rule,)
    diff = ((qemu_value ^ model_value) << shift) & 0xFFFF_FFFF
    masks = [r for r in rules if r.kind == "mask"]
    ignore = 0
    for rule in masks:
        ignore |= rule.ignore
    if not masks or diff & ~ignore:
        return None
    return tuple(r for r in masks if r.ignore & diff)

"""Volatile rules: how register bits that depend on time or on the host are compared.

Why: a replay feeds the model only the guest's accesses. Some bits in QEMU's answers
come from things a trace does not record (a device's timers, frames a host backend
delivers). Those bits are not skipped wholesale: each rule names the register, the bits
it sets aside, and why; the other bits of the same read are compared as usual, and every
read a rule relaxed is counted and reported as "masked". This module is the generic
machinery; each device's rules are in its pack (the e1000's:
``qtrace/devices/e1000/verify.py``), handed over through its verify support.

Rule kinds:

* ``mask``: ``(qemu ^ model) & ~ignore == 0``.
* ``at-least``: QEMU's value must be at least the model's; for counters of host frames,
  which can only add to what the guest-visible trace explains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["VolatileRule", "explain", "rules_for"]


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


def rules_for(
    rules: tuple[VolatileRule, ...], register: str, qemu_value: int, *, host_frames: bool = True
) -> tuple[VolatileRule, ...]:
    """Those of ``rules`` that apply to a read of ``register`` that returned ``qemu_value``.

    ``qemu_value`` is in dword position. ``host_frames``: whether QEMU had a network
    backend that could deliver frames.
    """
    return tuple(
        r
        for r in rules
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

"""The wording of ``--explain``: bits named by their fields, origins grouped, effects as lines.

Why a module of its own: :mod:`qtrace.verify.explain` decides *what* to say about an access
from the model's recorded provenance; this module only turns bits, origins and effects into
short sentences, the same way for every device (field names come from the model's register
table, origins and effects from :mod:`qtrace.refemu.provenance`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from qtrace.refemu.pci import DMA_RANDOM_WRITE
from qtrace.refemu.provenance import (
    Change,
    Effect,
    LineChange,
    Message,
    Note,
    Origin,
    Stamped,
    Transfer,
)
from qtrace.refemu.regmap import Field, Kind, Reg

__all__ = ["COUNTER_KINDS", "bit_units", "effect_lines", "origin_words", "value_lines"]

COUNTER_KINDS = frozenset({Kind.RC, Kind.RC_LOW, Kind.RC_HIGH})
Lookup = Callable[[str, int], Reg | None]
"""(space, offset) -> the register row there, if the model's tables have one."""


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def bit_units(fields: Sequence[Field], mask: int, whole: str) -> list[tuple[str, int]]:
    """``(name, bits)`` covering ``mask``: each field (clipped to it), then unnamed bits
    one by one; a register without fields is one unit called ``whole``."""
    if not fields:
        return [(whole, mask)] if mask else []
    units = []
    rest = mask
    for f in fields:
        if f.mask & mask:
            units.append((f.name, f.mask & mask))
            rest &= ~f.mask
    units += [(f"bit {bit}", 1 << bit) for bit in _bits(rest)]
    return sorted(units, key=lambda unit: unit[1] & -unit[1])


def _at_reset(origin: Origin) -> bool:
    return origin.seq is None and origin.what == "reset"


def origin_words(origin: Origin) -> str:
    """How an origin reads after what it did: ``at reset (...)`` or ``by seq N (...)``."""
    if _at_reset(origin):
        return f"at reset ({origin.detail})" if origin.detail else "at reset"
    return f"by {origin}"


def value_lines(
    fields: Sequence[Field],
    mask: int,
    value: int,
    origin_of: Callable[[int], Stamped],
    whole: str,
) -> list[str]:
    """Why ``value``'s ``mask`` bits are what they are, one line per origin: the flags it
    set (``LSC``) and the fields it wrote (``ADDR=0x3``). A multi-bit field is the latest
    write's to any of its bits (the others are read-only or kept). Flags that are 0, and
    fields that are 0 as at reset, are not named; a value that is 0 after some change
    says what made it 0 last."""
    items: dict[Origin, list[str]] = {}
    latest: Stamped = (0, Origin(None, "reset"))
    for name, bits in bit_units(fields, mask, whole):
        stamped = max((origin_of(bit) for bit in _bits(bits)), key=lambda s: s[0])
        latest = max(latest, stamped, key=lambda s: s[0])
        origin = stamped[1]
        field_value = (value & bits) >> ((bits & -bits).bit_length() - 1)
        if bits.bit_count() == 1 and name != whole:
            if field_value:
                items.setdefault(origin, []).append(name)
        elif field_value or not _at_reset(origin):
            items.setdefault(origin, []).append(f"{name}={field_value:#x}")
    if not items and not _at_reset(latest[1]):
        return [f"0: {origin_words(latest[1])}"]
    return [f"{', '.join(texts)}: {origin_words(origin)}" for origin, texts in items.items()]


def _is_counting(reg: Reg | None, change: Change) -> bool:
    if reg is None or change.new <= change.old:
        return False
    return reg.kind in COUNTER_KINDS or (reg.kind is Kind.ZERO and not reg.fields)


def change_text(change: Change, name: str, reg: Reg | None) -> str:
    """``ICR: set TXDW, TXQE`` for flags, ``TDH: 0x2 -> 0x3`` for values."""
    diff = change.old ^ change.new
    fields = reg.fields if reg is not None else ()
    flag_mask = sum(f.mask for f in fields if f.mask.bit_count() == 1)
    if fields and not diff & ~flag_mask:
        parts = []
        set_names = [f.name for f in fields if f.mask & diff & change.new]
        cleared = [f.name for f in fields if f.mask & diff & change.old]
        if set_names:
            parts.append("set " + ", ".join(set_names))
        if cleared:
            parts.append("cleared " + ", ".join(cleared))
        return f"{name}: {'; '.join(parts)}"
    return f"{name}: {change.old:#x} -> {change.new:#x}"


def _item(effect: Effect, name: Callable[[str, int], str], lookup: Lookup) -> str:
    if isinstance(effect, Change):
        return change_text(
            effect, name(effect.space, effect.offset), lookup(effect.space, effect.offset)
        )
    if isinstance(effect, Transfer):
        if effect.op == DMA_RANDOM_WRITE:
            return f"DMA write of {effect.size} random bytes at {effect.addr:#x}"
        return f"DMA {effect.op} of {effect.size} bytes at {effect.addr:#x}"
    if isinstance(effect, LineChange):
        return f"INTx {'raised' if effect.level else 'lowered'}: {effect.why}"
    if isinstance(effect, Message):
        return f"message sent: {effect.data:#x} written at {effect.address:#x}"
    assert isinstance(effect, Note)
    return effect.text


def effect_lines(
    effects: Sequence[Effect],
    access: Origin,
    name: Callable[[str, int], str],
    lookup: Lookup,
) -> list[str]:
    """The effects in order; a run of effects with another origin than the access's own
    (work inside it, or a timer) gets that origin as a header, its items indented;
    consecutive counter increments are one ``counted:`` line."""
    lines: list[str] = []
    header: Origin | None = None
    counted: list[str] = []

    def flush() -> None:
        if counted:
            lines.append(("  " if header is not None else "") + "counted: " + ", ".join(counted))
            counted.clear()

    for effect in effects:
        origin = effect.origin
        if origin != access and origin != header:
            flush()
            header = origin
            inside = origin.seq == access.seq and origin.what == access.what
            lines.append(f"{origin.detail}:" if inside else f"{origin}:")
        elif origin == access and header is not None:
            flush()
            header = None
        if isinstance(effect, Change):
            reg = lookup(effect.space, effect.offset)
            if _is_counting(reg, effect):
                gated = " (reads 0)" if reg is not None and reg.kind is Kind.ZERO else ""
                counted.append(
                    f"{name(effect.space, effect.offset)} +{effect.new - effect.old}{gated}"
                )
                continue
        flush()
        lines.append(("  " if header is not None else "") + _item(effect, name, lookup))
    flush()
    return lines

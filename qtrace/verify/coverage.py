"""Bit coverage of the live random sequences: each register bit written 0 and 1, and read back.

Why: a count of random sequences says little about what they exercised (issue 13: 2,000
sequences never wrote the low bits of a ring base, where QEMU and the model disagreed).
Coverage is measured per bit of every register the generator writes: a bit is *covered*
when a write put it to 0 and a later compared read of the register showed the outcome,
and the same for 1. A read that agreed with QEMU is what "read back" means here; the
value need not be the one written (a read-only bit that ignores the write is checked as
much as a stored one).

Some bits the generator holds at a fixed value, because writing them otherwise would
break the run rather than test the device (a transmit DMAing from arbitrary addresses,
a timer QEMU starts that the untimed model lacks). Each such rule is a :class:`HeldBits`
row in the device's pack, with its reason. A bit held in every sequence can never be
covered: the report shows it as *held*, deliberately not covered, apart from bits that
are simply missing. Bits held only in some sequences (another kind of sequence writes
them freely) count as ordinary bits.

Nothing here names a device: the registers, their read-back partners (a mask-clear
register is read back through the mask it clears) and the held bits come from the pack
(:class:`CoverageSpec`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "BitCoverage",
    "CoverSpace",
    "CoverageReport",
    "CoverageSpec",
    "HeldBits",
    "RegisterCoverage",
    "TrackedRegister",
    "group_arrays",
]

CoverSpace = Literal["mmio", "io"]


@dataclass(frozen=True)
class HeldBits:
    """Bits the random generator holds at ``value`` in some or all sequences, and why.

    Attributes:
        register: Register name in the model's table.
        bits: The bits held (register position).
        value: What they are held at (only its ``bits`` matter).
        why: What writing them freely would do to the run.
        sequences: Which sequences hold them: ``"all"``, or the kind of sequence (the
            others write them freely, so they are still covered).
        applies: Only writes whose (32-bit) value satisfies this are held; ``None``: all.
        applies_to: ``applies`` in words, for the report.
    """

    register: str
    bits: int
    value: int
    why: str
    sequences: str = "all"
    applies: Callable[[int], bool] | None = None
    applies_to: str = "every write"

    @property
    def always(self) -> bool:
        """Held in every sequence and for every write: these bits cannot be covered."""
        return self.sequences == "all" and self.applies is None

    def force(self, value: int) -> int:
        """``value`` with the held bits put to their value (if the rule applies to it)."""
        if self.applies is not None and not self.applies(value):
            return value
        return (value & ~self.bits) | (self.value & self.bits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "register": self.register,
            "bits": self.bits,
            "value": self.value & self.bits,
            "sequences": self.sequences,
            "applies_to": self.applies_to,
            "always": self.always,
            "why": self.why,
        }


@dataclass(frozen=True)
class TrackedRegister:
    """A register whose bits are tracked: where it is (``bar``: which BAR, for a device
    with several of a space; ``None``: the space's default) and how wide."""

    name: str
    space: CoverSpace
    offset: int
    width_bits: int = 32
    bar: int | None = None


@dataclass(frozen=True)
class CoverageSpec:
    """What a pack says about coverage of its random sequences.

    Attributes:
        registers: The registers the generator writes.
        read_back: Register whose read shows a write to another (``IMC -> IMS``: a
            write to IMC is read back by reading IMS); a register reads back itself too.
        held: The generator's held bits (:class:`HeldBits`).
        narrow: How a 1- or 2-byte access reaches a 4-byte register. ``widen``: it
            becomes a 4-byte access at the same address (QEMU's memory core for devices
            that implement 4-byte accesses only), so a write replaces the whole register
            of the zero-extended value and a read returns the register's low bytes.
            ``lanes``: the access touches its own bytes only.
    """

    registers: tuple[TrackedRegister, ...]
    read_back: Mapping[str, str] = field(default_factory=dict)
    held: tuple[HeldBits, ...] = ()
    narrow: Literal["widen", "lanes"] = "widen"


@dataclass(frozen=True)
class RegisterCoverage:
    """One register's bits: written 0 / written 1 and read back, held by the generator.

    Attributes:
        name: Register name.
        space: ``mmio`` or ``io``.
        offset: Offset in that space.
        width_bits: Register width.
        zero_read: Bits written 0 and read back.
        one_read: Bits written 1 and read back.
        held: Bits the generator holds in every sequence (deliberately not covered).
        writes: Writes that reached the register.
        reads: Compared reads of the register (or of the register that reads it back).
    """

    name: str
    space: str
    offset: int
    width_bits: int
    zero_read: int
    one_read: int
    held: int
    writes: int
    reads: int

    @property
    def all_bits(self) -> int:
        return (1 << self.width_bits) - 1

    @property
    def covered(self) -> int:
        """Bits written both ways and read back each time."""
        return self.zero_read & self.one_read

    @property
    def missing(self) -> int:
        """Bits not covered that the generator does not hold: what more sequences may reach."""
        return self.all_bits & ~self.covered & ~self.held

    def to_dict(self) -> dict[str, Any]:
        return {
            "register": self.name,
            "space": self.space,
            "offset": self.offset,
            "width_bits": self.width_bits,
            "written_0_read_back": self.zero_read,
            "written_1_read_back": self.one_read,
            "covered": self.covered,
            "held": self.held & ~self.covered,
            "missing": self.missing,
            "bits_covered": self.covered.bit_count(),
            "writes": self.writes,
            "reads": self.reads,
        }


@dataclass(frozen=True)
class CoverageReport:
    """Bit coverage of every tracked register, and the generator's held-bit rules."""

    registers: tuple[RegisterCoverage, ...]
    held: tuple[HeldBits, ...]

    @property
    def bits_total(self) -> int:
        return sum(r.width_bits for r in self.registers)

    @property
    def bits_covered(self) -> int:
        return sum(r.covered.bit_count() for r in self.registers)

    @property
    def bits_held(self) -> int:
        """Bits held in every sequence and therefore not covered."""
        return sum((r.held & ~r.covered).bit_count() for r in self.registers)

    @property
    def bits_missing(self) -> int:
        return sum(r.missing.bit_count() for r in self.registers)

    @property
    def percent(self) -> float:
        """Covered bits as a share of the bits the generator may write both ways."""
        coverable = self.bits_total - self.bits_held
        return 100.0 * self.bits_covered / coverable if coverable else 100.0

    @property
    def complete(self) -> bool:
        """Every bit that is not held was covered."""
        return self.bits_missing == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "bits_total": self.bits_total,
            "bits_covered": self.bits_covered,
            "bits_held": self.bits_held,
            "bits_missing": self.bits_missing,
            "percent": round(self.percent, 2),
            "complete": self.complete,
            "registers": [r.to_dict() for r in self.registers],
            "held_rules": [h.to_dict() for h in self.held],
        }


class BitCoverage:
    """Follows one or many step sequences and accumulates which bits were covered.

    Feed it every write that reached both sides (:meth:`write`) and every read that was
    compared and agreed (:meth:`read`); :meth:`end_sequence` between sequences drops
    writes no read saw. Accesses to offsets no tracked register holds are ignored.
    """

    def __init__(self, spec: CoverageSpec) -> None:
        self.spec = spec
        self._at: dict[tuple[str, int | None, int], TrackedRegister] = {}
        for reg in spec.registers:
            for byte in range(reg.width_bits // 8):
                self._at[(reg.space, reg.bar, reg.offset + byte)] = reg
        readers: dict[str, list[str]] = {reg.name: [reg.name] for reg in spec.registers}
        for writer, reader in spec.read_back.items():
            readers.setdefault(reader, [reader]).append(writer)
        self._readers = readers
        self._zero: dict[str, int] = dict.fromkeys(readers, 0)
        self._one: dict[str, int] = dict.fromkeys(readers, 0)
        self._pending: dict[str, tuple[int, int]] = {}  # name -> (bits written, their value)
        self._writes: dict[str, int] = dict.fromkeys(readers, 0)
        self._reads: dict[str, int] = dict.fromkeys(readers, 0)

    def _place(
        self, space: str, offset: int, size: int, value: int, bar: int | None
    ) -> tuple[str, int, int] | None:
        """(register, bits touched, value in register position) of an access."""
        reg = self._at.get((space, bar, offset))
        if reg is None:
            return None
        all_bits = (1 << reg.width_bits) - 1
        if self.spec.narrow == "widen":
            # The access is widened to the register's width at the same address: a write
            # puts the zero-extended value in the whole register, a read returns its low
            # bytes.
            return reg.name, all_bits, value & ((1 << (8 * size)) - 1)
        shift = 8 * (offset - reg.offset)
        bits = (((1 << (8 * size)) - 1) << shift) & all_bits
        return reg.name, bits, (value << shift) & bits

    def write(self, space: str, offset: int, size: int, value: int, bar: int | None = None) -> None:
        """A write of ``value`` (``size`` bytes at ``offset``) reached both sides."""
        placed = self._place(space, offset, size, value, bar)
        if placed is None:
            return
        name, bits, value = placed
        self._writes[name] += 1
        old_bits, old_value = self._pending.get(name, (0, 0))
        self._pending[name] = (old_bits | bits, (old_value & ~bits) | value)

    def read(self, space: str, offset: int, size: int, bar: int | None = None) -> None:
        """A read (``size`` bytes at ``offset``) was compared with QEMU's and agreed."""
        placed = self._place(space, offset, size, 0, bar)
        if placed is None:
            return
        name = placed[0]
        reg = self._at[(space, bar, offset)]
        if self.spec.narrow == "widen":
            seen = (1 << (8 * size)) - 1
        else:
            seen = placed[1]
        seen &= (1 << reg.width_bits) - 1
        self._reads[name] += 1
        for writer in self._readers.get(name, [name]):
            pending = self._pending.get(writer)
            if pending is None:
                continue
            bits, value = pending
            shown = bits & seen
            self._zero[writer] |= shown & ~value
            self._one[writer] |= shown & value
            if writer != name:
                self._reads[writer] += 1
            left = bits & ~shown
            if left:
                self._pending[writer] = (left, value)
            else:
                del self._pending[writer]

    def end_sequence(self) -> None:
        """Forget writes not yet read back (the next sequence starts after a reset)."""
        self._pending.clear()

    def report(self) -> CoverageReport:
        """The coverage so far."""
        always: dict[str, int] = {}
        for rule in self.spec.held:
            if rule.always:
                always[rule.register] = always.get(rule.register, 0) | rule.bits
        rows = tuple(
            RegisterCoverage(
                name=reg.name,
                space=reg.space,
                offset=reg.offset,
                width_bits=reg.width_bits,
                zero_read=self._zero[reg.name],
                one_read=self._one[reg.name],
                held=always.get(reg.name, 0),
                writes=self._writes[reg.name],
                reads=self._reads[reg.name],
            )
            for reg in self.spec.registers
        )
        return CoverageReport(rows, self.spec.held)


def group_arrays(rows: Iterable[RegisterCoverage]) -> list[tuple[str, list[RegisterCoverage]]]:
    """Rows grouped by name with array indexes dropped (``MTA[0]``..``MTA[127]`` -> ``MTA``),
    in their original order; for compact tables."""
    groups: dict[str, list[RegisterCoverage]] = {}
    for row in rows:
        key = row.name.split("[", 1)[0] + ("[]" if "[" in row.name else "")
        groups.setdefault(key, []).append(row)
    return list(groups.items())

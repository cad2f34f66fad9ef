"""Register maps as data: one row per register, looked up by offset.

A device model describes its registers in a table of :class:`Reg` rows (offset, name,
reset value, access kind, writable mask, named bit fields) instead of an if-chain, so
the same table serves the model, the replay's mismatch decoding and the documentation.
Rows of kind :attr:`Kind.UNIMPL` are the model's honest "not modelled" list: touching
them raises :class:`Unimplemented` rather than quietly reading 0.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from qtrace.devices import Register as PackRegister
from qtrace.errors import Unimplemented

__all__ = [
    "Field",
    "Kind",
    "Reg",
    "RegisterMap",
    "Unimplemented",
    "array",
    "decode_bits",
    "field_mask",
    "rows_from_pack",
]

MASK32 = 0xFFFF_FFFF


class Kind(enum.Enum):
    """How a register behaves when nothing more specific is attached to it."""

    RW = "rw"  # plain storage under ``wmask``
    RO = "ro"  # reads its value, writes are ignored
    WO = "wo"  # writes have effects, reads return 0 (datasheet: undefined)
    RC = "rc"  # statistics counter, cleared when read
    RC_LOW = "rc-low"  # low half of a 64-bit counter; cleared with its high half
    RC_HIGH = "rc-high"  # high half of a 64-bit counter; reading it clears both halves
    ZERO = "zero"  # exists in the datasheet; QEMU reads 0 and ignores writes (observed)
    SPECIAL = "special"  # behaviour lives in the device's hook table
    UNIMPL = "unimpl"  # known to exist, deliberately not modelled


@dataclass(frozen=True)
class Field:
    """A named bit range ``[lo, hi]`` (inclusive) of a register."""

    name: str
    lo: int
    hi: int | None = None

    @property
    def mask(self) -> int:
        hi = self.lo if self.hi is None else self.hi
        return ((1 << (hi - self.lo + 1)) - 1) << self.lo

    def get(self, value: int) -> int:
        return (value & self.mask) >> self.lo


@dataclass(frozen=True)
class Reg:
    """One register (or one element of a register array).

    Attributes:
        offset: Byte offset inside the register window.
        name: Datasheet mnemonic; array elements read ``MTA[5]``.
        reset: Value after power-on and after a software reset.
        kind: Default behaviour, see :class:`Kind`.
        wmask: Bits a write may change (the rest keep their value).
        fields: Named bit fields, for decoding differences.
        note: Where the reset value or behaviour comes from, or why it is not modelled.
    """

    offset: int
    name: str
    reset: int = 0
    kind: Kind = Kind.RW
    wmask: int = MASK32
    fields: tuple[Field, ...] = ()
    note: str = ""


class RegisterMap:
    """Offset-indexed view of a register table."""

    def __init__(self, regs: Iterable[Reg]) -> None:
        self._by_offset: dict[int, Reg] = {}
        self._by_name: dict[str, Reg] = {}
        for reg in regs:
            if reg.offset in self._by_offset:
                raise ValueError(
                    f"two registers at {reg.offset:#x}: "
                    f"{self._by_offset[reg.offset].name}, {reg.name}"
                )
            self._by_offset[reg.offset] = reg
            self._by_name[reg.name] = reg

    def at(self, offset: int) -> Reg | None:
        """The register containing byte ``offset`` (registers are 32-bit, aligned)."""
        return self._by_offset.get(offset & ~3)

    def named(self, name: str) -> Reg:
        """The register called ``name``; ``KeyError`` if the table has none."""
        return self._by_name[name]

    def name_at(self, offset: int) -> str:
        """A printable name for ``offset``, even where the table has no row."""
        reg = self.at(offset)
        return reg.name if reg is not None else f"reg_{offset & ~3:#06x}"

    def __iter__(self) -> Iterator[Reg]:
        return iter(self._by_offset.values())

    def __len__(self) -> int:
        return len(self._by_offset)


def array(
    base: int,
    name: str,
    count: int,
    *,
    kind: Kind = Kind.RW,
    reset: int = 0,
    wmask: int = MASK32,
    fields: tuple[Field, ...] = (),
    note: str = "",
) -> list[Reg]:
    """Rows for a register array ``name[0..count-1]`` of 32-bit registers at ``base``."""
    return [
        Reg(base + 4 * i, f"{name}[{i}]", reset, kind, wmask, fields, note) for i in range(count)
    ]


def rows_from_pack(registers: Iterable[PackRegister], device: str) -> RegisterMap:
    """A model's rows from its pack's register map (``registers.toml``): one definition
    of names, fields, access kinds, reset values and notes for reports and the model.

    Raises:
        ValueError: A register has no ``access`` kind (the model must say how it treats
            every register the map lists).
    """
    rows = []
    for register in registers:
        if register.access is None:
            raise ValueError(f"{device} register {register.name} has no access kind")
        rows.append(
            Reg(
                offset=register.offset,
                name=register.name,
                reset=register.reset,
                kind=Kind(register.access),
                wmask=MASK32 if register.wmask is None else register.wmask,
                fields=tuple(Field(f.name, f.lo, f.hi) for f in register.fields),
                note=register.note,
            )
        )
    return RegisterMap(rows)


def field_mask(reg: Reg, name: str) -> int:
    """The mask of ``reg``'s field ``name``; ``KeyError`` if it has none."""
    for f in reg.fields:
        if f.name == name:
            return f.mask
    raise KeyError(f"{reg.name} has no field {name}")


def decode_bits(fields: Iterable[Field], expected: int, actual: int) -> list[str]:
    """Describe how ``actual`` differs from ``expected``, field by field.

    Bits covered by no field are reported as ``bit N``.

    Args:
        fields: The register's named fields.
        expected: The reference value (QEMU's, in a replay).
        actual: The compared value (the model's).

    Returns:
        One ``"NAME: expected -> actual"`` string per differing field or stray bit.
    """
    diff = (expected ^ actual) & MASK32
    out: list[str] = []
    for f in fields:
        if diff & f.mask:
            out.append(f"{f.name}: {f.get(expected):#x} -> {f.get(actual):#x}")
            diff &= ~f.mask
    for bit in range(32):
        if diff & (1 << bit):
            out.append(f"bit {bit}: {(expected >> bit) & 1} -> {(actual >> bit) & 1}")
    return out

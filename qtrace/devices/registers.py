"""Register maps: a device's registers and bit fields, and decoding an access with them.

A map is data: a pack's ``registers.toml`` (format ``qtrace-registers/1``, described in
``qtrace/devices/README.md``), plus ``pci-config.toml`` beside this module for the
configuration header every PCI function has. The same map serves reports (names, fields),
``show``, ``diff`` and a device's reference model (reset values, access kinds, write masks),
so a bit has one name everywhere. An offset no map lists decodes as unknown; nothing is
guessed.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.abc import Traversable
from typing import Any

from qtrace.errors import ReportError

__all__ = [
    "ACCESS_KINDS",
    "BitField",
    "Register",
    "RegisterMap",
    "FieldValue",
    "Decoded",
    "REGISTERS_FORMAT",
    "parse_register_map",
    "read_toml",
]

REGISTERS_FORMAT = "qtrace-registers/1"

ACCESS_KINDS = ("rw", "ro", "wo", "rc", "rc-low", "rc-high", "zero", "special", "unimpl")
"""How a register behaves, for a device's reference model (see ``qtrace/devices/README.md``):
plain storage under its write mask, read-only, write-only, cleared on read (and the two halves
of a 64-bit counter), reads 0 in QEMU, behaviour in the model's code, known but not modelled."""


@dataclass(frozen=True)
class BitField:
    """Bits ``hi..lo`` of a register."""

    name: str
    hi: int
    lo: int
    desc: str = ""
    values: Mapping[int, str] = field(default_factory=dict)
    masked: bool = False  # show (value & mask) rather than the shifted field value
    always: bool = False  # show in summaries even when zero

    @property
    def mask(self) -> int:
        return ((1 << (self.hi - self.lo + 1)) - 1) << self.lo

    @property
    def bits(self) -> str:
        return str(self.lo) if self.hi == self.lo else f"{self.hi}:{self.lo}"

    def extract(self, value: int) -> int:
        return (value & self.mask) if self.masked else (value & self.mask) >> self.lo


@dataclass(frozen=True)
class Register:
    """One register: offset in its BAR (or config space), size in bytes, fields.

    ``access``, ``reset``, ``wmask`` and ``note`` are what a reference model needs (``access``
    is ``None`` where the map only names the register); reports use the rest.
    """

    name: str
    offset: int
    size: int = 4
    desc: str = ""
    fields: tuple[BitField, ...] = ()
    spaces: tuple[str, ...] = ("mmio",)
    access: str | None = None
    reset: int = 0
    wmask: int | None = None
    note: str = ""


@dataclass(frozen=True)
class FieldValue:
    """A field of a decoded value."""

    name: str
    bits: str
    value: int
    width: int
    desc: str = ""
    meaning: str | None = None
    always: bool = False

    def __str__(self) -> str:
        if self.width == 1:
            return self.name
        shown = f"{self.name}={self.value:#x}" if self.value > 9 else f"{self.name}={self.value}"
        return f"{shown} ({self.meaning})" if self.meaning else shown


@dataclass(frozen=True)
class Decoded:
    """What an access touched and what its value means."""

    name: str
    known: bool
    desc: str = ""
    value: int | None = None
    fields: tuple[FieldValue, ...] = ()
    other_bits: int = 0  # set bits that no field names
    parts: tuple[Decoded, ...] = ()  # for an access spanning several registers

    def field(self, name: str) -> FieldValue:
        """The decoded field ``name``; raises ``KeyError`` if the register has none."""
        for value in self.fields:
            if value.name == name:
                return value
        raise KeyError(name)

    def summary(self) -> str:
        """One line: set flags, multi-bit fields, unnamed bits; parts joined by ``; ``."""
        if self.parts:
            return "; ".join(p._part_summary() for p in self.parts)
        shown = [str(f) for f in self.fields if f.value or f.always or (f.width > 1 and f.meaning)]
        if self.other_bits:
            shown.append(f"other bits {self.other_bits:#x}")
        return " ".join(shown)

    def _part_summary(self) -> str:
        if len(self.fields) == 1 and self.fields[0].name == self.name:
            return str(self.fields[0])
        if self.fields:
            return f"{self.name}: {self.summary()}"
        return f"{self.name}={self.value:#x}" if self.value is not None else self.name


class RegisterMap:
    """The registers of one device (or of PCI config space), by space and offset."""

    def __init__(self, device: str, registers: list[Register], reference: str = "") -> None:
        self.device = device
        self.reference = reference
        self._by_space: dict[str, dict[int, Register]] = {}
        for register in registers:
            for space in register.spaces:
                self._by_space.setdefault(space, {})[register.offset] = register
        self._sorted = {
            space: sorted(regs.values(), key=lambda r: r.offset)
            for space, regs in self._by_space.items()
        }

    def __repr__(self) -> str:
        return (
            f"RegisterMap({self.device!r}, "
            f"{sum(len(r) for r in self._by_space.values())} registers)"
        )

    def registers(self, space: str) -> list[Register]:
        """All registers of ``space`` in offset order."""
        return list(self._sorted.get(space, []))

    def find(self, space: str, offset: int) -> Register | None:
        """The register starting exactly at ``offset``."""
        return self._by_space.get(space, {}).get(offset)

    def containing(self, space: str, offset: int) -> Register | None:
        """The register whose bytes include ``offset``."""
        for register in self._sorted.get(space, []):
            if register.offset <= offset < register.offset + register.size:
                return register
        return None

    def decode(self, space: str, offset: int, size: int, value: int) -> Decoded:
        """Name the register(s) an access of ``size`` bytes at ``offset`` touches, decode
        ``value``."""
        register = self.find(space, offset)
        if register is None:
            outer = self.containing(space, offset)
            if outer is not None:
                return Decoded(f"{outer.name}+{offset - outer.offset:#x}", True, outer.desc)
            return Decoded(f"unknown@{offset:#x}", False)
        if register.size >= size:
            return _decode_one(register, value & ((1 << (8 * size)) - 1))
        parts: list[Decoded] = []
        position = offset
        while position < offset + size:
            inner = self.find(space, position)
            shift = 8 * (position - offset)
            if inner is None:
                parts.append(Decoded(f"unknown@{position:#x}", False))
                position += 1
                continue
            width = min(inner.size, offset + size - position)
            parts.append(_decode_one(inner, (value >> shift) & ((1 << (8 * width)) - 1)))
            position += inner.size
        name = (
            "+".join(p.name for p in parts)
            if len(parts) <= 2
            else f"{parts[0].name}..{parts[-1].name}"
        )
        return Decoded(name, all(p.known for p in parts), parts=tuple(parts))


def _decode_one(register: Register, value: int) -> Decoded:
    fields = []
    covered = 0
    for bit_field in register.fields:
        raw = bit_field.extract(value)
        meaning = bit_field.values.get((value & bit_field.mask) >> bit_field.lo)
        fields.append(
            FieldValue(
                bit_field.name,
                bit_field.bits,
                raw,
                bit_field.hi - bit_field.lo + 1,
                bit_field.desc,
                meaning,
                bit_field.always,
            )
        )
        covered |= bit_field.mask
    other = value & ~covered if register.fields else 0
    return Decoded(register.name, True, register.desc, value, tuple(fields), other)


# --- loading -------------------------------------------------------------------------------


def _parse_bits(text: str, where: str) -> tuple[int, int]:
    try:
        if ":" in text:
            hi, lo = (int(t) for t in text.split(":"))
        else:
            hi = lo = int(text)
    except ValueError as exc:
        raise ReportError(f"{where}: bits {text!r} is not 'hi:lo' or 'bit'") from exc
    if not 0 <= lo <= hi < 64:
        raise ReportError(f"{where}: bits {text!r} out of range")
    return hi, lo


def _fields(raw: list[dict[str, Any]], where: str) -> tuple[BitField, ...]:
    out = []
    for item in raw:
        hi, lo = _parse_bits(str(item["bits"]), f"{where}.{item.get('name')}")
        values = {int(k, 0): str(v) for k, v in item.get("values", {}).items()}
        out.append(
            BitField(
                str(item["name"]),
                hi,
                lo,
                str(item.get("desc", "")),
                values,
                masked=item.get("format") == "masked",
                always=bool(item.get("always", False)),
            )
        )
    return tuple(out)


def _model_keys(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """The reference-model keys of a register entry (``access``, ``reset``, ``wmask``, ``note``)."""
    access = raw.get("access")
    if access is not None and access not in ACCESS_KINDS:
        raise ReportError(f"{where}: access {access!r} is not one of {', '.join(ACCESS_KINDS)}")
    wmask = raw.get("wmask")
    return {
        "access": None if access is None else str(access),
        "reset": int(raw.get("reset", 0)),
        "wmask": None if wmask is None else int(wmask),
        "note": str(raw.get("note", "")),
    }


def _registers(data: dict[str, Any], name: str) -> list[Register]:
    default_spaces = tuple(data.get("spaces", ["mmio"]))
    raw_regs = data.get("register", [])
    by_name = {str(r["name"]): r for r in raw_regs}
    registers: list[Register] = []
    try:
        for raw in raw_regs:
            source = by_name[raw["fields_from"]] if "fields_from" in raw else raw
            where = f"{name}.{raw['name']}"
            registers.append(
                Register(
                    name=str(raw["name"]),
                    offset=int(raw["offset"]),
                    size=int(raw.get("size", 4)),
                    desc=str(raw.get("desc", "")),
                    fields=_fields(source.get("fields", []), where),
                    spaces=tuple(raw.get("spaces", default_spaces)),
                    **_model_keys(raw, where),
                )
            )
        for raw in data.get("array", []):
            where = f"{name}.{raw['name']}"
            fields = _fields(raw.get("fields", []), where)
            pattern = str(raw["name"]) if "{n}" in str(raw["name"]) else str(raw["name"]) + "[{n}]"
            model = _model_keys(raw, where)
            for n in range(int(raw["count"])):
                registers.append(
                    Register(
                        name=pattern.format(n=n),
                        offset=int(raw["offset"]) + n * int(raw["stride"]),
                        size=int(raw.get("size", 4)),
                        desc=str(raw.get("desc", "")),
                        fields=fields,
                        spaces=tuple(raw.get("spaces", default_spaces)),
                        **model,
                    )
                )
    except KeyError as exc:
        raise ReportError(f"register map {name}: an entry lacks {exc}") from exc
    return registers


def read_toml(path: Traversable, what: str) -> dict[str, Any]:
    """Parse one of qtrace's data files, as a :class:`ReportError` naming it when it is bad."""
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ReportError(f"cannot read {what} {path}: {exc}") from exc


def parse_register_map(
    path: Traversable, device: str, base_map: Callable[[str], RegisterMap]
) -> RegisterMap:
    """Load the map in ``path`` for ``device``, following its ``base`` through ``base_map``.

    A map may say ``base = "<pack>"``: it takes that pack's registers, less the names listed
    in ``base_except``; a register it gives itself replaces the base one at the same offset.
    """
    data = read_toml(path, "register map")
    if data.get("format") != REGISTERS_FORMAT:
        raise ReportError(f"register map {path} must declare format = {REGISTERS_FORMAT!r}")
    registers = _registers(data, device)
    if "base" in data:
        base = base_map(str(data["base"]))
        own = {(space, r.offset) for r in registers for space in r.spaces}
        skip = set(data.get("base_except", []))
        inherited = [
            r
            for space in ("mmio", "pio", "pci-config")
            for r in base.registers(space)
            if r.name not in skip and (space, r.offset) not in own and space in r.spaces
        ]
        # A register in several spaces is listed once per space above: keep one copy.
        unique = {(r.name, r.offset): r for r in inherited}
        registers = list(unique.values()) + registers
    return RegisterMap(device, registers, str(data.get("reference", "")))

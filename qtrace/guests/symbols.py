"""The guest's own symbols: which guest function made an access.

Under KVM each exit record carries ``guest_pc``, the guest's RIP when KVM returned to QEMU
(``gdbscripts/qtrace_gdb/kvm_exit.py``). KVM leaves it at the instruction for an access it
could not complete (a port ``in``, an MMIO read: the instruction runs again, with QEMU's
value, when the vCPU re-enters) and after the instruction for a write it completed before
exiting (a port ``out``, an MMIO write). Under TCG each access carries the ``guest_pc`` of
its own instruction (``gdbscripts/qtrace_gdb/tcg_pc.py``). This module maps such a PC to
``function+0xoffset`` with the guest's symbol table: the probe's ELF (``guest/probe.elf`` in
the run directory, read here without binutils), the linux guest's driver module
(:mod:`qtrace.guests.linux_symbols`) or a Linux ``System.map``.

Pure: it reads the symbol file and nothing else.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from pathlib import Path

from qtrace.trace.codec import Trace
from qtrace.trace.schema import Exit

__all__ = [
    "GuestSymbol",
    "GuestSymbols",
    "GuestPlace",
    "PROBE_ELF",
    "guest_symbols",
    "exit_place",
    "access_places",
]

PROBE_ELF = Path("guest") / "probe.elf"
"""Where a probe capture keeps the guest it ran (relative to the run directory)."""

_SHT_SYMTAB = 2
_STT_NOTYPE, _STT_FUNC = 0, 2
_SHN_UNDEF = 0


@dataclass(frozen=True)
class GuestSymbol:
    """A guest function (or code label): its name, start address and size (0: unknown)."""

    name: str
    start: int
    size: int = 0
    module: str | None = None  # a Linux module's file name (``e1000.ko``)


@dataclass(frozen=True)
class GuestPlace:
    """Where in the guest an exit happened: the PC, its symbol (``function+0xoffset``, the
    offset of ``pc`` itself) and whether the PC is after the access's instruction."""

    pc: int
    symbol: str | None
    function: str | None
    after_instruction: bool

    def __str__(self) -> str:
        where = self.symbol or f"0x{self.pc:x}"
        return f"{where} (after the instruction)" if self.after_instruction else where


class GuestSymbols:
    """A sorted table of guest code symbols; :meth:`lookup` finds the one holding a PC."""

    def __init__(self, symbols: list[GuestSymbol], source: str = "") -> None:
        self.symbols = sorted(symbols, key=lambda s: (s.start, -s.size, s.name))
        self._starts = [s.start for s in self.symbols]
        self.source = source

    def __len__(self) -> int:
        return len(self.symbols)

    @classmethod
    def from_elf(cls, path: Path) -> GuestSymbols:
        """The function and code-label symbols of an ELF file (32- or 64-bit, little-endian).

        Raises:
            ValueError: not such an ELF file, or one without a symbol table.
        """
        data = path.read_bytes()
        return cls(_elf_symbols(data), str(path))

    @classmethod
    def from_system_map(cls, text: str, source: str = "System.map") -> GuestSymbols:
        """A Linux ``System.map`` (``address type name`` lines; text symbols only)."""
        symbols = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 3 or parts[1] not in ("T", "t", "W", "w"):
                continue
            try:
                symbols.append(GuestSymbol(parts[2], int(parts[0], 16)))
            except ValueError:
                continue
        return cls(symbols, source)

    def lookup(self, pc: int) -> GuestSymbol | None:
        """The sized symbol covering ``pc``; else the nearest unsized one below it (a label
        of assembly code runs to the next symbol)."""
        index = bisect.bisect_right(self._starts, pc) - 1
        unsized = None
        for symbol in reversed(self.symbols[max(0, index - 64) : index + 1]):
            if symbol.size and pc < symbol.start + symbol.size:
                return symbol
            if not symbol.size and unsized is None:
                unsized = symbol
        return unsized

    def describe(self, pc: int, after_instruction: bool = False) -> GuestPlace:
        """``pc`` as a :class:`GuestPlace`. For a PC after the instruction, the function is
        looked up at ``pc - 1`` (a write that is a function's last instruction)."""
        symbol = self.lookup(pc - 1 if after_instruction else pc)
        if symbol is None:
            return GuestPlace(pc, None, None, after_instruction)
        where = f"{symbol.name}+0x{pc - symbol.start:x}"
        if symbol.module:
            where += f" ({symbol.module})"
        return GuestPlace(pc, where, symbol.name, after_instruction)


@dataclass(frozen=True)
class ElfSection:
    name: str
    kind: int
    flags: int
    offset: int
    size: int


def elf_sections_and_symbols(
    data: bytes,
) -> tuple[list[ElfSection], list[tuple[GuestSymbol, int]]]:
    """An ELF file's sections and its code symbols with their section index (a relocatable
    object such as a kernel module has section-relative values).

    Raises:
        ValueError: not a little-endian ELF file.
    """
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    is64, little = data[4] == 2, data[5] == 1
    if not little:
        raise ValueError("a big-endian ELF file")
    if is64:
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    else:
        (shoff,) = struct.unpack_from("<I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    raw = []
    for index in range(shnum):
        at = shoff + index * shentsize
        fmt = "<IIQQQQIIQQ" if is64 else "<IIIIIIIIII"
        name_at, kind, flags, _, offset, size, link, _, _, entsize = struct.unpack_from(
            fmt, data, at
        )
        raw.append((name_at, kind, flags, offset, size, link, entsize))
    names = data[raw[shstrndx][3] : raw[shstrndx][3] + raw[shstrndx][4]] if raw else b""
    sections = [ElfSection(_cstring(names, r[0]), r[1], r[2], r[3], r[4]) for r in raw]
    symbols: list[tuple[GuestSymbol, int]] = []
    for _, kind, _, offset, size, link, entsize in raw:
        if kind != _SHT_SYMTAB or entsize == 0:
            continue
        strings = data[raw[link][3] : raw[link][3] + raw[link][4]]
        for at in range(offset, offset + size, entsize):
            if is64:
                name_at, info, _, shndx, value, sym_size = struct.unpack_from("<IBBHQQ", data, at)
            else:
                name_at, value, sym_size, info, _, shndx = struct.unpack_from("<IIIBBH", data, at)
            if info & 0xF not in (_STT_FUNC, _STT_NOTYPE) or shndx == _SHN_UNDEF:
                continue
            name = _cstring(strings, name_at)
            if not name or name.startswith(".") or (info & 0xF == _STT_NOTYPE and not value):
                continue
            symbols.append((GuestSymbol(name, value, sym_size), shndx))
    return sections, symbols


def _cstring(table: bytes, at: int) -> str:
    end = table.find(b"\0", at)
    return table[at : end if end >= 0 else len(table)].decode("utf-8", errors="replace")


def _elf_symbols(data: bytes) -> list[GuestSymbol]:
    _, found = elf_sections_and_symbols(data)
    if not found:
        raise ValueError("the ELF file has no symbol table (stripped?)")
    return [symbol for symbol, _ in found]


def guest_symbols(run_dir: Path, trace: Trace | None = None) -> GuestSymbols | None:
    """The symbols of the guest a capture ran: the probe's ELF in its run directory; for the
    linux guest (given its ``trace``) the driver module's functions where its accesses show
    it was loaded (:mod:`qtrace.guests.linux_symbols`); ``None`` when neither is there."""
    path = run_dir / PROBE_ELF
    if path.exists():
        try:
            return GuestSymbols.from_elf(path)
        except (OSError, ValueError, struct.error):
            return None
    if trace is None:
        return None
    from qtrace.guests.linux_symbols import linux_driver_symbols  # it builds on this module

    pcs = {a.guest_pc for a in trace.accesses if a.guest_pc is not None}
    pcs |= {e.guest_pc for e in trace.exits if e.guest_pc is not None}
    return linux_driver_symbols(run_dir, pcs)


def _after(record: Exit) -> bool:
    """Is the RIP past the instruction (KVM completed a write before exiting)?"""
    return bool(record.is_write) or record.direction == "out"


def exit_place(record: Exit, symbols: GuestSymbols | None) -> GuestPlace | None:
    """Where the guest was when this exit happened (``None`` without ``guest_pc``)."""
    if record.guest_pc is None:
        return None
    if symbols is None:
        return GuestPlace(record.guest_pc, None, None, _after(record))
    return symbols.describe(record.guest_pc, _after(record))


def access_places(trace: Trace, symbols: GuestSymbols | None) -> dict[int, GuestPlace]:
    """The guest place of each access, by the access's ``seq``: under TCG its own
    ``guest_pc`` (the instruction), under KVM its exit's. A coalesced write has none: KVM
    buffered it without exiting, so no guest registers were ever handed to QEMU for it."""
    exits = {r.seq: r for r in trace.exits}
    places: dict[int, GuestPlace] = {}
    for access in trace.accesses:
        if access.guest_pc is not None:  # TCG: the instruction itself
            places[access.seq] = (
                symbols.describe(access.guest_pc)
                if symbols is not None
                else GuestPlace(access.guest_pc, None, None, False)
            )
            continue
        record = exits.get(access.exit_seq) if access.exit_seq is not None else None
        if record is None:
            continue
        place = exit_place(record, symbols)
        if place is not None:
            places[access.seq] = place
    return places

"""The guest's own symbols: which guest function made an access.

Under KVM each exit record carries ``guest_pc``, the guest's RIP when KVM returned to QEMU
(``gdbscripts/qtrace_gdb/kvm_exit.py``). KVM leaves it at the instruction for an access it
could not complete (a port ``in``, an MMIO read: the instruction runs again, with QEMU's
value, when the vCPU re-enters) and after the instruction for a write it completed before
exiting (a port ``out``, an MMIO write). This module maps such a PC to ``function+0xoffset``
with the guest's symbol table: the probe's ELF (``guest/probe.elf`` in the run directory,
read here without binutils) or a Linux ``System.map``.

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
        return GuestPlace(
            pc, f"{symbol.name}+0x{pc - symbol.start:x}", symbol.name, after_instruction
        )


def _elf_symbols(data: bytes) -> list[GuestSymbol]:
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    is64, little = data[4] == 2, data[5] == 1
    if not little:
        raise ValueError("a big-endian ELF file")
    if is64:
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    else:
        (shoff,) = struct.unpack_from("<I", data, 0x20)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x2E)
    sections = []
    for index in range(shnum):
        at = shoff + index * shentsize
        if is64:
            _, kind, _, _, offset, size, link, _, _, entsize = struct.unpack_from(
                "<IIQQQQIIQQ", data, at
            )
        else:
            _, kind, _, _, offset, size, link, _, _, entsize = struct.unpack_from(
                "<IIIIIIIIII", data, at
            )
        sections.append((kind, offset, size, link, entsize))
    symbols: list[GuestSymbol] = []
    for kind, offset, size, link, entsize in sections:
        if kind != _SHT_SYMTAB or entsize == 0:
            continue
        _, str_offset, str_size, _, _ = sections[link]
        strings = data[str_offset : str_offset + str_size]
        for at in range(offset, offset + size, entsize):
            if is64:
                name_at, info, _, shndx, value, sym_size = struct.unpack_from("<IBBHQQ", data, at)
            else:
                name_at, value, sym_size, info, _, shndx = struct.unpack_from("<IIIBBH", data, at)
            if info & 0xF not in (_STT_FUNC, _STT_NOTYPE) or shndx == _SHN_UNDEF:
                continue
            end = strings.find(b"\0", name_at)
            name = strings[name_at:end].decode("utf-8", errors="replace")
            if not name or name.startswith(".") or (info & 0xF == _STT_NOTYPE and not value):
                continue
            symbols.append(GuestSymbol(name, value, sym_size))
    if not symbols:
        raise ValueError("the ELF file has no symbol table (stripped?)")
    return symbols


def guest_symbols(run_dir: Path) -> GuestSymbols | None:
    """The symbols of the guest a capture ran: the probe's ELF in its run directory, or
    ``None`` when it has none (a Linux or firmware guest, or the file was removed)."""
    path = run_dir / PROBE_ELF
    if not path.exists():
        return None
    try:
        return GuestSymbols.from_elf(path)
    except (OSError, ValueError, struct.error):
        return None


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
    """The guest place of each access that came through an exit with ``guest_pc``, by the
    access's ``seq``. A coalesced write has none: KVM buffered it without exiting, so no
    guest registers were ever handed to QEMU for it."""
    exits = {r.seq: r for r in trace.exits}
    places: dict[int, GuestPlace] = {}
    for access in trace.accesses:
        record = exits.get(access.exit_seq) if access.exit_seq is not None else None
        if record is None:
            continue
        place = exit_place(record, symbols)
        if place is not None:
            places[access.seq] = place
    return places

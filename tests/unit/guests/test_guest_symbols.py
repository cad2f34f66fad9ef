"""Guest symbols (qtrace.guests.symbols): an exit's guest_pc named from the guest's ELF."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from qtrace.guests.symbols import GuestSymbols, access_places, exit_place, guest_symbols
from qtrace.trace import Access, Exit, Header, Trace


def _elf32(path: Path, symbols: list[tuple[str, int, int, int]]) -> None:
    """A minimal little-endian ELF32 with a .symtab of (name, value, size, type)."""
    strtab = b"\0"
    entries = [b"\0" * 16]
    for name, value, size, kind in symbols:
        entries.append(struct.pack("<IIIBBH", len(strtab), value, size, kind, 0, 1))
        strtab += name.encode() + b"\0"
    symtab = b"".join(entries)
    header_size, section_size = 52, 40
    symtab_at = header_size
    strtab_at = symtab_at + len(symtab)
    sections_at = strtab_at + len(strtab)
    sections = b"\0" * section_size  # SHN_UNDEF
    sections += struct.pack("<IIIIIIIIII", 0, 2, 0, 0, symtab_at, len(symtab), 2, 0, 4, 16)
    sections += struct.pack("<IIIIIIIIII", 0, 3, 0, 0, strtab_at, len(strtab), 0, 0, 1, 0)
    ident = b"\x7fELF" + bytes([1, 1, 1]) + b"\0" * 9
    header = ident + struct.pack(
        "<HHIIIIIHHHHHH", 2, 3, 1, 0x100000, 0, sections_at, 0, header_size, 0, 0,
        section_size, 3, 0,
    )  # fmt: skip
    path.write_bytes(header + symtab + strtab + sections)


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    (tmp_path / "guest").mkdir()
    _elf32(
        tmp_path / "guest" / "probe.elf",
        [("cfg_read_raw", 0x108DE0, 0x220, 2), ("bar_read32", 0x109000, 0x40, 2),
         ("_start", 0x100000, 0, 0), ("data_thing", 0x110000, 4, 1)],
    )  # fmt: skip
    return tmp_path


def test_a_pc_is_named_by_the_function_that_holds_it(probe: Path) -> None:
    symbols = guest_symbols(probe)
    assert symbols is not None and len(symbols) == 3  # the data object is left out
    assert str(symbols.describe(0x108E81)) == "cfg_read_raw+0xa1"
    assert symbols.describe(0x100010).function == "_start"  # an unsized label runs on
    assert symbols.describe(0x109040).function == "_start"  # past bar_read32's end
    assert symbols.describe(0x0FFFFF).symbol is None


def test_a_write_is_named_from_the_byte_before_the_pc(probe: Path) -> None:
    """After a port out KVM leaves RIP on the next instruction, maybe another function's."""
    symbols = guest_symbols(probe)
    out = Exit(1, "KVM_EXIT_IO", 0, port=0xCF8, size=4, direction="out", guest_pc=0x109000)
    place = exit_place(out, symbols)
    assert place is not None and place.function == "cfg_read_raw" and place.after_instruction
    assert str(place) == "cfg_read_raw+0x220 (after the instruction)"


def test_each_access_gets_the_place_of_its_exit(probe: Path) -> None:
    trace = Trace(header=Header(device="e1000", qemu_version="10.2.2", accel="kvm"))
    trace.records = [
        Exit(1, "KVM_EXIT_MMIO", 0, phys_addr=0xFEBE0008, len=4, is_write=False,
             guest_pc=0x109010),
        Access(2, "read", "mmio", 8, 4, 0x80080783, exit_seq=1),
        Access(3, "write", "mmio", 0x14, 4, 1, coalesced=True),
    ]  # fmt: skip
    places = access_places(trace, guest_symbols(probe))
    assert {seq: str(p) for seq, p in places.items()} == {2: "bar_read32+0x10"}


def test_system_map_text_symbols() -> None:
    symbols = GuestSymbols.from_system_map(
        "c1000000 T _text\nc1234500 t e1000_read_phy_reg\nc1300000 D some_data\n"
    )
    assert str(symbols.describe(0xC123453A)) == "e1000_read_phy_reg+0x3a"
    assert guest_symbols(Path("/nonexistent")) is None


def test_under_tcg_the_access_carries_the_instruction_itself(probe: Path) -> None:
    trace = Trace(header=Header(device="e1000", qemu_version="10.2.2", accel="tcg"))
    trace.records = [Access(1, "read", "mmio", 8, 4, 0x80080783, guest_pc=0x10900A)]
    place = access_places(trace, guest_symbols(probe))[1]
    assert str(place) == "bar_read32+0xa" and not place.after_instruction

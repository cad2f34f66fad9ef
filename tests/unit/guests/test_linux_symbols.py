"""The linux guest's driver symbols (qtrace.guests.linux_symbols): the module's load address
found from the accesses' guest PCs, its functions named from its own symbol table."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

from qtrace.guests.linux_symbols import initramfs_files, linux_driver_symbols, module_base
from qtrace.guests.symbols import guest_symbols
from qtrace.trace import Access, Header, Trace

# .text of a made-up driver: two functions, each with one MMIO load or store
#   read_reg:  nop; nop; mov (%rdi),%eax; ret      (8b 07 at +2)
#   write_reg: nop; mov %esi,0x8(%r8); ret          (41 89 70 08 at +0x11)
TEXT = b"\x90\x90\x8b\x07\xc3" + b"\xcc" * 11 + b"\x90\x41\x89\x70\x08\xc3" + b"\xcc" * 10
SYMBOLS = [("read_reg", 0x0, 5), ("write_reg", 0x10, 6)]
BASE = 0xFFFFFFFFC03DF000


def _module(path: Path) -> bytes:
    """A relocatable ELF64 with .text and a .symtab (section 1 is .text)."""
    shstr = b"\0.text\0.symtab\0.strtab\0.shstrtab\0"
    strtab = b"\0" + b"".join(name.encode() + b"\0" for name, _, _ in SYMBOLS)
    symtab, at = b"\0" * 24, 1
    for name, value, size in SYMBOLS:
        symtab += struct.pack("<IBBHQQ", at, 0x12, 0, 1, value, size)
        at += len(name) + 1
    body = TEXT + symtab + strtab + shstr
    offsets = [64, 64 + len(TEXT), 64 + len(TEXT) + len(symtab)]
    offsets.append(offsets[2] + len(strtab))
    sections_at = 64 + len(body)
    sh = b"\0" * 64
    sh += struct.pack("<IIQQQQIIQQ", 1, 1, 0x6, 0, offsets[0], len(TEXT), 0, 0, 16, 0)
    sh += struct.pack("<IIQQQQIIQQ", 7, 2, 0, 0, offsets[1], len(symtab), 3, 1, 8, 24)
    sh += struct.pack("<IIQQQQIIQQ", 15, 3, 0, 0, offsets[2], len(strtab), 0, 0, 1, 0)
    sh += struct.pack("<IIQQQQIIQQ", 23, 3, 0, 0, offsets[3], len(shstr), 0, 0, 1, 0)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 1, 0x3E, 1, 0, 0, sections_at, 0, 64, 0, 0, 64, 5, 4
    )
    return header + body + sh


def _cpio(files: dict[str, bytes]) -> bytes:
    out = b""
    for name, data in [*files.items(), ("TRAILER!!!", b"")]:
        raw = name.encode() + b"\0"
        fields = [0, 0o100644, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        head = b"070701" + b"".join(b"%08x" % f for f in fields)
        out += head + raw
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return out


def _run_dir(tmp_path: Path) -> Path:
    (tmp_path / "linux").mkdir()
    files = {"driver.ko": _module(tmp_path), "driver.name": b"e1000\n", "init": b"#!/bin/sh\n"}
    (tmp_path / "linux" / "initramfs.cpio.gz").write_bytes(gzip.compress(_cpio(files)))
    return tmp_path


def test_the_initramfs_files_are_read(tmp_path: Path) -> None:
    files = initramfs_files(_run_dir(tmp_path) / "linux" / "initramfs.cpio.gz")
    assert set(files) == {"driver.ko", "driver.name", "init"} and files["init"] == b"#!/bin/sh\n"


def test_the_load_address_is_the_one_that_puts_each_access_on_a_load_or_store() -> None:
    found = module_base(TEXT, {BASE + 2, BASE + 0x11})
    assert found is not None and (found.address, found.explained) == (BASE, 2)
    assert module_base(TEXT, {BASE + 2}) is None  # one PC fits two places: ambiguous


def test_the_driver_functions_are_named_with_their_module(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    trace = Trace(header=Header(device="e1000", qemu_version="10.2.2", accel="tcg"))
    trace.records = [
        Access(1, "read", "mmio", 8, 4, 0x80080783, guest_pc=BASE + 2),
        Access(2, "write", "mmio", 0x14, 4, 1, guest_pc=BASE + 0x11),
        Access(3, "read", "pci-config", 0, 4, 0x100E8086, guest_pc=0xFFFFFFFF81234567),
    ]
    symbols = guest_symbols(run, trace)
    assert symbols is not None
    assert str(symbols.describe(BASE + 0x11)) == "write_reg+0x1 (e1000.ko)"
    assert symbols.describe(0xFFFFFFFF81234567).function is None  # the kernel's own code
    assert linux_driver_symbols(tmp_path / "elsewhere", {BASE + 2}) is None


def _tree_run_dir(tmp_path: Path, bound: str) -> Path:
    """A run directory as the guest that chooses its own driver leaves it: the module tree
    in the initramfs, the modules that bound named by the serial log."""
    (tmp_path / "linux").mkdir()
    tree = "lib/modules/6.1.0-50-amd64"
    driver = "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko"
    files = {
        f"{tree}/modules.dep": f"{driver}: kernel/lib/helper.ko\nkernel/lib/helper.ko:\n".encode(),
        f"{tree}/modules.alias": b"alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n",
        f"{tree}/{driver}": _module(tmp_path),
        f"{tree}/kernel/lib/helper.ko": b"\x7fELF not a module the accesses fit",
    }
    (tmp_path / "linux" / "initramfs.cpio.gz").write_bytes(gzip.compress(_cpio(files)))
    (tmp_path / "serial.log").write_text(
        "qtrace-linux: start kernel=6.1.0-50-amd64 device=pci0000:00/0000:00:05.0\r\n"
        f"qtrace-linux: bound pci0000:00/0000:00:05.0 driver={bound} module={bound}\r\n"
    )
    return tmp_path


def test_the_driver_is_the_module_the_guest_saw_bind(tmp_path: Path) -> None:
    run = _tree_run_dir(tmp_path, "e1000e")
    symbols = linux_driver_symbols(run, {BASE + 2, BASE + 0x11})
    assert symbols is not None
    assert str(symbols.describe(BASE + 2)) == "read_reg+0x2 (e1000e.ko)"
    assert "e1000e.ko at 0xffffffffc03df000" in symbols.source


def test_no_bound_module_in_the_tree_names_nothing(tmp_path: Path) -> None:
    assert linux_driver_symbols(_tree_run_dir(tmp_path, "other"), {BASE + 2, BASE + 0x11}) is None

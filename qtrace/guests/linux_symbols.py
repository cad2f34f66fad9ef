"""The Linux guest's driver symbols: which function of the driver's module made an access.

The linux guest loads its driver from the module tree in the capture's initramfs
(``linux/initramfs.cpio.gz`` in the run directory), choosing it by modules.alias; its serial
log names the modules that bound (run directories from before kept one ``driver.ko`` and
``driver.name`` in the initramfs instead). The kernel places the module's code at an
address of its choosing (KASLR), which the trace does not say; but the trace does hold
the exact guest instruction of every access (under TCG, ``Access.guest_pc``), and an access
by the driver is a load or store instruction (``readl``/``writel``: ``mov``, ``movz``,
``in``/``out``) in the module's ``.text``. So the load address is the one that puts
every driver access on such an instruction: each 16-byte-aligned candidate below the lowest
access PC is scored by how many distinct PCs land on an access opcode in ``.text``, and the
best is taken when it explains at least :data:`MIN_EXPLAINED` of them and no other does as
well. Each candidate module is tried in turn (the last bound first) and the first that is
placed so gives the functions, the module's own symbols (``e1000_read_phy_reg+0x3a
(e1000.ko)``). Kernel core functions (the PCI core's config accesses) are not named: the
kernel's System.map is not in the image.

Pure: reads the initramfs and the serial log and nothing else.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from qtrace.guests.linux_modules import ModuleTree
from qtrace.guests.linux_output import parse_linux_serial
from qtrace.guests.symbols import GuestSymbol, GuestSymbols, elf_sections_and_symbols

__all__ = [
    "INITRAMFS",
    "MODULE_AREAS",
    "MIN_EXPLAINED",
    "ModuleBase",
    "driver_modules",
    "initramfs_files",
    "initramfs_module_tree",
    "module_base",
    "linux_driver_symbols",
]

INITRAMFS = Path("linux") / "initramfs.cpio.gz"
MODULE_AREAS = (0xFFFFFFFFC0000000, 0xFFFFFFFFA0000000)
"""Where x86-64 Linux maps modules: from MODULES_VADDR, which is 0xffffffffc0000000 with
KASLR (the kernel's own text then lies anywhere in the GiB below, 0xffffffffa5... too) and
0xffffffffa0000000 without it."""
MIN_EXPLAINED = 0.9
CANDIDATE_ALIGN = 16
_SHF_EXECINSTR = 0x4
_MOV = {0x88, 0x89, 0x8A, 0x8B}
_PORT_IO = {0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED, 0xEE, 0xEF}
_MOVZX = {0xB6, 0xB7}


def initramfs_files(path: Path) -> dict[str, bytes]:
    """The regular files of a ``newc`` cpio archive (gzip-compressed), by name."""
    data = gzip.decompress(path.read_bytes())
    files: dict[str, bytes] = {}
    at = 0
    while at + 110 <= len(data) and data[at : at + 6] in (b"070701", b"070702"):
        name_size = int(data[at + 94 : at + 102], 16)
        file_size = int(data[at + 54 : at + 62], 16)
        name = data[at + 110 : at + 110 + name_size - 1].decode("utf-8", errors="replace")
        start = (at + 110 + name_size + 3) & ~3
        if name == "TRAILER!!!":
            break
        files[name] = data[start : start + file_size]
        at = (start + file_size + 3) & ~3
    return files


def _is_access(code: bytes, at: int) -> bool:
    """Does an x86 load/store/port instruction start at ``at`` (prefixes allowed)?"""
    for _ in range(4):
        if at >= len(code):
            return False
        byte = code[at]
        if byte == 0x66 or 0x40 <= byte <= 0x4F:  # operand size, REX
            at += 1
            continue
        if byte in _MOV or byte in _PORT_IO:
            return True
        return byte == 0x0F and at + 1 < len(code) and code[at + 1] in _MOVZX
    return False


@dataclass(frozen=True)
class ModuleBase:
    """Where the module's ``.text`` was loaded, and how many distinct PCs that explains."""

    address: int
    explained: int
    pcs: int


def module_base(text: bytes, pcs: set[int]) -> ModuleBase | None:
    """The load address of ``text`` that puts the most of ``pcs`` on an access instruction
    (see the module docstring); ``None`` when none explains enough of them unambiguously."""
    if not pcs or not text:
        return None
    low = min(pcs)
    best: list[ModuleBase] = []
    start = low - len(text) + 1
    start += -start % CANDIDATE_ALIGN
    for base in range(start, low + 1, CANDIDATE_ALIGN):
        explained = sum(
            1 for pc in pcs if 0 <= pc - base < len(text) and _is_access(text, pc - base)
        )
        if not best or explained > best[0].explained:
            best = [ModuleBase(base, explained, len(pcs))]
        elif explained == best[0].explained:
            best.append(ModuleBase(base, explained, len(pcs)))
    if len(best) != 1 or best[0].explained < MIN_EXPLAINED * len(pcs):
        return None
    return best[0]


def initramfs_module_tree(files: dict[str, bytes]) -> tuple[str, ModuleTree] | None:
    """Where the initramfs keeps its module tree (``lib/modules/<version>/``) and that
    tree's modules.alias and modules.dep, parsed; ``None`` if it has none."""
    deps = sorted(name for name in files if name.endswith("/modules.dep"))
    if not deps:
        return None
    root = deps[0].removesuffix("modules.dep")
    alias = files.get(f"{root}modules.alias", b"").decode()
    return root, ModuleTree.parse(alias, files[deps[0]].decode())


def driver_modules(run_dir: Path, files: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """``(name, ELF bytes)`` of the modules the driver's accesses may come from, most likely
    first: the modules the guest saw bind (its serial log's ``bound`` lines, the last bound
    first: virtio_net before virtio_pci), then what they depend on, from the module tree
    in the initramfs; a run directory from before the guest chose its own driver has one,
    ``driver.ko``."""
    if "driver.ko" in files:
        name = files.get("driver.name", b"driver").decode().strip() or "driver"
        return [(name, files["driver.ko"])]
    found = initramfs_module_tree(files)
    if found is None:
        return []
    root, tree = found
    try:
        serial = (run_dir / "serial.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    bound = list(dict.fromkeys(b.module for b in reversed(parse_linux_serial(serial).bindings)))
    names = [*bound, *reversed(tree.load_order(bound))]
    return [
        (name, files[f"{root}{tree.paths[name]}"])
        for name in dict.fromkeys(names)
        if name in tree.paths and f"{root}{tree.paths[name]}" in files
    ]


def linux_driver_symbols(run_dir: Path, guest_pcs: set[int]) -> GuestSymbols | None:
    """The driver's functions at the address its accesses show, or ``None`` (no linux
    initramfs in the run directory, no driver PC, or no module with an unambiguous load
    address that explains them: accesses made from two modules, as virtio's are from
    virtio_pci and virtio_pci_modern_dev, are not placed)."""
    path = run_dir / INITRAMFS
    if not path.exists():
        return None
    try:
        candidates = driver_modules(run_dir, initramfs_files(path))
    except (OSError, ValueError, EOFError, UnicodeDecodeError):
        return None
    area = next((a for a in MODULE_AREAS if any(pc >= a for pc in guest_pcs)), MODULE_AREAS[0])
    pcs = {pc for pc in guest_pcs if pc >= area}
    for name, module in candidates:
        placed = _placed(name, module, pcs)
        if placed is not None:
            symbols, base = placed
            return GuestSymbols(symbols, f"{path}:{name}.ko at 0x{base:x}")
    return None


def _placed(name: str, module: bytes, pcs: set[int]) -> tuple[list[GuestSymbol], int] | None:
    """The module's ``.text`` functions where its load address puts them (and that
    address), if it explains ``pcs``."""
    try:
        sections, symbols = elf_sections_and_symbols(module)
    except ValueError:
        return None
    text_index = next(
        (i for i, s in enumerate(sections) if s.name == ".text" and s.flags & _SHF_EXECINSTR),
        None,
    )
    if text_index is None:
        return None
    section = sections[text_index]
    base = module_base(module[section.offset : section.offset + section.size], pcs)
    if base is None:
        return None
    placed = [
        GuestSymbol(s.name, base.address + s.start, s.size, f"{name}.ko")
        for s, index in symbols
        if index == text_index
    ]
    return placed, base.address

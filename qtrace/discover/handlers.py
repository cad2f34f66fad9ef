"""Finding a device's register handlers from the QEMU source, given its QOM type name.

From ``e1000`` to ``e1000_mmio_read``: find the files that define the type (a ``.name`` of
``"e1000"`` or of a ``TYPE_...`` macro that expands to it), then, in those files, the
``MemoryRegionOps`` structures, the ``memory_region_init_io`` calls that use them (region
name) and the ``pci_register_bar`` calls that expose those regions (memory or I/O space).
Pure text processing over files the caller reads; the caller checks the functions exist
in the binary (gdb does when it sets the breakpoints).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["HandlerSpec", "type_macros", "defines_type", "find_handlers"]


@dataclass(frozen=True)
class HandlerSpec:
    """One register handler to trace: function, its source file, direction, space, region."""

    func: str
    file: str
    op: str  # "read" or "write"
    space: str  # "mmio", "pio", or "auto" (decided per access from the KVM exit or stack)
    region: str | None
    ops: str

    def as_config(self) -> dict[str, str | None]:
        return {
            "func": self.func,
            "file": self.file,
            "op": self.op,
            "space": self.space,
            "region": self.region,
        }


_OPS = re.compile(r"MemoryRegionOps\s+(\w+)\s*=\s*\{(.*?)\n\s*\};", re.S)
_FIELD = re.compile(r"\.(read|write)\s*=\s*(\w+)\s*,?")
_INIT_IO = re.compile(
    r"memory_region_init_io\(\s*&?\s*(?P<region>[^,]+?)\s*,\s*[^,]+,\s*&?\s*(?P<ops>\w+)\s*,\s*[^,]+,\s*(?P<name>\"[^\"]*\"|[^,]+?)\s*,",
    re.S,
)
_REGISTER_BAR = re.compile(
    r"pci_register_bar\(\s*[^,]+,\s*[^,]+,\s*(?P<type>[^,]+?)\s*,\s*&?\s*(?P<region>[^)]+?)\s*\)",
    re.S,
)


def type_macros(type_name: str, texts: Mapping[str, str]) -> set[str]:
    """``TYPE_*`` macros defined as the string ``type_name`` in any of ``texts``."""
    pattern = re.compile(r"#define\s+(TYPE_\w+)\s+\"" + re.escape(type_name) + r"\"")
    return {m.group(1) for text in texts.values() for m in pattern.finditer(text)}


def defines_type(text: str, type_name: str, macros: set[str]) -> bool:
    """Does this C file declare a QOM type with that name (``.name = ...``)?"""
    names = ['"' + re.escape(type_name) + '"', *map(re.escape, sorted(macros))]
    return re.search(r"\.name\s*=\s*(?:" + "|".join(names) + r")\s*[,}\n]", text) is not None


def _norm(expression: str) -> str:
    return re.sub(r"\s+", "", expression).lstrip("&")


def find_handlers(files: Mapping[str, str]) -> list[HandlerSpec]:
    """Every read/write handler of every MemoryRegionOps used by a region in ``files``."""
    specs: list[HandlerSpec] = []
    for path, text in sorted(files.items()):
        ops_fields = {
            m.group(1): dict((f.group(1), f.group(2)) for f in _FIELD.finditer(m.group(2)))
            for m in _OPS.finditer(text)
        }
        bar_space: dict[str, str] = {}
        for bar in _REGISTER_BAR.finditer(text):
            space = "pio" if "SPACE_IO" in bar.group("type") else "mmio"
            bar_space[_norm(bar.group("region"))] = space
        uses: dict[str, list[tuple[str | None, str]]] = {}
        for init in _INIT_IO.finditer(text):
            ops = init.group("ops")
            name = init.group("name")
            region_name = name.strip('"') if name.startswith('"') else None
            space = bar_space.get(_norm(init.group("region")), "auto")
            uses.setdefault(ops, []).append((region_name, space))
        for ops, fields in ops_fields.items():
            if ops not in uses:
                continue
            regions = uses[ops]
            spaces = {space for _, space in regions}
            names = {name for name, _ in regions}
            space = spaces.pop() if len(spaces) == 1 else "auto"
            region = names.pop() if len(names) == 1 else None
            for op in ("read", "write"):
                if op in fields:
                    specs.append(HandlerSpec(fields[op], path, op, space, region, ops))
    return specs

"""The e1000's registers are defined once: in the device pack's registers.toml.

The model's table used to be a second copy (``e1000_regs.py``) that drifted from the
reports' map (FRCDPX vs FRCDPLX, MDIC R/E/I vs READY/ERROR/IE, RAH AS vs ASEL, AIFS vs
AIT, COMMAND/STATUS vs COMMAND_STATUS). These tests pin the model's table to the pack's
map and look for any register table of the e1000 written elsewhere in qtrace's code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from qtrace.devices import register_map
from qtrace.devices.e1000.model import IO_REGISTERS, MAC_REGISTERS
from qtrace.refemu import Kind
from qtrace.devices.e1000.model import e1000_regs
from qtrace.refemu.pci import CONFIG_HEADER, config_register_name

QTRACE = Path(__file__).parents[3] / "qtrace"
PACK = register_map("e1000")


def test_the_model_reads_the_packs_map_object() -> None:
    assert PACK is not None
    assert e1000_regs.PACK_MAP is PACK


@pytest.mark.parametrize(("space", "table"), [("mmio", MAC_REGISTERS), ("pio", IO_REGISTERS)])
def test_model_table_is_the_pack_map_row_for_row(space: str, table: object) -> None:
    assert PACK is not None
    pack_rows = [
        (
            r.offset,
            r.name,
            r.reset,
            r.access,
            r.wmask,
            r.note,
            [(f.name, f.lo, f.hi) for f in r.fields],
        )
        for r in PACK.registers(space)
    ]
    model_rows = [
        (
            r.offset,
            r.name,
            r.reset,
            r.kind.value,
            None if r.wmask == 0xFFFF_FFFF else r.wmask,
            r.note,
            [(f.name, f.lo, f.lo if f.hi is None else f.hi) for f in r.fields],
        )
        for r in table  # type: ignore[attr-defined]
    ]
    assert model_rows == pack_rows


def test_every_e1000_register_says_how_the_model_treats_it() -> None:
    assert PACK is not None
    missing = [r.name for s in ("mmio", "pio") for r in PACK.registers(s) if r.access is None]
    assert missing == []


def test_model_constants_come_from_the_maps_fields() -> None:
    icr = MAC_REGISTERS.named("ICR")
    assert e1000_regs.ICR_BITS == {f.name: f.lo for f in icr.fields}
    assert e1000_regs.CTRL_RST == 1 << 26 and e1000_regs.RAH_AV == 1 << 31
    assert (e1000_regs.MDIC_READY, e1000_regs.MDIC_IE, e1000_regs.MDIC_ERROR) == (
        1 << 28,
        1 << 29,
        1 << 30,
    )


def test_unimplemented_list_is_the_maps_unimpl_rows() -> None:
    mmio = {(off, name) for space, off, name, _ in e1000_regs.UNIMPLEMENTED if space == "mmio"}
    assert mmio == {(r.offset, r.name) for r in MAC_REGISTERS if r.kind is Kind.UNIMPL}


def test_datasheet_names_in_both_views() -> None:
    """The names the two copies disagreed on, as the one map now has them."""
    fields = {f.name for f in MAC_REGISTERS.named("CTRL").fields}
    assert "FRCDPLX" in fields and "FRCDPX" not in fields
    assert {"R", "I", "E"} <= {f.name for f in MAC_REGISTERS.named("MDIC").fields}
    assert "AS" in {f.name for f in MAC_REGISTERS.named("RAH[3]").fields}
    assert MAC_REGISTERS.name_at(0x458) == "AIT"
    assert (config_register_name(4, 2), config_register_name(6, 2)) == ("COMMAND", "STATUS")
    assert CONFIG_HEADER.name_at(4) == "COMMAND+STATUS"


def _table_entries(tree: ast.AST, names: dict[str, int]) -> list[str]:
    """Literal (name, offset) pairs of e1000 registers, and Reg/Field rows built from literals."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Reg", "Field"):
            if any(isinstance(a, ast.Constant) and isinstance(a.value, int) for a in node.args):
                found.append(f"line {node.lineno}: {ast.unparse(node)[:60]}")
        pairs: list[tuple[ast.expr | None, ast.expr]] = []
        if isinstance(node, ast.Tuple):
            pairs = [(a, b) for a in node.elts for b in node.elts if a is not b]
        elif isinstance(node, ast.Dict):
            pairs = list(zip(node.keys, node.values, strict=True))
        for a, b in pairs:
            if (
                isinstance(a, ast.Constant)
                and isinstance(a.value, str)
                and isinstance(b, ast.Constant)
                and isinstance(b.value, int)
                and names.get(a.value) == b.value
            ):
                found.append(f"line {node.lineno}: {a.value} = {b.value:#x}")
    return found


def test_no_e1000_register_table_outside_the_pack() -> None:
    assert PACK is not None
    names = {r.name: r.offset for s in ("mmio", "pio") for r in PACK.registers(s)}
    offenders = {
        str(path.relative_to(QTRACE)): hits
        for path in sorted(QTRACE.rglob("*.py"))
        if "devices" not in path.relative_to(QTRACE).parts
        and (hits := _table_entries(ast.parse(path.read_text("utf-8")), names))
    }
    assert offenders == {}


def test_the_table_scan_finds_a_second_copy() -> None:
    """The scan above is not vacuous: the shape of the old table is caught."""
    old = 'ROWS = [Reg(0x0000, "CTRL", 0x00140240)]\nSTATS = ((0x4000, "CRCERRS"),)\n'
    names = {"CTRL": 0, "CRCERRS": 0x4000}
    assert len(_table_entries(ast.parse(old), names)) == 2

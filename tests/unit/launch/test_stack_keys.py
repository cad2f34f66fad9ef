"""The collector's cheap stack keys (gdbscripts/qtrace_gdb/stacks.py): a key that gdb's
unwinder contradicts falls back for that stack only, and gdb's walk ending at ``main``
before the frame-pointer chain does is no contradiction. Host Python, with a stand-in
``gdb`` module; the double subclasses StackTable and replaces only gdb's unwinder."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from qtrace.paths import gdbscripts_dir


@dataclass
class FakeFrame:
    address: int

    def pc(self) -> int:
        return self.address

    def name(self) -> str:
        return f"f{self.address:x}"

    def find_sal(self) -> None:
        return None


class _StandInError(Exception):
    pass


@pytest.fixture
def stacks(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    gdb = sys.modules.get("gdb") or types.ModuleType("gdb")
    for name, value in {
        "error": _StandInError,
        "MemoryError": _StandInError,
        "parse_and_eval": lambda expression: 0,
        "solib_name": lambda pc: None,
    }.items():
        monkeypatch.setattr(gdb, name, getattr(gdb, name, value), raising=False)
    monkeypatch.setitem(sys.modules, "gdb", gdb)
    monkeypatch.syspath_prepend(str(gdbscripts_dir()))
    for name in ("qtrace_gdb", "qtrace_gdb.regs", "qtrace_gdb.stacks"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield importlib.import_module("qtrace_gdb.stacks")
    for name in ("qtrace_gdb", "qtrace_gdb.regs", "qtrace_gdb.stacks"):
        sys.modules.pop(name, None)


class Records:
    def __init__(self) -> None:
        self.written: list[dict[str, object]] = []

    def write(self, record: dict[str, object]) -> None:
        self.written.append(record)


def _table(stacks: types.ModuleType, unwound: list[list[int]]) -> tuple[object, Records]:
    """A StackTable whose gdb unwinder returns ``unwound`` (one list of PCs per walk)."""

    class Table(stacks.StackTable):  # type: ignore[name-defined,misc]
        walks = 0

        def walk(self, frame: object = None) -> list[FakeFrame]:
            pcs = unwound[min(self.walks, len(unwound) - 1)]
            self.walks += 1
            return [FakeFrame(pc) for pc in pcs]

    out = Records()
    return Table(out, "/src/qemu"), out


def test_a_key_the_unwinder_agrees_with_is_unwound_once(stacks: types.ModuleType) -> None:
    table, out = _table(stacks, [[1, 2, 3, 4]])
    key = ((1, 2, 3), 0x7000)  # the chain ended at a frame without frame pointer
    first = table.lookup(key)
    assert table.lookup(key) is first and table.walks == 1
    assert [r["id"] for r in out.written] == ["s1"] and table.fast_misses == 0


def test_gdb_stopping_at_main_before_the_chain_ends_is_agreement(stacks: types.ModuleType) -> None:
    table, _ = _table(stacks, [[1, 2, 3]])
    key = ((1, 2, 3, 0x7F00), 0x7000)  # the chain goes on into __libc_start_call_main
    table.lookup(key)
    table.lookup(key)
    assert table.walks == 1 and table.fast_misses == 0


def test_a_contradicted_key_falls_back_for_its_own_stack_only(stacks: types.ModuleType) -> None:
    # The chain skipped a frame (2): every hit with that key is unwound by gdb, and gets
    # the stack gdb gives that hit; another key stays cheap.
    table, out = _table(stacks, [[1, 5, 2, 3], [1, 6, 2, 3], [7, 8], [1, 5, 2, 3]])
    skipping = ((1, 2, 3), 0x7000)
    assert table.lookup(skipping).pcs == (1, 5, 2, 3)
    assert table.lookup(skipping).pcs == (1, 6, 2, 3)
    good = ((7, 8), 0x7100)
    assert table.lookup(good).pcs == (7, 8)
    assert table.lookup(good).pcs == (7, 8) and table.walks == 3
    assert table.fast_misses == 1
    assert [r["id"] for r in out.written] == ["s1", "s2", "s3"]
    assert table.exact_pcs(skipping) == ((1, 5, 2, 3), False)
    assert table.exact_pcs(good) == ((7, 8), True)


def test_the_key_follows_the_frame_pointer_chain_in_a_block(stacks: types.ModuleType) -> None:
    import struct

    base = 0x1000
    block = bytearray(0x100)
    struct.pack_into("<QQ", block, 0x10, base + 0x40, 0xAAA)  # frame at base+0x10
    struct.pack_into("<QQ", block, 0x40, 0x10, 0xBBB)  # its caller's, whose rbp is not up
    table, _ = _table(stacks, [[0]])
    assert table.key_at([0x999], base + 0x10, base, bytes(block)) == (
        (0x999, 0xAAA, 0xBBB),
        base + 0x40,
    )

"""The TCG guest end (gdbscripts/qtrace_gdb/tcg_pc.py): a TB's search data decoded as QEMU's
cpu_unwind_data_from_tb does, with the host's Python (gdb itself is not needed for it)."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from qtrace.paths import gdbscripts_dir


@pytest.fixture(scope="module")
def tcg_pc() -> types.ModuleType:
    sys.modules.setdefault("gdb", types.ModuleType("gdb"))  # the module only imports it
    path = gdbscripts_dir() / "qtrace_gdb" / "tcg_pc.py"
    spec = importlib.util.spec_from_file_location("qtrace_gdb_tcg_pc", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sleb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _search_data(insns: list[tuple[int, int]], words: int) -> bytes:
    """(guest pc delta, host code bytes) per instruction, ``words`` start words each."""
    data = b""
    for pc_delta, host_bytes in insns:
        data += _sleb128(pc_delta) + _sleb128(0) * (words - 1) + _sleb128(host_bytes)
    return data


@pytest.mark.parametrize("words", [3, 2], ids=["QEMU 9+", "QEMU 7.2"])
def test_the_instruction_whose_host_code_holds_the_address_is_found(
    tcg_pc: types.ModuleType, words: int
) -> None:
    # three guest instructions at 0x108fb0, +1, +3 whose host code is 20, 35 and 12 bytes
    data = _search_data([(0, 20), (1, 35), (2, 12)], words)
    code, tb_pc = 0x7F0000001000, 0x108FB0
    walk = tcg_pc._walk
    assert walk(data, 3, words, tb_pc, code, code + 5, code + 80) == 0x108FB0
    assert walk(data, 3, words, tb_pc, code, code + 20, code + 80) == 0x108FB1
    assert walk(data, 3, words, tb_pc, code, code + 60, code + 80) == 0x108FB3
    assert walk(data, 3, words, tb_pc, code, code + 70, code + 80) is None  # past the last


def test_data_of_another_layout_is_refused_rather_than_misread(tcg_pc: types.ModuleType) -> None:
    data = _search_data([(0, 20), (0x30, 35), (0x10, 12)], 2)
    # read as three words per instruction the host offsets come out wrong: refused
    assert tcg_pc._walk(data, 3, 3, 0x1000, 0, 30, 67) is None
    assert tcg_pc._sleb128(_sleb128(-300) + b"\0", 0) == (-300, 2)

"""Records written from a template (gdbscripts/qtrace_gdb/trace_out.py, ``write_shaped``) are
byte for byte the lines ``write`` gives for the same records. Host Python: no gdb."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.gdb_side import gdb_module


@pytest.fixture
def trace_out() -> ModuleType:
    return gdb_module("trace_out")


def _access(region: str | None, v: list[Any]) -> dict[str, Any]:
    return {
        "type": "access",
        "seq": v[0],
        "op": "read",
        "space": "mmio",
        "region": region,
        "offset": v[1],
        "size": 4,
        "value": v[2],
        "handler": "e1000_mmio_read",
        "exit_seq": v[3],
        "stack": "s7",
        "vcpu": 0,
        "thread": "CPU 0/TCG",
        "coalesced": None,
        "guest_pc": v[4],
    }


class _Clock:
    """time.monotonic for the writer, the same moment for both writers of a record."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("region", "values"),
    [
        ("e1000-mmio", [1, 0xC0, 3, None, 0x100000]),
        ("e1000-mmio", [2, 0, (1 << 64) - 1, 17, None]),  # a 64-bit value, an exit
        (None, [3, 8, 0, None, None]),
        ('50% \u00e9 "quoted" \\ region', [4, 4, 5, 6, 7]),  # % and characters json escapes
    ],
)
def test_a_shaped_record_is_the_line_write_gives(
    trace_out: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    region: str | None,
    values: list[Any],
) -> None:
    clock = _Clock()
    monkeypatch.setattr(trace_out.time, "monotonic", clock)
    plain = trace_out.TraceOut(tmp_path / "plain.jsonl")
    shaped = trace_out.TraceOut(tmp_path / "shaped.jsonl")
    for step in range(3):  # the template is made once, then reused
        clock.now = 100.0 + step * 1.2345678
        plain.write(_access(region, list(values)))
        shaped.write_shaped("access", ("s7", region), lambda v: _access(region, v), values)
    plain.close()
    shaped.close()
    assert (tmp_path / "shaped.jsonl").read_text() == (tmp_path / "plain.jsonl").read_text()
    assert shaped.counts["access"] == 3


def test_a_record_no_template_can_give_is_encoded(trace_out: ModuleType, tmp_path: Path) -> None:
    out = trace_out.TraceOut(tmp_path / "t.jsonl")
    out.write_shaped("access", "bool", lambda v: _access("r", v), [1, True, 2, None, None])
    out.close()
    assert '"offset":true' in (tmp_path / "t.jsonl").read_text()

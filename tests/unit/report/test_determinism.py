"""Same trace, same bytes: reports carry no timestamps and no unordered iteration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from qtrace.report.model import build_report
from qtrace.report.render import render_html, render_markdown, write_report
from qtrace.trace import Stack, iter_records

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"


@pytest.mark.parametrize("capture", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_render_twice_is_byte_identical(capture: str, tmp_path: Path) -> None:
    first = write_report(build_report(FIXTURES / capture), tmp_path / "a")
    second = write_report(build_report(FIXTURES / capture), tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_stack_record_order_does_not_change_the_output(make_capture: Callable[..., Path]) -> None:
    records = list(iter_records(FIXTURES / "e1000-kvm-10.2.2" / "trace.jsonl"))
    stacks = [r for r in records if isinstance(r, Stack)]
    others = [r for r in records[1:] if not isinstance(r, Stack)]
    a = make_capture("e1000-x", [records[0], *stacks, *others])
    b = make_capture("e1000-y", [records[0], *reversed(stacks), *others])
    ra, rb = build_report(a, name="same"), build_report(b, name="same")
    assert render_markdown(ra) == render_markdown(rb)
    assert render_html(ra) == render_html(rb)

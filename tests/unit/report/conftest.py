"""Shared helpers for report tests: the committed fixture captures and a trace builder."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from qtrace.trace import Record, TraceWriter

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"


@pytest.fixture()
def fixture_capture(tmp_path: Path) -> Callable[[str], Path]:
    """Copy a committed fixture capture into tmp_path (reports write into capture dirs)."""

    def copy(name: str) -> Path:
        target = tmp_path / "captures" / name
        shutil.copytree(FIXTURES / name, target)
        return target

    return copy


@pytest.fixture()
def make_capture(tmp_path: Path) -> Callable[[str, Iterable[Record]], Path]:
    """Write records as <tmp>/captures/<name>/trace.jsonl and return the directory."""

    def make(name: str, records: Iterable[Record]) -> Path:
        directory = tmp_path / "captures" / name
        directory.mkdir(parents=True)
        with TraceWriter((directory / "trace.jsonl").open("w", encoding="utf-8")) as writer:
            writer.write_all(records)
        return directory

    return make

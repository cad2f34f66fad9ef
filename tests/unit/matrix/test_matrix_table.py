"""Merging results files and the Markdown table."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from qtrace.errors import ReportError
from qtrace.matrix import (
    BackendSeen,
    Cell,
    RegionSeen,
    ResultsFile,
    RunResult,
    merge,
    plan_cells,
    read_results,
    render_markdown,
    write_results,
)
from qtrace.matrix.cells import MachineSpec
from qtrace.matrix.table import summary_lines

PC, Q35 = MachineSpec("pc"), MachineSpec("q35")


def _ok(device: str, machine: str = "pc", finished: str = "2026-12-01T10:00:00Z") -> RunResult:
    return RunResult(
        device=device,
        machine=machine,
        qemu_version="10.2.2",
        status="ok",
        accesses=10,
        stacks=2,
        seconds=9.5,
        handlers_hit=(f"{device}_read",),
        regions=(
            RegionSeen(f"{device}-mmio", "io", 0),
            RegionSeen("pci-config", "pci-config", None, "pci-config"),
        ),
        finished=finished,
    )


def _failed(device: str, machine: str, reason: str, category: str) -> RunResult:
    return RunResult(
        device=device,
        machine=machine,
        qemu_version="10.2.2",
        status="error",
        reason=reason,
        category=category,
        seconds=3.0,
        finished="2026-12-01T10:00:00Z",
    )


def _shards() -> list[ResultsFile]:
    cells = plan_cells(["edu", "nvme", "vfio-pci", "e1000"], [PC, Q35], ["10.2.2"])
    first = ResultsFile(
        planned=tuple(cells[0::2]),
        results=(
            _ok("e1000"),
            _ok("edu"),
            _failed("nvme", "pc", "QEMU refuses it: serial property not set", "QEMU refuses"),
            _failed("vfio-pci", "pc", "needs host hardware: No provided host device", "needs host"),
        ),
        shard="1/2",
        jobs=2,
        wall_s=60.0,
    )
    second = ResultsFile(
        planned=tuple(cells[1::2]),
        results=(
            _ok("e1000", "q35"),
            _ok("edu", "q35"),
            _ok("nvme", "q35"),
            _failed(
                "vfio-pci", "q35", "needs host hardware: No provided host device", "needs host"
            ),
        ),
        shard="2/2",
        jobs=2,
        wall_s=60.0,
    )
    return [first, second]


def test_merge_unites_shards_and_the_latest_result_wins() -> None:
    rerun = ResultsFile(planned=(), results=(_ok("nvme", "pc", "2026-12-02T00:00:00Z"),))
    matrix = merge([*_shards(), rerun])
    assert len(matrix.planned) == 8 and not matrix.missing
    nvme_pc = next(r for r in matrix.results if r.cell == Cell("nvme", "pc", "10.2.2"))
    assert nvme_pc.ok
    assert matrix.files == 3 and matrix.wall_s == 120.0


def test_summary_line_per_machine_counts_planned_devices() -> None:
    assert summary_lines(merge(_shards())) == [
        "2 of 4 PCI devices end ok on pc (50.0%)",
        "3 of 4 PCI devices end ok on q35 (75.0%)",
    ]


def test_a_missing_shard_shows_as_cells_not_run() -> None:
    first = _shards()[0]
    matrix = merge([first, ResultsFile(planned=_shards()[1].planned)])
    assert summary_lines(matrix)[1] == "0 of 4 PCI devices end ok on q35 (0.0%); 4 not run"
    assert "## Not run" in render_markdown(matrix)


def test_the_markdown_has_summary_then_table_then_reasons_by_category() -> None:
    text = render_markdown(merge(_shards()))
    summary = text.index("**2 of 4 PCI devices end ok on pc (50.0%)**")
    table = text.index("| device | machine | QEMU | status | regions |")
    reasons = text.index("## Why the others did not end ok")
    assert summary < table < reasons
    assert "| `edu` | pc | 10.2.2 | ok | edu-mmio (io) | `edu_read` | 10 | 2 | 9.5 |" in text
    assert "### needs host (1 device)" in text
    assert (
        "| `vfio-pci` | pc, q35 | 10.2.2 | error | needs host hardware: No provided host device |"
        in text
    )
    assert text.index("### needs host") < text.index("### QEMU refuses")  # more runs first
    assert "2.0 min of wall time with --jobs 2" in text


def test_pipes_in_reasons_do_not_break_the_table() -> None:
    bad = _failed("x", "pc", "a | b", "other")
    text = render_markdown(merge([ResultsFile(planned=(bad.cell,), results=(bad,))]))
    assert "a \\| b" in text


def test_results_files_round_trip_and_bad_ones_are_report_errors(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    first = _shards()[0]
    write_results(path, first)
    back = read_results(path)
    assert back.results == tuple(sorted(first.results, key=lambda r: r.cell.key))
    assert set(back.planned) == set(first.planned) and back.shard == "1/2"
    assert not list(tmp_path.glob(".r.json.*"))  # the temporary file was renamed
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ReportError):
        read_results(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "something-else"}')
    with pytest.raises(ReportError):
        read_results(tmp_path / "other.json")
    with pytest.raises(ReportError):
        read_results(tmp_path / "missing.json")


def test_the_table_names_every_commit_that_captured_a_result() -> None:
    old = replace(_ok("edu"), qtrace_commit="acfc843")
    new = replace(_ok("nvme"), qtrace_commit="95c726d")
    matrix = merge([ResultsFile(planned=(), results=(old, new))])
    assert matrix.commits == ("95c726d", "acfc843")
    assert "; qtrace 95c726d, acfc843)" in render_markdown(matrix)


def test_devices_a_backend_served_are_listed_with_what_it_served(tmp_path: Path) -> None:
    stub = BackendSeen("vhost-user", "virtqueues are served by qtrace's stub, not by QEMU")
    runs = [
        replace(_ok(d, m), backends=(stub,)) for d in ("vhost-user-blk-pci",) for m in ("pc", "q35")
    ]
    results = ResultsFile(planned=(), results=(*runs, _ok("edu")))
    write_results(tmp_path / "r.json", results)
    assert read_results(tmp_path / "r.json").results[1].backends == (stub,)  # round trip
    text = render_markdown(merge([results]))
    section = text[text.index("## Devices served in part by a backend process") :]
    assert "| `vhost-user` | virtqueues are served by qtrace's stub, not by QEMU |" in section
    assert "`vhost-user-blk-pci` (pc, q35)" in section and "`edu`" not in section
    assert "## Devices served" not in render_markdown(merge([ResultsFile((), (_ok("edu"),))]))

"""`qtrace diff` on two real captures: QEMU 7.2 against 10.2.2 under KVM.

The captures are the session's (``capture("e1000", "kvm")`` and the same with
``qemu_version="7.2"``); the diff must name the frames that changed between the releases.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from qtrace.cli.app import app
from qtrace.launch.capture import CaptureResult
from qtrace.report.diff import DIFF_FORMAT, diff_captures

Capture = Callable[..., CaptureResult]
OLDER_VERSION = "7.2"


@pytest.fixture(scope="module")
def two_releases(capture: Capture) -> tuple[CaptureResult, CaptureResult]:
    old = capture("e1000", "kvm", qemu_version=OLDER_VERSION)
    new = capture("e1000", "kvm")
    assert old.status == "ok" and new.status == "ok", (old.reason, new.reason)
    return old, new


@pytest.mark.parametrize(
    ("kind", "step", "memory_funcs"),
    [
        ("mmio read", "flatview_read_continue_step", {"memory_region_dispatch_read"}),
        ("mmio write", "flatview_write_continue_step", {"memory_region_dispatch_write"}),
    ],
)
def test_diff_names_the_frames_that_changed(
    two_releases: tuple[CaptureResult, CaptureResult], kind: str, step: str, memory_funcs: set[str]
) -> None:
    old, new = two_releases
    diff = diff_captures(old.out_dir, new.out_dir, kind)
    assert (diff.a.qemu_version, diff.b.qemu_version) == (OLDER_VERSION, "10.2.2")
    by_func = {row.func: row for row in diff.rows}

    # flatview_*_continue_step exists from 9.1 on: only the 10.2.2 side has it
    assert by_func[step].status == "only in B"
    assert by_func[step].layer == "address-space"
    assert by_func[step].b is not None and by_func[step].b.startswith("system/physmem.c:")

    # the memory API and the FlatView code moved from softmmu/ to system/
    moved = {row.func: row for row in diff.rows if row.status == "file changed"}
    assert memory_funcs <= set(moved)
    for row in moved.values():
        assert row.a is not None and row.b is not None
        if row.a.startswith("softmmu/"):
            assert row.b.startswith("system/"), row
    # (other moves are real too: the receive path's cpu_physical_memory_write was a header
    # inline in 7.2, include/exec/cpu-common.h, and is a function of system/physmem.c in 10.2.2)
    for func in memory_funcs:
        assert moved[func].a.startswith("softmmu/"), moved[func]

    # the device and the KVM exit handling are on both paths; kvm_cpu_exec's call moved
    assert by_func["kvm_cpu_exec"].status == "line changed"
    assert by_func["kvm_cpu_exec"].layer == "accel-kvm"
    assert by_func[f"e1000_mmio_{kind.split()[1]}"].status in ("same", "line changed")
    # nothing of 7.2's path is gone but the DMA helpers 10.2.2's cpu_physical_memory_write
    # no longer calls (a write's handler can now DMA: the receive path's frame write)
    gone = {row.func for row in diff.rows if row.status == "only in A"}
    assert gone <= {"address_space_rw", "cpu_physical_memory_rw"}, gone
    assert not [row for row in diff.rows if row.layer == "unknown"]


def test_cli_diff_prints_the_changes_and_valid_json(
    two_releases: tuple[CaptureResult, CaptureResult],
) -> None:
    old, new = two_releases
    runner = CliRunner()

    shown = runner.invoke(
        app,
        ["diff", str(old.out_dir), str(new.out_dir), "--kind", "mmio read"],
        env={"COLUMNS": "250"},
    )
    assert shown.exit_code == 0, shown.output
    assert "flatview_read_continue_step" in shown.stdout
    assert "only in B" in shown.stdout and "file changed" in shown.stdout

    as_json = runner.invoke(app, ["diff", str(old.out_dir), str(new.out_dir), "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["format"] == DIFF_FORMAT
    assert data["kind"] == "mmio read"
    assert data["a"]["qemu_version"] == OLDER_VERSION and data["b"]["qemu_version"] == "10.2.2"
    only_b = {row["func"] for row in data["rows"] if row["status"] == "only in B"}
    assert "flatview_read_continue_step" in only_b
    assert data["summary"]["file changed"] > 0
    assert sum(data["summary"].values()) == len(data["rows"])

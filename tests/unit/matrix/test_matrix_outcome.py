"""A cell's result from what ``qtrace capture --json`` left: summary, trace, qemu.log, stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qtrace.matrix import CaptureOutput, Cell, RegionSeen, outcome
from qtrace.matrix.outcome import error_lines
from qtrace.trace import Access, End, Header, Stack, TraceWriter
from qtrace.trace.kinds import CaptureStatus
from qtrace.trace.schema import Frame, Region

CELL = Cell("edu", "pc", "10.2.2")


def _summary(**over: Any) -> dict[str, Any]:
    return {"device": "edu", "status": "ok", "reason": None, "accesses": 3, "stacks": 2, **over}


def _trace(out: Path, regions: tuple[Region, ...]) -> None:
    with TraceWriter.append_to(out / "trace.jsonl") as writer:
        writer.write(Header(device="edu", qemu_version="10.2.2", accel="kvm", regions=regions))
        writer.write(Stack(id="s1", frames=(Frame("edu_mmio_read"),)))
        for seq, handler in enumerate(["edu_mmio_read", "edu_mmio_read", "edu_mmio_write"]):
            writer.write(
                Access(seq, "read", "mmio", 0, 4, 0, handler=handler, stack=f"s{seq % 2 + 1}")
            )
        writer.write(End(status=CaptureStatus.OK, accesses=3))


def test_an_ok_capture_gives_regions_with_kind_and_distinct_handlers(tmp_path: Path) -> None:
    regions = (
        Region("edu-mmio", 0, 0, 0x100000, "io", handlers={"read": "edu_mmio_read"}),
        Region("pci-config", None, 0, 256, "pci-config", space="pci-config"),
    )
    _trace(tmp_path, regions)
    result = outcome(CELL, CaptureOutput(0, json.dumps(_summary()), "", tmp_path, 9.87))
    assert result.ok and result.reason is None and result.category is None
    assert result.handlers_hit == ("edu_mmio_read", "edu_mmio_write")
    assert result.regions == (
        RegionSeen("edu-mmio", "io", 0, "mmio", 0x100000),
        RegionSeen("pci-config", "pci-config", None, "pci-config", 256),
    )
    assert (result.accesses, result.stacks, result.seconds) == (3, 2, 9.9)


def test_a_trace_without_regions_is_tolerated(tmp_path: Path) -> None:
    _trace(tmp_path, ())
    result = outcome(CELL, CaptureOutput(0, json.dumps(_summary()), "", tmp_path, 1.0))
    assert result.regions == () and result.handlers_hit


def test_an_unreadable_trace_keeps_the_run_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "trace.jsonl").write_text("not json\n")
    result = outcome(CELL, CaptureOutput(0, json.dumps(_summary()), "", tmp_path, 1.0))
    assert result.ok and result.regions == ()
    assert result.detail is not None and "trace could not be read" in result.detail


def test_summary_json_is_read_when_stdout_has_none(tmp_path: Path) -> None:
    (tmp_path / "qemu.log").write_text(
        "qemu-system-x86_64: -device nvme,id=qtrace0,addr=05.0,romfile=: serial property not set\n"
    )
    reason = "cannot read the guests serial output: serial log: no # qtrace-probe/1 start line"
    (tmp_path / "summary.json").write_text(
        json.dumps(_summary(status="error", reason=reason, accesses=0))
    )
    result = outcome(Cell("nvme", "q35", "10.2.2"), CaptureOutput(1, "", "", tmp_path, 3.0))
    assert (result.status, result.reason) == ("error", "QEMU refuses it: serial property not set")
    assert result.detail == reason
    assert result.machine == "q35" and result.exit_code == 1


def test_an_error_before_the_capture_is_read_from_stderr(tmp_path: Path) -> None:
    stderr = (
        "• accelerator: kvm (KVM usable)\n"
        "error: could not find where QOM type 'virtio-net-pci' is defined in the QEMU source\n"
        "hint: Run `qtrace devices`.\n"
    )
    result = outcome(CELL, CaptureOutput(1, "", stderr, tmp_path, 1.5))
    assert result.status == "error" and result.category == "discovery failed"
    assert result.detail == (
        "could not find where QOM type 'virtio-net-pci' is defined in the QEMU source "
        "hint: Run `qtrace devices`."
    )


def test_a_capture_the_matrix_had_to_stop_is_a_timeout(tmp_path: Path) -> None:
    result = outcome(CELL, CaptureOutput(-15, "", "", tmp_path, 240.0, hard_limit_s=240.0))
    assert result.status == "timeout"
    assert result.reason == (
        "qtrace capture gave no result within 240 s and was stopped (0 accesses)"
    )


def test_error_lines_join_wrapped_continuations() -> None:
    stderr = "error: the capture ended error: cannot read\nthe serial\nhint: use tcg\n"
    assert error_lines(stderr) == ("the capture ended error: cannot read the serial", "use tcg")
    assert error_lines("• just status\n") == (None, None)


def test_a_crash_of_qtrace_itself_is_named_by_its_last_line(tmp_path: Path) -> None:
    stderr = "Traceback (most recent call last):\n  ...\nKeyError: 'regions'\n"
    result = outcome(CELL, CaptureOutput(1, "", stderr, tmp_path, 0.7))
    assert result.reason == "qtrace capture exited 1 without a summary: KeyError: 'regions'"


def test_a_usage_error_in_its_frame_is_read_without_the_frame(tmp_path: Path) -> None:
    stderr = (
        "Usage: python -m qtrace capture [OPTIONS] [device]\n"
        "╭─ Error ───╮\n│ No such option: --topology   │\n╰───────────╯\n"
    )
    result = outcome(CELL, CaptureOutput(2, "", stderr, tmp_path, 0.7))
    assert result.category == "qtrace refused the request"
    assert result.reason == "qtrace capture exited 2 without a summary: No such option: --topology"


def test_the_registry_is_asked_only_for_a_run_that_failed(tmp_path: Path) -> None:
    asked: list[Cell] = []

    def unstartable(cell: Cell) -> str | None:
        asked.append(cell)
        return "passes a host PCI device through (VFIO)"

    failed = outcome(CELL, CaptureOutput(1, "", "error: x\n", tmp_path, 1.0), unstartable)
    assert (failed.reason, failed.category) == (
        "passes a host PCI device through (VFIO)",
        "needs host hardware",
    )
    outcome(CELL, CaptureOutput(0, json.dumps(_summary()), "", tmp_path, 1.0), unstartable)
    assert asked == [CELL]


def test_the_backends_a_capture_ran_are_kept(tmp_path: Path) -> None:
    backends = [{"name": "vhost-user", "serves": "the queues", "pid": 7, "ended": "terminated"}]
    result = outcome(
        CELL, CaptureOutput(0, json.dumps(_summary(backends=backends)), "", tmp_path, 1.0)
    )
    assert [(b.name, b.serves) for b in result.backends] == [("vhost-user", "the queues")]
    plain = outcome(CELL, CaptureOutput(0, json.dumps(_summary()), "", tmp_path, 1.0))
    assert plain.backends == ()

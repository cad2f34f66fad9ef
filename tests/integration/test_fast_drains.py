"""The fast collector's drains without the host's view of QEMU's memory (issue 15).

A capture that cannot read QEMU's memory from the host (qtrace in another pid namespace,
no ptrace right over the container's processes) drains its buffer at timed intervals and
copies each segment with ``dd`` in the container. The same long probe run, drained that
way, must lose no hit either. Run in-process so that the host's view can be taken away
(``open_host_memory`` answers ``None``); everything else is the real capture."""

from __future__ import annotations

from pathlib import Path

import pytest

import qtrace.launch.fast.run as fast_run
from qtrace.image.builder import BuildResult
from qtrace.launch.capture import CaptureRequest, run_capture
from qtrace.trace import read_trace
from tests.integration.conftest import RecordingEvents


def test_timed_drains_through_dd_lose_no_hit(
    debug_image: BuildResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fast_run, "open_host_memory", lambda *args: None)
    events = RecordingEvents()
    out = tmp_path / "fast-timed"
    result = run_capture(
        CaptureRequest(device="e1000", accel="tcg", out_dir=out, collector="fast",
                       load_rounds=20000),
        events,
    )  # fmt: skip
    assert result.status == "ok", (result.reason, result.hint)
    trace = read_trace(out)
    assert trace.end is not None and trace.end.fast_checks is not None
    checks = trace.end.fast_checks
    assert checks["ok"] is True and checks["buffer_full"] is False
    assert checks["segments"] >= 2, "timed drains ran while QEMU did"
    assert "read from the agent's buffer in QEMU" in str(checks["read"])
    # Every frame is an access, an interrupt or a DMA copy but the start marker's and the firmware's
    # config accesses before it.
    recorded = len(trace.accesses) + len(trace.irqs) + len(trace.dmas)
    assert recorded + checks["before_arming"] + checks["irq_other_paths"] == (
        checks["hits_by_agent"] - 1)
    assert len(trace.accesses) >= 80_000
    seqs = sorted(r.seq for r in [*trace.accesses, *trace.irqs, *trace.dmas])
    assert seqs == list(range(1, recorded + 1))
    assert any("at timed intervals" in text for text in events.statuses), events.statuses
    assert not list(out.glob(".fast-agent-buffer*")), "the segments' copies are removed"


def test_a_run_out_of_jump_pad_room_stops_with_its_segments_kept(
    debug_image: BuildResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gdbserver gives every tstart new jump-pad and heap space (agent_space.py): when the
    room mapped for them holds no further start, the run stops after the drain, says why,
    and keeps every segment drained. Here the room is made to hold two starts."""
    # Drains at a third of the buffer, read from the host (timed drains of this long a
    # run can let the buffer fill between two of them).
    monkeypatch.setattr(fast_run, "tracing_starts", lambda space, tracepoints: 2)
    out = tmp_path / "fast-room"
    result = run_capture(
        CaptureRequest(device="e1000", accel="tcg", out_dir=out, collector="fast",
                       load_rounds=60000),
        RecordingEvents(),
    )  # fmt: skip
    assert result.status == "error"
    assert "jump pads" in (result.reason or "") and "after 2 drains" in (result.reason or "")
    assert "--max-hits" in (result.hint or "")
    trace = read_trace(out)
    assert trace.end is not None and trace.end.status == "error"
    checks = trace.end.fast_checks
    assert checks is not None and checks["ok"] is True and checks["segments"] == 2
    recorded = len(trace.accesses) + len(trace.irqs) + len(trace.dmas)
    assert recorded + checks["before_arming"] + checks["irq_other_paths"] == (
        checks["hits_by_agent"] - 1)
    seqs = sorted(r.seq for r in [*trace.accesses, *trace.irqs, *trace.dmas])
    assert seqs == list(range(1, recorded + 1))

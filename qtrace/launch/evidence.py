"""The evidence a capture leaves in its run directory, besides what gdb and QEMU write.

``manifest.json`` (what was run, written before anything starts), the trace's ``end``
record when the collector could not write it (gdb died, QEMU hung), and ``summary.json``
(status and counts, from the capture's one trace reader). Kept apart from the capture's
control flow so the files' shapes are in one place.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qtrace import __version__
from qtrace.launch.live import TraceTail
from qtrace.trace import SCHEMA_VERSION, End, TraceWriter, repair_partial_tail
from qtrace.trace.kinds import Accel, CaptureStatus

__all__ = ["manifest", "write_json", "close_trace", "summary", "HOST_CLOSED"]

logger = logging.getLogger(__name__)

HOST_CLOSED = " (closed by the host)"
"""Appended to the reason of an end record the host wrote (the collector could not)."""


def manifest(
    request: Mapping[str, object], accel: Accel, qemu_version: str, image: str, argv: list[str]
) -> dict[str, Any]:
    """What was asked for and what was run, with the host it ran on."""
    return {
        "qtrace_version": __version__,
        "schema": SCHEMA_VERSION,
        "request": {k: str(v) if isinstance(v, Path) else v for k, v in request.items()},
        "accel": accel,
        "qemu_version": qemu_version,
        "image": image,
        "argv": argv,
        "host": {
            "node": platform.node(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
    }


def write_json(out_dir: Path, name: str, payload: Mapping[str, Any]) -> None:
    """One JSON evidence file, indented for people; whole or not at all (a full disk
    must not leave a half file that a reader then chokes on)."""
    final = out_dir / name
    partial = out_dir / f".{name}.partial"
    try:
        partial.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
        partial.replace(final)
    except OSError:
        partial.unlink(missing_ok=True)
        raise


def close_trace(
    tail: TraceTail, status: CaptureStatus, reason: str | None, elapsed_s: float
) -> bool:
    """Make sure the trace ends with an ``end`` record, also when gdb died or hung.

    A torn last line (a writer killed mid-line, or a full disk) is cut first so the rest
    stays valid. The host's record says it was written by the host. Call it only once gdb
    is gone, so nothing writes behind it.

    Returns:
        True if the host wrote the end record.

    Raises:
        OSError: the record could not be written (e.g. the disk is full); the trace is
            still valid up to its last complete line.
    """
    if not tail.path.exists() or tail.path.stat().st_size == 0:
        return False  # nothing was written (gdb died before the header): no trace to close
    repair_partial_tail(tail.path)
    stats = tail.update()
    if stats.ended is not None:
        return False
    status = CaptureStatus(status)
    end = End(
        # Only the collector may say ok: it alone saw the run through to its end.
        status=CaptureStatus.ERROR if status is CaptureStatus.OK else status,
        accesses=stats.accesses,
        stacks=stats.stacks,
        elapsed_s=round(elapsed_s, 3),
        reason=(reason or "the collector did not close the trace") + HOST_CLOSED,
    )
    try:
        with TraceWriter.append_to(tail.path) as writer:
            writer.write(end)
    except OSError:
        repair_partial_tail(tail.path)  # no half-written end record either
        raise
    tail.update()
    return True


def summary(
    tail: TraceTail,
    identity: Mapping[str, object],
    status: CaptureStatus,
    reason: str | None,
    qemu_exit: int | None,
    elapsed_s: float,
    out_dir: Path,
) -> dict[str, Any]:
    """``summary.json``: status (the end record's, when there is one), counts, files."""
    stats = tail.stats
    fast: dict[str, Any] = {}
    noted: dict[str, Any] = {}
    if stats.ended is not None:
        status, reason = stats.ended.status, stats.ended.reason
        if stats.ended.collector_errors:
            noted = {
                "collector_errors": stats.ended.collector_errors,
                "collector_error_messages": list(stats.ended.collector_error_messages or ()),
            }
        if stats.ended.fast_checks is not None:
            # The fast collector looks for KVM exits only under KVM: null, not a count of
            # 0 (its INTx changes and DMA copies are counted like the breakpoint
            # collector's).
            checks = stats.ended.fast_checks
            fast = {"collector": "fast", "fast_checks": checks}
            if not checks.get("kvm_exits"):
                fast.update(exits=None, exit_reasons=None)
    return {
        **identity,
        "status": status,
        "reason": reason,
        "qemu_exit_status": qemu_exit,
        "accesses": stats.accesses,
        "stacks": stats.stacks,
        "exits": stats.exits,
        "exit_reasons": dict(sorted(stats.exit_reasons.items())),
        "irqs": stats.irqs,
        "dmas": stats.dmas,
        "elapsed_s": round(elapsed_s, 2),
        "out_dir": str(out_dir),
        "files": sorted(p.name for p in out_dir.iterdir() if p.is_file()),
        **fast,
        **noted,
    }

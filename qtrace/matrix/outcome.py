"""One cell's result, read from what ``qtrace capture --json --out DIR`` left behind.

The summary comes from the command's JSON on stdout (or ``summary.json``, the same
document); when the command stopped before capturing (discovery failed, an unknown device)
there is none, and its ``error:``/``hint:`` lines on stderr say why. The region map and the
handlers hit come from the trace (``qtrace.trace.read_trace``): the header's ``regions`` and
the distinct ``handler`` of the access records. A trace that cannot be read leaves both
empty and is said in the detail; it does not lose the run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qtrace.errors import TraceFormatError
from qtrace.matrix.cells import Cell
from qtrace.matrix.reasons import short_reason
from qtrace.matrix.results import BackendSeen, RegionSeen, RunResult
from qtrace.trace.codec import read_trace

__all__ = ["CaptureOutput", "outcome", "error_lines"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureOutput:
    """What one ``qtrace capture`` run gave back.

    ``hard_limit_s`` is set when the matrix had to stop the command itself (it gave no
    result within that many seconds).
    """

    exit_code: int | None
    stdout: str
    stderr: str
    out_dir: Path
    seconds: float
    hard_limit_s: float | None = None


def error_lines(stderr: str) -> tuple[str | None, str | None]:
    """The ``error:`` and ``hint:`` lines ``qtrace`` printed (continuation lines joined)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stderr.splitlines():
        stripped = line.strip()
        head, _, rest = stripped.partition(": ")
        if head in ("error", "hint") and rest:
            current = found.setdefault(head, [])
            current.append(rest)
        elif current is not None and stripped and not stripped.startswith(("•", "last log")):
            current.append(stripped)
        else:
            current = None
    error, hint = found.get("error"), found.get("hint")
    return (" ".join(error) if error else None, " ".join(hint) if hint else None)


_BOX = " \t│╭╮╰╯─"
"""Whitespace and the frame rich draws around Click's usage errors."""


def _last_words(output: CaptureOutput) -> str:
    """Why a command that printed no ``error:`` line failed: its last line on stderr (a
    traceback's exception, Click's usage message)."""
    lines = [line.strip(_BOX) for line in output.stderr.splitlines() if line.strip(_BOX)]
    said = f": {lines[-1]}" if lines else " and printed nothing"
    return f"qtrace capture exited {output.exit_code} without a summary{said}"


def _summary(output: CaptureOutput) -> dict[str, Any] | None:
    for text in (output.stdout, _read(output.out_dir / "summary.json")):
        if not text.strip():
            continue
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and "status" in doc:
            return doc
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _from_trace(out_dir: Path) -> tuple[tuple[RegionSeen, ...], tuple[str, ...], int, str | None]:
    """Regions, handlers hit, distinct stacks used and a problem (``None`` if read)."""
    path = out_dir / "trace.jsonl"
    if not path.is_file():
        return (), (), 0, None
    try:
        trace = read_trace(path)
    except (TraceFormatError, OSError) as exc:
        logger.debug("cannot read %s: %s", path, exc)
        return (), (), 0, f"the trace could not be read: {exc}"
    regions = tuple(
        RegionSeen(name=r.name, kind=r.kind, bar=r.bar, space=r.space, size=r.size)
        for r in trace.header.regions
    )
    handlers = tuple(sorted({a.handler for a in trace.accesses if a.handler}))
    stacks = len({a.stack for a in trace.accesses if a.stack})
    return regions, handlers, stacks, None


def outcome(
    cell: Cell,
    output: CaptureOutput,
    unstartable: Callable[[Cell], str | None] | None = None,
) -> RunResult:
    """The cell's :class:`RunResult` from one capture's output and run directory.

    Args:
        cell: the cell that was captured.
        output: what ``qtrace capture`` gave back.
        unstartable: why the devices' registry says a cell's device cannot start in a
            capture (``None`` when it does not say); asked only for a run that failed.
    """
    summary = _summary(output)
    error, hint = error_lines(output.stderr)
    regions, handlers, trace_stacks, trace_problem = _from_trace(output.out_dir)
    if output.hard_limit_s is not None:
        status = "timeout"
        reason: str | None = (
            f"qtrace capture gave no result within {output.hard_limit_s:.0f} s and was stopped"
        )
    elif summary is not None:
        status = str(summary["status"])
        reason = summary.get("reason") or error
    else:
        status = "error"
        reason = error or _last_words(output)
    accesses = int(summary.get("accesses", 0)) if summary else 0
    stacks = int(summary.get("stacks", trace_stacks)) if summary else trace_stacks
    named = None
    if status != "ok":
        named = short_reason(
            status,
            reason,
            hint=hint,
            qemu_log=_read(output.out_dir / "qemu.log"),
            accesses=accesses,
            exit_code=output.exit_code,
            unstartable=unstartable(cell) if unstartable is not None else None,
        )
    detail = " ".join(
        part
        for part in (
            reason if status != "ok" else None,
            f"hint: {hint}" if hint else None,
            trace_problem,
        )
        if part
    )
    backends = tuple(
        BackendSeen(str(b.get("name", "")), str(b.get("serves", "")))
        for b in (summary or {}).get("backends", ())
        if isinstance(b, dict)
    )
    return RunResult(
        device=cell.device,
        machine=cell.machine,
        qemu_version=cell.qemu_version,
        topology=cell.topology,
        status=status,
        reason=named.phrase if named else None,
        category=named.category.value if named else None,
        detail=detail or None,
        exit_code=output.exit_code,
        seconds=round(output.seconds, 1),
        accesses=accesses,
        stacks=stacks,
        handlers_hit=handlers,
        regions=regions,
        out_dir=str(output.out_dir),
        finished=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        backends=backends,
    )

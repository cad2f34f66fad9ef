"""Compare how two captures reached the device for one kind of access.

For the access kind (e.g. ``mmio read``), each capture's most used stack is annotated and
split into runs of frames of the same layer. The runs are aligned by layer, then the
frames inside aligned runs by function name, so the result names the frames only one
capture has (``flatview_read_continue_step`` exists from 9.1 on; KVM vs TCG differ in whole
layers) and the frames whose file or line changed (``softmmu/memory.c`` in 7.2 is
``system/memory.c`` in 10.2.2).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Literal

from qtrace.annotate import AnnotatedFrame, AnnotatedStack, SourceProvider, annotate_stack
from qtrace.errors import ReportError
from qtrace.report.model import access_kind, representative_kind, representative_stack
from qtrace.trace import read_trace

__all__ = [
    "DIFF_FORMAT",
    "DiffRow",
    "DiffSide",
    "DiffStatus",
    "StackDiff",
    "diff_captures",
    "diff_stacks",
    "pick_side",
]

DIFF_FORMAT = "qtrace-diff/1"
DiffStatus = Literal[
    "same", "line changed", "file changed", "place unknown", "only in A", "only in B"
]
"""``place unknown``: the function is on both sides, and one side's collector named it
without a place (:data:`NAMED_ONLY`), so whether it moved cannot be said."""


@dataclass(frozen=True)
class DiffRow:
    """One frame position: the layer, the function, where it is in A and in B."""

    layer: str
    func: str
    status: DiffStatus
    a: str | None
    b: str | None


@dataclass(frozen=True)
class DiffSide:
    """Which capture and stack one side of the diff is; ``regions`` are the MemoryRegions the
    accesses of the compared kind on that stack went to."""

    capture: str
    qemu_version: str
    accel: str
    stack: str
    frames: int
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class StackDiff:
    """Two stacks of the same access kind, aligned; rows innermost frame first."""

    kind: str
    a: DiffSide
    b: DiffSide
    rows: tuple[DiffRow, ...]

    def counts(self) -> dict[str, int]:
        """How many rows of each status (every status listed, zeros included)."""
        found = Counter(row.status for row in self.rows)
        return {
            s: found[s]
            for s in ("same", "line changed", "file changed", "place unknown", "only in A",
                      "only in B")  # fmt: skip
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (format ``qtrace-diff/1``)."""
        return {
            "format": DIFF_FORMAT,
            "kind": self.kind,
            "a": asdict(self.a),
            "b": asdict(self.b),
            "summary": self.counts(),
            "rows": [asdict(r) for r in self.rows],
        }


NAMED_ONLY = "by name only"
"""Where a frame is that its collector named without a place: the fast collector's
handler frame (its tracepoints sit in the accessor that calls the handler, one frame
down, which has its file and line)."""


def _named_only(frame: AnnotatedFrame) -> bool:
    return frame.file is None and frame.pc is None


def _where(frame: AnnotatedFrame) -> str:
    return NAMED_ONLY if _named_only(frame) else frame.location


def _frame_rows(a: list[AnnotatedFrame], b: list[AnnotatedFrame]) -> list[DiffRow]:
    """Align two runs of one layer by function name (frames outermost first)."""
    rows: list[DiffRow] = []
    matcher = SequenceMatcher(a=[f.func for f in a], b=[f.func for f in b], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for fa, fb in zip(a[i1:i2], b[j1:j2]):
                status: DiffStatus = "same"
                if _named_only(fa) or _named_only(fb):
                    status = "same" if _named_only(fa) and _named_only(fb) else "place unknown"
                elif fa.file != fb.file:
                    status = "file changed"
                elif fa.line != fb.line:
                    status = "line changed"
                rows.append(DiffRow(fa.layer.id, fa.func, status, _where(fa), _where(fb)))
            continue
        rows += [DiffRow(f.layer.id, f.func, "only in A", _where(f), None) for f in a[i1:i2]]
        rows += [DiffRow(f.layer.id, f.func, "only in B", None, _where(f)) for f in b[j1:j2]]
    return rows


def diff_stacks(a: AnnotatedStack, b: AnnotatedStack) -> list[DiffRow]:
    """Align two annotated stacks by layer runs, then by frames; rows innermost first."""
    runs_a, runs_b = a.layer_runs(), b.layer_runs()
    matcher = SequenceMatcher(
        a=[layer.id for layer, _ in runs_a], b=[layer.id for layer, _ in runs_b], autojunk=False
    )
    rows: list[DiffRow] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for (_, fa), (_, fb) in zip(runs_a[i1:i2], runs_b[j1:j2]):
                rows += _frame_rows(fa, fb)
            continue
        rows += _frame_rows([f for _, fs in runs_a[i1:i2] for f in fs], [])
        rows += _frame_rows([], [f for _, fs in runs_b[j1:j2] for f in fs])
    return list(reversed(rows))


def pick_side(
    capture: Path,
    kind: str | None,
    source: SourceProvider | None = None,
    regions: tuple[str, ...] = (),
) -> tuple[DiffSide, AnnotatedStack, str]:
    """The most used stack of ``kind`` (default: the capture's preferred kind), annotated.

    With ``regions`` (the other side's), the stack is chosen among the accesses to those
    regions when the capture has any, so both sides show the path to the same registers
    (a virtio device's common configuration on both, not its ISR on one).

    Returns:
        The side's description, its annotated stack and the kind chosen.

    Raises:
        ReportError: the capture has no access of that kind with a stack.
        TraceFormatError: the trace is invalid.
    """
    trace = read_trace(capture)
    chosen = kind or representative_kind(trace.accesses)
    if chosen is None:
        raise ReportError(f"{capture}: the trace has no device access to compare")
    accesses = trace.accesses
    if regions:
        same = [a for a in accesses if a.region in regions and access_kind(a) == chosen]
        accesses = same or accesses
    stack_id = representative_stack(accesses, chosen)
    if stack_id is None or stack_id not in trace.stacks:
        kinds = sorted({access_kind(x) for x in trace.accesses})
        raise ReportError(
            f"{capture}: no {chosen!r} access with a stack",
            hint=f"Compare a kind this capture has: {', '.join(kinds) or 'it has no accesses'}.",
        )
    h = trace.header
    stack = annotate_stack(
        trace.stacks[stack_id], qemu_version=h.qemu_version, accel=h.accel, source=source
    )
    name = capture.name if capture.is_dir() else capture.parent.name
    used = tuple(
        sorted(
            {
                a.region
                for a in accesses
                if a.stack == stack_id and access_kind(a) == chosen and a.region is not None
            }
        )
    )
    side = DiffSide(name, h.qemu_version, h.accel, stack_id, len(stack.frames), used)
    return side, stack, chosen


def diff_captures(a: Path, b: Path, kind: str | None = None) -> StackDiff:
    """Diff the representative stacks of ``kind`` (default: A's preferred kind) in two captures.

    Raises:
        ReportError: a capture has no access of that kind.
        TraceFormatError: a trace is invalid.
    """
    side_a, stack_a, chosen = pick_side(Path(a), kind)
    side_b, stack_b, _ = pick_side(Path(b), chosen, regions=side_a.regions)
    return StackDiff(chosen, side_a, side_b, tuple(diff_stacks(stack_a, stack_b)))

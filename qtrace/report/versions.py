"""Compare the path of one access kind across several captures (e.g. QEMU 7.2, 10.0.13, 10.2.2).

:func:`build_comparison` takes captures in order (oldest first), picks each capture's most
used stack for every access kind asked for (as a report or ``qtrace diff`` would), annotates
them and aligns them frame by frame into one table: a row per function, a column per capture.
Each row says whether the function is on every path, and whether its file or line moved, so
the reader sees at once that ``flatview_read_continue_step`` is new in 10.x or that
``softmmu/memory.c`` became ``system/memory.c``. Adjacent captures are also diffed with
:func:`qtrace.report.diff.diff_stacks` so the pairwise counts match ``qtrace diff``.

The manifest declares a comparison as a ``[[comparison]]`` table (see
:mod:`qtrace.report.manifest`); the Markdown/HTML come from ``templates/versions.*.j2``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher
from itertools import pairwise
from pathlib import Path

from qtrace.annotate import AnnotatedFrame, AnnotatedStack, Layer, capture_source
from qtrace.errors import ReportError
from qtrace.report.diff import StackDiff, diff_stacks, pick_side
from qtrace.trace import read_trace

__all__ = [
    "ComparedCapture",
    "Comparison",
    "KindComparison",
    "VersionCell",
    "VersionRow",
    "build_comparison",
]

ROW_STATUSES = ("same", "line moved", "file moved", "not on every path")


@dataclass(frozen=True)
class ComparedCapture:
    """One column: a capture, where its report is, what it ran."""

    name: str
    qemu_version: str
    accel: str
    machine: str
    guest: str
    link: str
    command: str
    path: str


@dataclass(frozen=True)
class VersionCell:
    """Where one function is in one capture's stack."""

    location: str
    url: str | None
    source: str | None

    @classmethod
    def of(cls, frame: AnnotatedFrame) -> VersionCell:
        return cls(frame.location, frame.url, frame.source)

    @property
    def file(self) -> str:
        """The location without its line number."""
        return self.location.rsplit(":", 1)[0]


@dataclass(frozen=True)
class VersionRow:
    """One function across the captures (``None``: not on that capture's stack)."""

    layer: Layer
    func: str
    explain: str
    cells: tuple[VersionCell | None, ...]

    @property
    def status(self) -> str:
        """``same``, ``line moved``, ``file moved`` or ``not on every path``."""
        present = [c for c in self.cells if c is not None]
        if len(present) != len(self.cells):
            return "not on every path"
        files = {c.file for c in present}
        if len(files) > 1:
            return "file moved"
        if len({c.location for c in present}) > 1:
            return "line moved"
        return "same"

    @property
    def common_source(self) -> str | None:
        """The source line when every capture has this frame on the same text, else ``None``."""
        texts = {c.source if c is not None else None for c in self.cells}
        text = texts.pop() if len(texts) == 1 else None
        return text or None

    def present_in(self, captures: tuple[ComparedCapture, ...]) -> list[str]:
        """The QEMU versions (or names) of the captures whose stack has this function."""
        return [_label(c) for c, cell in zip(captures, self.cells) if cell is not None]


@dataclass(frozen=True)
class KindComparison:
    """The aligned stacks of one access kind; rows innermost frame first."""

    kind: str
    stacks: tuple[str, ...]
    rows: tuple[VersionRow, ...]
    pairs: tuple[StackDiff, ...]

    def counts(self) -> dict[str, int]:
        """How many rows of each status (every status listed, zeros included)."""
        found = Counter(row.status for row in self.rows)
        return {s: found[s] for s in ROW_STATUSES}

    def changed(self) -> tuple[VersionRow, ...]:
        """The rows that are not the same everywhere."""
        return tuple(r for r in self.rows if r.status != "same")

    def file_moves(
        self,
    ) -> tuple[tuple[tuple[tuple[str, tuple[int, ...]], ...], tuple[str, ...]], ...]:
        """How files moved, with the functions that moved that way.

        Each item is ``(path runs, functions)``: the runs are ``(file, column indexes)`` for
        consecutive columns with the same file, e.g. ``(("softmmu/memory.c", (0,)),
        ("system/memory.c", (1, 2)))``.
        """
        moves: dict[tuple[tuple[str, tuple[int, ...]], ...], list[str]] = {}
        for row in self.rows:
            if row.status != "file moved":
                continue
            runs: list[tuple[str, list[int]]] = []
            for column, cell in enumerate(row.cells):
                assert cell is not None  # "file moved" rows are on every path
                if runs and runs[-1][0] == cell.file:
                    runs[-1][1].append(column)
                else:
                    runs.append((cell.file, [column]))
            key = tuple((file, tuple(columns)) for file, columns in runs)
            moves.setdefault(key, []).append(row.func)
        return tuple((key, tuple(funcs)) for key, funcs in moves.items())


@dataclass(frozen=True)
class Comparison:
    """Several captures compared access kind by access kind."""

    name: str
    title: str
    captures: tuple[ComparedCapture, ...]
    kinds: tuple[KindComparison, ...]


def _label(capture: ComparedCapture) -> str:
    return capture.qemu_version


def _align(stacks: list[AnnotatedStack]) -> list[VersionRow]:
    """Fold the stacks (outermost frame first) into rows by function name; rows innermost first."""
    width = len(stacks)
    rows: list[tuple[AnnotatedFrame, list[VersionCell | None]]] = []
    for column, stack in enumerate(stacks):
        frames = list(reversed(stack.frames))
        matcher = SequenceMatcher(
            a=[f.func for f, _ in rows], b=[f.func for f in frames], autojunk=False
        )
        merged: list[tuple[AnnotatedFrame, list[VersionCell | None]]] = []
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                for (first, cells), frame in zip(rows[i1:i2], frames[j1:j2]):
                    cells[column] = VersionCell.of(frame)
                    merged.append((first, cells))
                continue
            merged += rows[i1:i2]
            for frame in frames[j1:j2]:
                cells = [None] * width
                cells[column] = VersionCell.of(frame)
                merged.append((frame, cells))
        rows = merged
    return [
        VersionRow(first.layer, first.func, first.explain, tuple(cells))
        for first, cells in reversed(rows)
    ]


def build_comparison(
    name: str,
    title: str,
    captures: list[tuple[Path, str, str]],
    kinds: list[str],
    root: Path | None = None,
) -> Comparison:
    """Compare ``captures`` (each ``(directory, report link, capture command)``, oldest first).

    ``root`` is the directory the shown capture paths are relative to (the project root).

    Raises:
        ReportError: fewer than two captures, or a capture lacks an access kind.
        TraceFormatError: a trace is invalid.
    """
    if len(captures) < 2:
        raise ReportError(f"comparison {name!r} needs at least two captures")
    columns = []
    for directory, link, command in captures:
        h = read_trace(directory / "trace.jsonl").header
        shown = directory
        if root is not None and directory.resolve().is_relative_to(root.resolve()):
            shown = directory.resolve().relative_to(root.resolve())
        columns.append(
            ComparedCapture(
                directory.name,
                h.qemu_version,
                h.accel,
                h.machine,
                h.guest,
                link,
                command,
                shown.as_posix(),
            )
        )
    compared = tuple(columns)
    results = []
    for kind in kinds:
        picked = [
            pick_side(directory, kind, capture_source(directory))[:2]
            for directory, _, _ in captures
        ]
        stacks = [stack for _, stack in picked]
        pairs = tuple(
            StackDiff(kind, a, b, tuple(diff_stacks(sa, sb)))
            for (a, sa), (b, sb) in pairwise(picked)
        )
        results.append(
            KindComparison(
                kind, tuple(side.stack for side, _ in picked), tuple(_align(stacks)), pairs
            )
        )
    return Comparison(name, title, compared, tuple(results))

"""The results file of a matrix run (``qtrace-device-matrix/1``): what each capture found.

One JSON document per run or shard: the cells it planned and the result of each cell that
finished. The runner rewrites it after every capture (to a temporary file, then renamed over
the old one), so the file is always whole and an interrupted run keeps every result that
finished. ``merge`` reads any number of them into one table.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qtrace.errors import ReportError
from qtrace.matrix.cells import Cell

__all__ = [
    "RESULTS_FORMAT",
    "BackendSeen",
    "RegionSeen",
    "RunResult",
    "ResultsFile",
    "read_results",
    "write_results",
]

RESULTS_FORMAT = "qtrace-device-matrix/1"


@dataclass(frozen=True)
class RegionSeen:
    """One region of the trace header's region map, as the matrix shows it."""

    name: str
    kind: str
    bar: int | None = None
    space: str = "mmio"
    size: int = 0


@dataclass(frozen=True)
class BackendSeen:
    """A backend process the capture ran beside QEMU (its ``summary.json`` ``backends``):
    which, and what it served in QEMU's place, so the matrix says whose work a trace lacks."""

    name: str
    serves: str = ""


@dataclass(frozen=True)
class RunResult:
    """The outcome of one cell's capture.

    ``status`` is the capture's (``ok``, ``error``, ``timeout``, ``guest-hang``), or
    ``error`` when ``qtrace capture`` stopped before capturing (exit code kept), or
    ``timeout`` when it did not end within the matrix's hard limit. For every run that is
    not ``ok``, ``reason`` is a short named reason, ``category`` groups it (see
    :mod:`qtrace.matrix.reasons`) and ``detail`` keeps the capture's own words.
    ``qtrace_commit`` is the commit of the qtrace that captured it (``+dirty`` when its tree
    had uncommitted changes), so a table merged from runs of several commits says which.
    ``backends`` are the processes that served part of the device beside QEMU.
    """

    device: str
    machine: str
    qemu_version: str
    status: str
    topology: str | None = None
    reason: str | None = None
    category: str | None = None
    detail: str | None = None
    exit_code: int | None = None
    seconds: float = 0.0
    accesses: int = 0
    stacks: int = 0
    handlers_hit: tuple[str, ...] = ()
    regions: tuple[RegionSeen, ...] = ()
    out_dir: str | None = None
    finished: str = ""
    qtrace_commit: str | None = None
    backends: tuple[BackendSeen, ...] = ()

    @property
    def cell(self) -> Cell:
        return Cell(self.device, self.machine, self.qemu_version, self.topology)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunResult:
        """Raises ``KeyError``/``TypeError``/``ValueError`` on a malformed entry."""
        fields = dict(raw)
        fields["handlers_hit"] = tuple(str(h) for h in fields.get("handlers_hit", ()))
        fields["regions"] = tuple(RegionSeen(**r) for r in fields.get("regions", ()))
        fields["backends"] = tuple(BackendSeen(**b) for b in fields.get("backends", ()))
        return cls(**fields)


@dataclass(frozen=True)
class ResultsFile:
    """A results file: what it planned (``planned``: cell keys) and what finished."""

    planned: tuple[Cell, ...]
    results: tuple[RunResult, ...] = ()
    shard: str | None = None
    started: str = ""
    jobs: int = 1
    wall_s: float = 0.0
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _cell_json(cell: Cell) -> dict[str, Any]:
    return asdict(cell)


def write_results(path: Path, results_file: ResultsFile) -> None:
    """Write ``results_file`` to ``path`` atomically (a whole file or the previous one)."""
    doc = {
        "format": RESULTS_FORMAT,
        "shard": results_file.shard,
        "started": results_file.started,
        "jobs": results_file.jobs,
        "wall_s": round(results_file.wall_s, 1),
        "interrupted": results_file.interrupted,
        "extra": results_file.extra,
        "planned": [_cell_json(c) for c in sorted(results_file.planned, key=lambda c: c.key)],
        "results": [r.to_json() for r in sorted(results_file.results, key=lambda r: r.cell.key)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=1)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_results(path: Path) -> ResultsFile:
    """Read a results file.

    Raises:
        ReportError: the file is missing, not JSON, or not ``qtrace-device-matrix/1``.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"cannot read matrix results {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"{path} is not JSON (line {exc.lineno}: {exc.msg})",
            hint="Results files are written by scripts/device_matrix.py --results FILE.",
        ) from exc
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        raise ReportError(
            f"{path} is not a device-matrix results file (format {RESULTS_FORMAT!r})",
            hint="Results files are written by scripts/device_matrix.py --results FILE.",
        )
    try:
        planned = tuple(Cell(**c) for c in doc.get("planned", ()))
        results = tuple(RunResult.from_json(r) for r in doc.get("results", ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"{path}: a malformed entry ({exc})") from exc
    return ResultsFile(
        planned=planned,
        results=results,
        shard=doc.get("shard"),
        started=str(doc.get("started", "")),
        jobs=int(doc.get("jobs", 1)),
        wall_s=float(doc.get("wall_s", 0.0)),
        interrupted=bool(doc.get("interrupted", False)),
        extra=dict(doc.get("extra", {})),
    )

"""Merging results files and rendering the matrix as Markdown (``reports/devices.md``).

Merging takes the union of what the files planned and of their results; when two files hold
a result for the same cell (a shard run twice, a resumed run) the one that finished last
wins. A planned cell with no result is listed as not run, so a missing shard shows. The
Markdown opens with one line per machine (and QEMU version), "N of M PCI devices end ok on
pc (P%)", where M counts the devices planned on that machine; then the table, one row per
cell; then the devices a backend process served in part (what the trace of such a device
does not show: a vhost-user device's virtqueues are the back-end's, not QEMU's); then, grouped
by category, the named reason of every cell that did not end ok.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from qtrace.matrix.cells import Cell, MachineSpec
from qtrace.matrix.results import RegionSeen, ResultsFile, RunResult

__all__ = ["Matrix", "merge", "render_markdown"]


@dataclass(frozen=True)
class Matrix:
    """Merged results: every planned cell, the results, and run facts for the header."""

    planned: tuple[Cell, ...]
    results: tuple[RunResult, ...]
    files: int = 1
    wall_s: float = 0.0
    jobs: tuple[int, ...] = ()
    interrupted: bool = False
    commits: tuple[str, ...] = ()

    @property
    def missing(self) -> tuple[Cell, ...]:
        done = {r.cell for r in self.results}
        return tuple(c for c in self.planned if c not in done)


def _row_key(cell: Cell) -> tuple[str, str, str, str]:
    return (cell.device.lower(), cell.machine, cell.topology or "", cell.qemu_version)


def merge(files: Iterable[ResultsFile]) -> Matrix:
    """One :class:`Matrix` from any number of results files (shards, reruns)."""
    planned: set[Cell] = set()
    latest: dict[Cell, RunResult] = {}
    count, wall_s, jobs, interrupted = 0, 0.0, set(), False
    for results_file in files:
        count += 1
        wall_s += results_file.wall_s
        jobs.add(results_file.jobs)
        interrupted = interrupted or results_file.interrupted
        planned.update(results_file.planned)
        for result in results_file.results:
            planned.add(result.cell)
            old = latest.get(result.cell)
            if old is None or result.finished >= old.finished:
                latest[result.cell] = result
    return Matrix(
        planned=tuple(sorted(planned, key=_row_key)),
        results=tuple(sorted(latest.values(), key=lambda r: _row_key(r.cell))),
        files=count,
        wall_s=wall_s,
        jobs=tuple(sorted(jobs)),
        interrupted=interrupted,
        commits=tuple(sorted({r.qtrace_commit for r in latest.values() if r.qtrace_commit})),
    )


def _cell_text(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _regions(regions: Sequence[RegionSeen]) -> str:
    """The BAR regions (the configuration space, which every device has, is left out)."""
    shown = [r for r in regions if r.kind != "pci-config"]
    if not shown:
        return "—"
    return ", ".join(f"{r.name} ({r.kind})" for r in shown)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _groups(matrix: Matrix) -> list[tuple[MachineSpec, str]]:
    """The (machine, version) groups in the order the summary lists them."""
    groups = {(c.machine_spec, c.qemu_version) for c in matrix.planned}
    return sorted(groups, key=lambda g: (str(g[0]), g[1]))


def _same_reason(runs: Sequence[RunResult]) -> list[tuple[tuple[str, str, str, str], list[str]]]:
    """One row per device, version, status and reason, naming every machine it holds on."""
    rows: dict[tuple[str, str, str, str], list[str]] = {}
    for r in runs:
        key = (r.device, r.qemu_version, r.status, r.reason or r.detail or "—")
        rows.setdefault(key, []).append(str(r.cell.machine_spec))
    return list(rows.items())


def _backend_section(results: Sequence[RunResult]) -> list[str]:
    """Which devices a backend process served in part, per backend and what it served."""
    served: dict[tuple[str, str], dict[str, list[str]]] = {}
    for r in results:
        for backend in r.backends:
            devices = served.setdefault((backend.name, backend.serves), {})
            devices.setdefault(r.device, []).append(str(r.cell.machine_spec))
    if not served:
        return []
    out = [
        "",
        "## Devices served in part by a backend process",
        "",
        "These devices started with a process beside QEMU (`qtrace/devices/start.toml`, "
        "`[[backend]]`): what their traces show is QEMU's side of the device only.",
        "",
        "| backend | in QEMU's place | devices |",
        "| --- | --- | --- |",
    ]
    for (name, serves), devices in sorted(served.items()):
        listed = ", ".join(
            f"`{device}` ({', '.join(machines)})" for device, machines in sorted(devices.items())
        )
        out.append(f"| `{name}` | {_cell_text(serves) or '—'} | {listed} |")
    return out


def summary_lines(matrix: Matrix) -> list[str]:
    """ "N of M PCI devices end ok on pc (P%)" per machine (and version when several)."""
    versions = {c.qemu_version for c in matrix.planned}
    ok = {r.cell for r in matrix.results if r.ok}
    done = {r.cell for r in matrix.results}
    lines = []
    for spec, version in _groups(matrix):
        cells = [c for c in matrix.planned if c.machine_spec == spec and c.qemu_version == version]
        n_ok = sum(1 for c in cells if c in ok)
        on = f"{spec}" + (f", QEMU {version}" if len(versions) > 1 else "")
        line = f"{n_ok} of {len(cells)} PCI devices end ok on {on} ({_percent(n_ok, len(cells))})"
        not_run = sum(1 for c in cells if c not in done)
        if not_run:
            line += f"; {not_run} not run"
        lines.append(line)
    return lines


def render_markdown(matrix: Matrix, *, command: str = "scripts/device_matrix.py") -> str:
    """The Markdown report: summary lines, the table, the reasons, the cells not run."""
    versions = sorted({c.qemu_version for c in matrix.planned})
    out = ["# PCI devices: the capture matrix", ""]
    out.append(
        f"Every PCI device `qtrace devices` lists, captured with the probe guest by "
        f"`{command}` (QEMU {', '.join(versions) or '—'}; "
        f"{len(matrix.results)} captures from {matrix.files} results file"
        f"{'s' if matrix.files != 1 else ''}"
        + (
            f", {matrix.wall_s / 60:.1f} min of wall time with --jobs "
            f"{'/'.join(str(j) for j in matrix.jobs)}"
            if matrix.wall_s
            else ""
        )
        + (f"; qtrace {', '.join(matrix.commits)}" if matrix.commits else "")
        + "). Regenerate: see README.md, *Device matrix*."
    )
    out.append("")
    out += [f"- **{line}**" for line in summary_lines(matrix)]
    if matrix.interrupted:
        out.append("- the run was interrupted: some cells have no result")
    out += [
        "",
        "Regions are the trace header's region map (name and kind: `io` regions exit to a "
        "handler, `ram`/`rom` ones stay in the guest; the configuration space, which every "
        "device has, is left out); `—` where the capture recorded none. "
        "Handlers hit are the distinct functions that handled an access.",
        "",
        "| device | machine | QEMU | status | regions | handlers hit | accesses | stacks | s |",
        "| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in matrix.results:
        status = r.status if r.ok else f"**{r.status}**"
        out.append(
            "| "
            + " | ".join(
                _cell_text(part)
                for part in (
                    f"`{r.device}`",
                    str(r.cell.machine_spec),
                    r.qemu_version,
                    status,
                    _regions(r.regions),
                    ", ".join(f"`{h}`" for h in r.handlers_hit) or "—",
                    str(r.accesses),
                    str(r.stacks),
                    f"{r.seconds:.1f}",
                )
            )
            + " |"
        )
    out += _backend_section(matrix.results)
    failed = [r for r in matrix.results if not r.ok]
    out += ["", "## Why the others did not end ok", ""]
    if not failed:
        out.append("Every capture ended ok.")
    by_category: dict[str, list[RunResult]] = defaultdict(list)
    for r in failed:
        by_category[r.category or "other"].append(r)
    for category, runs in sorted(by_category.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        devices = len({r.device for r in runs})
        out += [f"### {category} ({devices} device{'s' if devices != 1 else ''})", ""]
        out += ["| device | machines | QEMU | status | reason |", "| --- | --- | --- | --- | --- |"]
        for (device, version, status, reason), machines in _same_reason(runs):
            out.append(
                f"| `{device}` | {', '.join(machines)} | {version} | {status} | "
                f"{_cell_text(reason)} |"
            )
        out.append("")
    if matrix.missing:
        out += ["## Not run", ""]
        out += [
            f"- `{c.device}` on {c.machine_spec}, QEMU {c.qemu_version}" for c in matrix.missing
        ]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"

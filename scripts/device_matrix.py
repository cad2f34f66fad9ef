#!/usr/bin/env python3
"""The device matrix: capture every PCI device QEMU lists, on each machine, into one table.

    .venv/bin/python scripts/device_matrix.py [--machines pc,q35] [--qemu-version 10.2.2]
        [--devices a,b] [--jobs 3] [--timeout 120] [--shard K/N] [--results FILE]
        [--resume [--retry-failed]] [--accel auto] [--out reports/devices.md]
        [--captures DIR] [--list]
    .venv/bin/python scripts/device_matrix.py merge RESULTS.json... [--out reports/devices.md]

Run: lists the PCI devices of each QEMU version's debug image (what `qtrace devices`
lists), and for each device and machine runs `qtrace capture DEVICE --machine M --json
--out DIR` as its own process, --jobs at a time, each bounded by --timeout (passed to the
capture) and a hard limit of --timeout + 120 s. Each result (status, the trace header's
regions with their kind, the distinct handlers hit, accesses, distinct stacks, seconds and,
for a run that does not end ok, a short named reason) is written to --results as soon as
the capture ends, so Ctrl-C keeps every finished result (and --resume runs only what is
missing, --resume --retry-failed also what did not end ok). Without --shard the table is
written too (--out). The captures run the qtrace this script is in: run it from a clean
clone to capture a commit while the working tree is being edited.

Shards: --shard K/N runs the K-th of N stable parts of the (device, machine, version)
list, for a CI matrix or any job runner to fan out; `merge` turns the shards' results
files into the table. Captures go to --captures (default captures/matrix-<utc>/).

Exit codes: 0 the matrix ran (devices that fail are results, not errors), 1 it could not
run (an unreadable results file, QEMU's device list failed), 2 usage, 3 environment (no
Docker, no image, a full disk, a qtrace that does not import: the matrix stops at the first
such capture and keeps no result for it), 130 interrupted (finished results kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from qtrace.devices import unstartable_reason  # noqa: E402
from qtrace.errors import QtraceError, UsageError  # noqa: E402
from qtrace.image.versions import DEFAULT_QEMU_VERSION  # noqa: E402
from qtrace.matrix import (  # noqa: E402
    Cell,
    ResultsFile,
    RunResult,
    Shard,
    capture_command,
    merge,
    outcome,
    parse_machines,
    plan_cells,
    read_results,
    render_markdown,
    run_matrix,
    write_results,
)
from qtrace.matrix.outcome import CaptureOutput  # noqa: E402
from qtrace.matrix.runner import CaptureProcesses  # noqa: E402

err = Console(stderr=True, soft_wrap=True)  # one line per result in CI logs too

HARD_LIMIT_EXTRA_S = 120.0
"""The hard limit on one capture is its --timeout plus this (container, guest build, cleanup)."""


def _utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _commit() -> str:
    """The qtrace commit the captures ran from (``+dirty`` with uncommitted changes)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _unstartable(cell: Cell) -> str | None:
    """Why the devices' registry says the cell's device cannot start in a capture."""
    return unstartable_reason(cell.device, cell.machine, cell.topology or "root-bus")


def _plan(args: argparse.Namespace) -> list[Cell]:
    from qtrace.launch.devices import list_pci_devices

    machines = parse_machines(args.machines)
    shard = Shard.parse(args.shard) if args.shard else None  # a usage error before any Docker
    wanted = _split(args.devices) if args.devices else None
    cells: list[Cell] = []
    for version in _split(args.qemu_version):
        listed = [d.name for d in list_pci_devices(version)]
        if wanted is not None:
            unknown = sorted(set(wanted) - set(listed))
            if unknown:
                raise UsageError(
                    f"not PCI devices of QEMU {version}: {', '.join(unknown)}",
                    hint="Run `qtrace devices` to list them.",
                )
            listed = [d for d in listed if d in wanted]
        cells += plan_cells(listed, machines, [version])
    cells = sorted(set(cells), key=lambda c: c.key)
    if shard is not None:
        cells = shard.select(cells)
    return cells


def _results_path(args: argparse.Namespace) -> Path:
    if args.results is not None:
        return Path(args.results)
    if args.shard:
        shard = Shard.parse(args.shard)
        return Path("results") / f"devices-shard-{shard.index}-of-{shard.count}.json"
    return Path("reports/devices.json")


def _line(result: RunResult) -> str:
    where = f"{result.device} on {result.cell.machine_spec} (QEMU {result.qemu_version})"
    if result.ok:
        return (
            f"[green]ok[/]    {where}: {result.accesses} accesses, "
            f"{len(result.handlers_hit)} handlers, {len(result.regions)} regions, "
            f"{result.seconds:.1f} s"
        )
    return f"[red]{result.status}[/] {where}: {result.reason} ({result.seconds:.1f} s)"


def _terminating_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: need at least 1")
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout}: need a positive number of seconds")
    results_path = _results_path(args)
    kept: dict[Cell, RunResult] = {}
    earlier_wall_s = 0.0  # a resumed run's table counts the wall time of every run
    if results_path.exists():
        if not args.resume:
            raise UsageError(
                f"{results_path} exists",
                hint="Pass --resume to keep its results and run only the missing cells, "
                "or --results another file.",
            )
        earlier = read_results(results_path)
        earlier_wall_s = earlier.wall_s
        kept = {r.cell: r for r in earlier.results if r.ok or not args.retry_failed}
    cells = _plan(args)
    if args.list:
        for cell in cells:
            print(cell.key)
        return 0
    todo = [c for c in cells if c not in kept]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    captures = Path(args.captures) if args.captures else Path("captures") / f"matrix-{stamp}"
    processes = CaptureProcesses(
        lambda cell, out: capture_command(cell, out, args.timeout, accel=args.accel),
        captures,
        hard_limit_s=args.timeout + HARD_LIMIT_EXTRA_S,
        # The captures run the same qtrace as this script (a snapshot's, if run from one).
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            ),
        },
    )
    started, started_at = time.monotonic(), _utc()
    commit = _commit()
    results = dict(kept)

    def save(interrupted: bool = False) -> None:
        write_results(
            results_path,
            ResultsFile(
                planned=tuple(cells),
                results=tuple(results.values()),
                shard=args.shard,
                started=started_at,
                jobs=args.jobs,
                wall_s=earlier_wall_s + time.monotonic() - started,
                interrupted=interrupted,
                extra={
                    "captures": str(captures),
                    "timeout_s": args.timeout,
                    "qtrace_commit": commit,
                },
            ),
        )

    def execute(cell: Cell) -> RunResult:
        try:
            result = outcome(cell, processes.run(cell), _unstartable)
        except OSError as exc:  # the capture could not be started, or its files read
            result = outcome(
                cell,
                CaptureOutput(None, "", f"error: {exc}", processes.out_dir(cell), 0.0),
                _unstartable,
            )
        return dataclasses.replace(result, qtrace_commit=commit)

    err.print(
        f"[cyan]•[/] {len(todo)} captures to run"
        + (f" ({len(kept)} kept from {results_path})" if kept else "")
        + (f", shard {args.shard}" if args.shard else "")
        + f", {args.jobs} at a time; results in {results_path}, captures in {captures}"
    )
    save()
    previous = {
        sig: signal.signal(sig, _terminating_as_interrupt)
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[running]}"),
        console=err,
        transient=True,
    )
    running: list[str] = []
    with progress:
        task = progress.add_task("matrix", total=len(todo), running="")

        def on_start(cell: Cell) -> None:
            running.append(f"{cell.device}@{cell.machine_spec}")
            progress.update(task, running=", ".join(running))

        def on_done(result: RunResult) -> None:
            results[result.cell] = result
            save()
            name = f"{result.device}@{result.cell.machine_spec}"
            if name in running:
                running.remove(name)
            progress.update(task, advance=1, running=", ".join(running))
            progress.console.print(_line(result), highlight=False)

        try:
            run = run_matrix(
                todo,
                args.jobs,
                execute,
                on_start=on_start,
                on_done=on_done,
                interrupt=processes.interrupt,
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    save(interrupted=run.interrupted or run.aborted is not None)
    n_ok = sum(1 for r in results.values() if r.ok)
    err.print(
        f"[cyan]•[/] {n_ok} of {len(results)} results ok ({len(cells)} cells planned), "
        f"{time.monotonic() - started:.0f} s; results in {results_path}"
    )
    if run.aborted is not None:
        err.print(f"[bold red]error:[/] stopped: the environment failed ({run.aborted})")
        return 3
    if run.interrupted:
        err.print(
            f"[yellow]interrupted[/]: {len(results)} results kept in {results_path}; "
            "run again with --resume to do the rest"
        )
        return 130
    out = args.out if args.out is not None else (None if args.shard else "reports/devices.md")
    if out is not None:
        _write_table([results_path], Path(out))
    return 0


def _write_table(paths: Sequence[Path], out: Path) -> None:
    matrix = merge(read_results(p) for p in paths)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_markdown(matrix), encoding="utf-8")
    err.print(f"[cyan]•[/] wrote {out} ({len(matrix.results)} captures)")
    if matrix.missing:
        err.print(f"[yellow]warning:[/] {len(matrix.missing)} planned cells have no result")


def cmd_merge(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.results]
    _write_table(paths, Path(args.out))
    return 0


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="device_matrix.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--machines",
        default="pc,q35",
        help="comma-separated machines, each MACHINE or MACHINE:TOPOLOGY "
        "(passed as --topology), e.g. pc,q35,q35:root-port (default: pc,q35)",
    )
    parser.add_argument(
        "--qemu-version",
        default=DEFAULT_QEMU_VERSION,
        help=f"comma-separated QEMU versions with a debug image (default: {DEFAULT_QEMU_VERSION})",
    )
    parser.add_argument("--devices", help="comma-separated devices (default: every PCI device)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=3,
        help="captures at once (default: 3, measured best on 2 cores; see README)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="per-capture --timeout in seconds (default: 120; hard limit +120 s)",
    )
    parser.add_argument(
        "--accel", default="auto", choices=["auto", "kvm", "tcg"], help="(default: auto)"
    )
    parser.add_argument("--shard", metavar="K/N", help="run only shard K of N (1-based)")
    parser.add_argument(
        "--results",
        metavar="FILE",
        help="results JSON, rewritten after every capture (default: reports/devices.json, "
        "or results/devices-shard-K-of-N.json with --shard)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="keep the results already in --results, run the rest"
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume: run again the cells whose result is not ok",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="the Markdown table (default: reports/devices.md; none with --shard unless given)",
    )
    parser.add_argument("--captures", metavar="DIR", help="default: captures/matrix-<utc>/")
    parser.add_argument(
        "--list", action="store_true", help="print the cells (of the shard) and exit"
    )
    parser.epilog = "Merge shards: device_matrix.py merge RESULTS.json... [--out FILE]"
    return parser


def merge_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="device_matrix.py merge",
        description="Turn one or many results files (shards) into the Markdown table; when "
        "two files hold the same cell, the result that finished last wins.",
    )
    parser.add_argument("results", nargs="+", help="results JSON files")
    parser.add_argument("--out", default="reports/devices.md", help="(default: reports/devices.md)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["merge"]:
            return cmd_merge(merge_parser().parse_args(argv[1:]))
        return cmd_run(run_parser().parse_args(argv))
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        return 130
    except QtraceError as exc:
        err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        if exc.hint:
            err.print(f"[yellow]hint:[/] {exc.hint}", highlight=False)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

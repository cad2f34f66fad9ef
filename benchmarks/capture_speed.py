"""How much does tracing slow the guest down? Four ways, side by side, in one run.

    .venv/bin/python benchmarks/capture_speed.py [--guest linux] [--accel tcg]
        [--write reports/benchmarks.md]

(a) QEMU alone, (b) QEMU with ``-trace 'memory_region_ops_*'`` (no stacks), (c) the manual
way automated: gdb/MI stopping at every handler hit and asking ``-stack-list-frames``
over MI (reading only to each result record), measured over its first N hits and
extrapolated, (d) ``qtrace capture`` (every access with its value and its own stack id).
Each runs in the same debug image and container setup; the table gives wall time and
the ratio to (a). This is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from qtrace.docker_env import LabelledContainer, connect
from qtrace.launch.capture import (
    MOUNT_OUT,
    CaptureRequest,
    capture_argv,
    capture_container_spec,
    guest_plan,
    run_capture,
)
from qtrace.image.layout import QEMU_BINARY
from qtrace.launch.gdb_session import GdbSession, shell_join
from qtrace.launch.live import LiveStats
from qtrace.trace import read_trace


@dataclass
class Row:
    name: str
    wall_s: float
    hits: int | None = None
    note: str = ""


class _Quiet:
    def status(self, text: str) -> None:
        print(f"  . {text}", file=sys.stderr)

    def progress(self, stats: LiveStats, elapsed_s: float, armed: bool) -> None:
        return None


def _argv(guest: str, device: str, accel: str, load_rounds: int = 0) -> list[str]:
    return capture_argv(device, accel, "pc", guest_plan(guest, device, "pc", load_rounds))


def _container(out: Path, version: str, accel: str) -> LabelledContainer:
    return LabelledContainer(connect(), capture_container_spec(out, version, kvm=accel == "kvm"))


def _build_guest(container: LabelledContainer, guest: str, device: str) -> None:
    for command in guest_plan(guest, device, "pc", 0).build_commands:
        result = container.exec(list(command), workdir=MOUNT_OUT)
        if result.exit_code != 0:
            raise SystemExit(f"guest build failed: {result.output[-2000:]}")


def plain_runs(args: argparse.Namespace, work: Path, load_rounds: int = 0) -> tuple[Row, Row]:
    out = work / f"plain{load_rounds}"
    out.mkdir()
    argv = _argv(args.guest, args.device, args.accel, load_rounds)
    with _container(out, args.qemu_version, args.accel) as container:
        _build_guest(container, args.guest, args.device)
        started = time.monotonic()
        container.exec(argv)
        plain = Row("(a) QEMU, no gdb", time.monotonic() - started)
        started = time.monotonic()
        container.exec(
            [*argv, "-trace", "memory_region_ops_*", "-D", f"{MOUNT_OUT}/trace-events.log"]
        )
        traced_s = time.monotonic() - started
    events = (out / "trace-events.log").read_text(errors="replace")
    device_ops = sum(
        1
        for line in events.splitlines()
        if "memory_region_ops" in line and f"name '{args.device}" in line
    )
    return plain, Row(
        "(b) QEMU -trace 'memory_region_ops_*'", traced_s, device_ops, "values, no stacks"
    )


def mi_loop(args: argparse.Namespace, work: Path, total_hits: int, load_rounds: int = 0) -> Row:
    """The manual way, automated: stop at every hit, ask for the stack over MI."""
    out = work / f"mi{load_rounds}"
    out.mkdir()
    argv = _argv(args.guest, args.device, args.accel, load_rounds)
    with _container(out, args.qemu_version, args.accel) as container:
        _build_guest(container, args.guest, args.device)
        with GdbSession(container, QEMU_BINARY, out / "gdb.log") as gdb:
            gdb.command(f"-exec-arguments {shell_join(argv[1:])} >{MOUNT_OUT}/qemu.log 2>&1")
            for signal in ("SIGUSR1", "SIGUSR2", "SIGPIPE"):
                gdb.console(f"handle {signal} nostop noprint pass")
            for handler in (f"{args.device}_mmio_read", f"{args.device}_mmio_write"):
                gdb.command(f"-break-insert {handler}")
            gdb.command("-exec-run")
            hits = 0
            started = time.monotonic()
            while hits < args.mi_hits:
                stop = gdb.wait_for_stop(120)
                if stop is None or stop.reason != "breakpoint-hit":
                    break
                if hits == 0:
                    started = time.monotonic()  # measure the per-hit loop, not the boot
                hits += 1
                gdb.command("-stack-list-frames")
                gdb.command("-exec-continue")
            elapsed = time.monotonic() - started
    rate = hits / elapsed if elapsed > 0 else 0.0
    extrapolated = total_hits / rate if rate else float("inf")
    return Row(
        "(c) pygdbmi: stop + -stack-list-frames per hit",
        extrapolated,
        total_hits,
        f"{rate:.0f} hits/s over its first {hits} hits; time extrapolated to {total_hits} hits",
    )


def qtrace_run(args: argparse.Namespace, work: Path, load_rounds: int = 0) -> tuple[Row, int]:
    out = work / f"qtrace{load_rounds}"
    request = CaptureRequest(
        device=args.device,
        accel=args.accel,
        guest=args.guest,
        qemu_version=args.qemu_version,
        out_dir=out,
        timeout_s=args.timeout,
        hang_timeout_s=args.timeout,
        load_rounds=load_rounds,
    )
    started = time.monotonic()
    result = run_capture(request, _Quiet())
    total = time.monotonic() - started
    trace = read_trace(out)
    under_gdb = trace.end.elapsed_s if trace.end else total
    rate = len(trace.accesses) / under_gdb if under_gdb else 0.0
    row = Row(
        "(d) qtrace capture",
        under_gdb,
        len(trace.accesses),
        f"status {result.status}; {rate:.0f} hits/s; {len(trace.stacks)} distinct stacks, "
        f"{len(trace.irqs)} irq, {len(trace.dmas)} dma; whole command incl. container, "
        f"guest build and gdb start: {total:.1f} s",
    )
    return row, len(trace.accesses)


def render(rows: list[Row], args: argparse.Namespace) -> str:
    base = rows[0].wall_s
    lines = [
        "| way | wall time (s) | ratio to (a) | device accesses | notes |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        hits = "" if row.hits is None else str(row.hits)
        lines.append(
            f"| {row.name} | {row.wall_s:.1f} | {row.wall_s / base:.2f}x | {hits} | {row.note} |"
        )
    mi = next(r for r in rows if r.name.startswith("(c)"))
    qt = next(r for r in rows if r.name.startswith("(d)"))
    mi_rate = (mi.hits or 0) / mi.wall_s if mi.wall_s else 0
    qt_rate = (qt.hits or 0) / qt.wall_s if qt.wall_s else 0
    goal = (
        f"\nGoal: (d) at most 1.5x the wall time of (a): measured **{qt.wall_s / base:.2f}x**. "
        f"Over the whole run (boot and idle included) (d) handled {qt_rate:.0f} device accesses/s; "
        f"(c) managed {mi_rate:.0f} hits/s while hitting — see the per-hit table below for a "
        f"like-for-like rate.\n"
    )
    machine = (
        f"{platform.node()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )
    header = (
        f"Guest `{args.guest}`, device `{args.device}`, accelerator `{args.accel}`, "
        f"QEMU {args.qemu_version}; "
        f"machine: {machine}; {time.strftime('%Y-%m-%d', time.gmtime())}.\n"
        f"Command: `.venv/bin/python benchmarks/capture_speed.py --guest {args.guest} "
        f"--accel {args.accel}`\n\n"
    )
    return header + "\n".join(lines) + "\n" + goal


def dense_rates(args: argparse.Namespace, work: Path) -> str:
    """Per-hit throughput on a hit-dense workload: the probe guest reading registers in a loop.

    On the linux guest most wall time is the guest waiting (timers, ARP replies), so the
    hit rate there says little about the cost of a hit. Here: (c) hits/s over its first N
    hits; (d) accesses / (its time under gdb - QEMU's time alone for the same guest).
    """
    dense = argparse.Namespace(**{**vars(args), "guest": "probe"})
    plain, _ = plain_runs(dense, work, args.dense_rounds)
    qt, hits = qtrace_run(dense, work, args.dense_rounds)
    mi = mi_loop(dense, work, hits, args.dense_rounds)
    mi_rate = hits / mi.wall_s if mi.wall_s else 0.0
    added = max(qt.wall_s - plain.wall_s, 1e-9)
    qt_rate = hits / added
    return (
        f"\n## Per-hit throughput (hit-dense workload)\n\n"
        f"Probe guest, `--probe-rounds {args.dense_rounds}` (4 register reads a round), "
        f"{args.accel}: "
        f"{hits} device accesses; QEMU alone {plain.wall_s:.2f} s.\n\n"
        f"| way | hits/s | per hit |\n| --- | ---: | ---: |\n"
        f"| (c) pygdbmi stop + `-stack-list-frames` per hit | {mi_rate:.0f} | "
        f"{1000 / mi_rate if mi_rate else 0:.2f} ms |\n"
        f"| (d) qtrace capture (value + own stack id per hit) | {qt_rate:.0f} | "
        f"{1000 / qt_rate:.3f} ms |\n\n"
        f"(d) / (c) hit rate: **{qt_rate / mi_rate:.0f}x** (goal: at least 20x).\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--guest", default="linux")
    parser.add_argument("--device", default="e1000")
    parser.add_argument("--accel", default="tcg")
    parser.add_argument("--qemu-version", default="10.2.2")
    parser.add_argument("--mi-hits", type=int, default=2000, help="hits measured for (c)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--dense-rounds",
        type=int,
        default=5000,
        help="probe rounds for the per-hit table (0: skip)",
    )
    parser.add_argument("--write", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qtrace-bench-") as tmp:
        work = Path(tmp)
        print("(a)/(b) plain QEMU ...", file=sys.stderr)
        plain, traced = plain_runs(args, work)
        print("(d) qtrace capture ...", file=sys.stderr)
        qt, total_hits = qtrace_run(args, work)
        print("(c) pygdbmi MI loop ...", file=sys.stderr)
        mi = mi_loop(args, work, total_hits)
        table = render([plain, traced, mi, qt], args)
        if args.dense_rounds:
            print("per-hit throughput on the probe guest ...", file=sys.stderr)
            table += dense_rates(args, work)
    print(table)
    if args.write:
        args.write.write_text("# Capture speed\n\n" + table)


if __name__ == "__main__":
    main()

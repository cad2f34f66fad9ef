"""How much does tracing slow the guest down? Five ways, side by side, in one run.

    .venv/bin/python benchmarks/capture_speed.py [--guest linux] [--accel tcg]
        [--device e1000] [--dense-rounds 5000] [--repeat 3] [--write reports/benchmarks.md]

(a) QEMU alone, (b) QEMU with ``-trace 'memory_region_ops_*'`` (no stacks), (c) the manual
way automated: gdb/MI stopping at every handler hit and asking ``-stack-list-frames``
over MI (reading only to each result record), measured over its first N hits and
extrapolated, (d) ``qtrace capture`` (every access with its value and its own stack id),
(f) ``qtrace capture --collector fast`` (register and configuration-space accesses with
values and stack ids, interrupts, DMA copies and, under KVM, exits; QEMU never stopped;
its time is QEMU's run under the tracepoints, from ``vm_start`` to its exit).
Each runs in the same debug image and container setup, and QEMU gets what a capture gives
the device (its start rules and pack: virtio-blk's drive, the e1000's frame source, with
their backend processes) through the capture's own argv builder; the table gives wall time
and the ratio to (a). (b) and (c) count and break on the device's register handlers as
(d)'s trace header names them.

Then the cost of one hit, on a hit-dense workload (the probe guest reading registers in a
loop): (a) QEMU's own time per access, (e) gdb's floor (a Python breakpoint on the read
handler whose ``stop()`` only counts: what any collector that stops QEMU pays), (d) the
breakpoint collector, (f) the fast collector and (c) the MI loop, each way ``--repeat``
times in turn, with the median and the load average at each run (the machines have 2
cores and are shared).

And the firmware guest (iPXE polling the NIC without end), per access over its polling
loop: (b) for ``--firmware-seconds``, (d) bounded by ``--firmware-breakpoint-hits``, (f)
bounded by ``--firmware-hits`` (a million by default: the fast collector drains its buffer
as QEMU runs). This is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from qtrace.devices import DeviceStart
from qtrace.docker_env import LabelledContainer, connect
from qtrace.image.layout import QEMU_BINARY
from qtrace.launch.backends import BackendProcesses
from qtrace.launch.capture import (
    MOUNT_OUT,
    CaptureRequest,
    ask_device_start,
    capture_argv,
    capture_container_spec,
    create_start_files,
    guest_plan,
    run_capture,
)
from qtrace.launch.gdb_session import GdbSession, shell_join
from qtrace.launch.live import LiveStats
from qtrace.trace import Trace, read_trace


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


def _argv(
    guest: str, device: str, accel: str, start: DeviceStart, load_rounds: int = 0
) -> list[str]:
    return capture_argv(device, accel, "pc", guest_plan(guest, device, "pc", load_rounds), start)


def _device_start(container: LabelledContainer, out: Path, device: str) -> DeviceStart:
    """What the device needs to start, as a capture gives it: this QEMU's property list
    matched against its pack and the start rules (virtio-blk's drive, the e1000's frame
    source), its files created in the run directory once for all the QEMU runs there."""
    start = ask_device_start(container, device)
    create_start_files(start, out, reuse=True)
    return start


def _container(out: Path, version: str, accel: str) -> LabelledContainer:
    return LabelledContainer(connect(), capture_container_spec(out, version, kvm=accel == "kvm"))


def _build_guest(container: LabelledContainer, guest: str, device: str) -> None:
    for command in guest_plan(guest, device, "pc", 0).build_commands:
        result = container.exec(list(command), workdir=MOUNT_OUT)
        if result.exit_code != 0:
            raise SystemExit(f"guest build failed: {result.output[-2000:]}")


def _backends(container: LabelledContainer, out: Path, start: DeviceStart) -> BackendProcesses:
    """The processes the device's QEMU command line needs beside it (the e1000's frame
    source for the probe's receive test), as a capture starts them: one set per QEMU run."""
    return BackendProcesses(container, start.backends, out, MOUNT_OUT)


def device_handlers(trace: Trace) -> list[str]:
    """The register handlers a capture broke on: those of the device's regions that exit to
    QEMU (``io``), as its trace header lists them (configuration space left out)."""
    names = (
        name
        for region in trace.header.regions
        if region.kind == "io"
        for name in region.handlers.values()
    )
    return list(dict.fromkeys(names))


def device_ops(events_log: Path, trace: Trace) -> int:
    """The device's accesses in QEMU's ``memory_region_ops_*`` trace: the lines naming one of
    the device's ``io`` regions (by the names a capture's trace header gives them)."""
    names = {f"name '{r.name}'" for r in trace.header.regions if r.kind == "io"}
    events = events_log.read_text(errors="replace")
    return sum(
        1
        for line in events.splitlines()
        if "memory_region_ops" in line and any(name in line for name in names)
    )


def plain_runs(args: argparse.Namespace, work: Path, load_rounds: int = 0) -> tuple[Row, Row]:
    """(a) and (b); (b)'s accesses are counted once a capture has named the device's regions
    (:func:`device_ops` on ``work/plain<N>/trace-events.log``)."""
    out = work / f"plain{load_rounds}"
    out.mkdir()
    with _container(out, args.qemu_version, args.accel) as container:
        start = _device_start(container, out, args.device)
        argv = _argv(args.guest, args.device, args.accel, start, load_rounds)
        _build_guest(container, args.guest, args.device)
        with _backends(container, out, start):
            started = time.monotonic()
            container.exec(argv)
            plain = Row("(a) QEMU, no gdb", time.monotonic() - started)
        with _backends(container, out, start):
            started = time.monotonic()
            container.exec(
                [*argv, "-trace", "memory_region_ops_*", "-D", f"{MOUNT_OUT}/trace-events.log"]
            )
            traced_s = time.monotonic() - started
    return plain, Row("(b) QEMU -trace 'memory_region_ops_*'", traced_s, None, "values, no stacks")


def mi_loop(
    args: argparse.Namespace,
    work: Path,
    handlers: list[str],
    total_hits: int,
    load_rounds: int = 0,
    skip: int = 0,
) -> Row:
    """The manual way, automated: a breakpoint on each of the device's ``handlers``, stop at
    every hit, ask for the stack over MI (timed from hit ``skip`` on: the hit-dense guest's
    register loop comes after its waits). A guest with fewer hits than ``--mi-hits`` runs to
    its end under the loop, which is then timed as it ran, from QEMU's start."""
    out = work / f"mi{load_rounds}"
    out.mkdir()
    with _container(out, args.qemu_version, args.accel) as container:
        start = _device_start(container, out, args.device)
        argv = _argv(args.guest, args.device, args.accel, start, load_rounds)
        _build_guest(container, args.guest, args.device)
        backends = _backends(container, out, start)
        with backends, GdbSession(container, QEMU_BINARY, out / "gdb.log") as gdb:
            gdb.command(f"-exec-arguments {shell_join(argv[1:])} >{MOUNT_OUT}/qemu.log 2>&1")
            for signal in ("SIGUSR1", "SIGUSR2", "SIGPIPE"):
                gdb.console(f"handle {signal} nostop noprint pass")
            for handler in handlers:
                gdb.command(f"-break-insert {handler}")
            run_started = time.monotonic()
            gdb.command("-exec-run")
            hits = 0
            started = time.monotonic()
            ended = False
            while hits < args.mi_hits + skip:
                stop = gdb.wait_for_stop(args.timeout)
                if stop is None or stop.reason != "breakpoint-hit":
                    ended = stop is not None and stop.reason.startswith("exited")
                    break
                if hits == skip:
                    started = time.monotonic()  # measure the per-hit loop, not the boot
                hits += 1
                gdb.command("-stack-list-frames")
                gdb.command("-exec-continue")
            elapsed = time.monotonic() - started
            whole_s = time.monotonic() - run_started
            hits -= skip
    rate = hits / elapsed if elapsed > 0 else 0.0
    name = "(c) pygdbmi: stop + -stack-list-frames per hit"
    if ended and not skip:
        return Row(
            name,
            whole_s,
            hits,
            f"ran to the guest's end: every hit stopped ({rate:.0f} hits/s from the first hit "
            f"on); breakpoints on {len(handlers)} handlers",
        )
    extrapolated = total_hits / rate if rate else float("inf")
    return Row(
        name,
        extrapolated,
        total_hits,
        f"{rate:.0f} hits/s over its first {hits} hits; time extrapolated to {total_hits} hits",
    )


def qtrace_run(
    args: argparse.Namespace,
    work: Path,
    load_rounds: int = 0,
    name: str = "",
    collector: str = "breakpoint",
) -> tuple[Row, Trace]:
    out = work / (name or f"qtrace{load_rounds}-{collector}")
    request = CaptureRequest(
        device=args.device,
        accel=args.accel,
        guest=args.guest,
        qemu_version=args.qemu_version,
        out_dir=out,
        timeout_s=args.timeout,
        hang_timeout_s=args.timeout,
        load_rounds=load_rounds,
        collector=collector,
    )
    started = time.monotonic()
    result = run_capture(request, _Quiet())
    total = time.monotonic() - started
    trace = read_trace(out)
    under_gdb = trace.end.elapsed_s if trace.end else total
    rate = len(trace.accesses) / under_gdb if under_gdb else 0.0
    config = sum(1 for a in trace.accesses if a.space == "pci-config")
    kinds = trace.header.extra.get("record_async")
    recorded = ", ".join(map(str, kinds)) if isinstance(kinds, list) and kinds else "none"
    if collector == "fast":
        checks = (trace.end.fast_checks if trace.end else None) or {}
        traced = checks.get("traced_s")
        return Row(
            "(f) qtrace capture --collector fast",
            float(traced) if isinstance(traced, (int, float)) else under_gdb,
            len(trace.accesses),
            f"status {result.status}; register and config accesses with values and stacks, "
            f"{len(trace.irqs)} irq, {len(trace.dmas)} dma, {len(trace.exits)} exits, no async "
            f"({len(trace.stacks)} distinct stacks); self-checks "
            f"{'ok' if checks.get('ok') else checks}; time: QEMU from tstart (vm_start) to its "
            f"exit under the tracepoints; whole command incl. "
            f"container, guest build, gdbserver start and reading the buffer: {total:.1f} s",
        ), trace
    row = Row(
        "(d) qtrace capture",
        under_gdb,
        len(trace.accesses),
        f"status {result.status}; {rate:.0f} hits/s; {config} of the accesses to the "
        f"configuration space; {len(trace.stacks)} distinct stacks, "
        f"{len(trace.irqs)} irq, {len(trace.dmas)} dma, {len(trace.asyncs)} async "
        f"(recorded: {recorded}); whole command incl. container, "
        f"guest build and gdb start: {total:.1f} s",
    )
    return row, trace


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
    fast = next((r for r in rows if r.name.startswith("(f)")), None)
    fast_goal = (
        f" Goal: (f) at most 1.1x of (a): measured **{fast.wall_s / base:.2f}x**."
        if fast is not None
        else ""
    )
    goal = (
        f"\nGoal: (d) at most 1.5x the wall time of (a): measured **{qt.wall_s / base:.2f}x**."
        f"{fast_goal} "
        f"Over the whole run (boot and idle included) (d) handled {qt_rate:.0f} device accesses/s; "
        f"(c) managed {mi_rate:.0f} hits/s while hitting"
        + (
            " — see the per-hit table below for a like-for-like rate.\n"
            if args.dense_rounds
            else ".\n"
        )
    )
    header = (
        f"Guest `{args.guest}`, device `{args.device}`, accelerator `{args.accel}`, "
        f"QEMU {args.qemu_version}; machine: {machine()}.\n"
        f"Command: `.venv/bin/python benchmarks/capture_speed.py {' '.join(sys.argv[1:])}`\n\n"
    )
    return header + "\n".join(lines) + "\n" + goal


def machine() -> str:
    """Where and when this ran."""
    return (
        f"{platform.node()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d', time.gmtime())}"
    )


# gdb's floor: a Python breakpoint on the read handler that only counts its hits, and
# times the longest run of them with no pause of 0.1 s (the register loop, as dense_span).
_COUNTING_SCRIPT = """
import time, gdb
run = {"first": 0.0, "last": None, "hits": 0, "best": (0, 0.0)}
def close():
    if run["hits"] > run["best"][0]:
        run["best"] = (run["hits"], run["last"] - run["first"])
class Count(gdb.Breakpoint):
    def stop(self):
        now = time.perf_counter()
        if run["last"] is None or now - run["last"] >= 0.1:
            if run["last"] is not None:
                close()
            run["first"], run["hits"] = now, 0
        run["hits"] += 1
        run["last"] = now
        return False
Count("%(handler)s", internal=True)
def done(event):
    if run["last"] is not None:
        close()
    print("qtrace-bench hits=%%d span_s=%%.6f" %% run["best"])
gdb.events.exited.connect(done)
"""


@dataclass
class DenseRun:
    """One round of the hit-dense measurements (seconds; ``load``: 1-minute load average)."""

    load: float
    qemu_per_access_s: float
    floor_per_hit_s: float
    qtrace_per_hit_s: float
    qtrace_whole_per_hit_s: float
    hits: int
    status: str
    fast_per_hit_s: float
    fast_status: str


def qemu_alone(args: argparse.Namespace, work: Path, rounds: int) -> tuple[float, int]:
    """QEMU alone on the probe guest: (wall time, register accesses it did quietly)."""
    out = work / f"alone{rounds}-{time.monotonic_ns()}"
    out.mkdir()
    with _container(out, args.qemu_version, args.accel) as container:
        start = _device_start(container, out, args.device)
        _build_guest(container, "probe", args.device)
        with _backends(container, out, start):
            started = time.monotonic()
            container.exec(_argv("probe", args.device, args.accel, start, rounds))
            wall_s = time.monotonic() - started
    found = re.findall(r"suppressed ([0-9]+)", (out / "serial.log").read_text(errors="replace"))
    return wall_s, sum(int(n) for n in found)


def counting_floor(args: argparse.Namespace, work: Path, rounds: int) -> float:
    """Seconds per hit of a breakpoint on the read handler whose ``stop()`` only counts."""
    out = work / f"floor{rounds}-{time.monotonic_ns()}"
    out.mkdir()
    (out / "count.py").write_text(_COUNTING_SCRIPT % {"handler": f"{args.device}_mmio_read"})
    with _container(out, args.qemu_version, args.accel) as container:
        start = _device_start(container, out, args.device)
        argv = _argv("probe", args.device, args.accel, start, rounds)
        _build_guest(container, "probe", args.device)
        gdb = ["gdb", "-nx", "-batch", "-ex", "handle SIGUSR1 SIGUSR2 SIGPIPE nostop noprint pass"]
        with _backends(container, out, start):
            result = container.exec(
                [*gdb, "-x", f"{MOUNT_OUT}/count.py", "-ex", "run", "--args", *argv],
                workdir=MOUNT_OUT,
            )
    found = re.search(r"qtrace-bench hits=([0-9]+) span_s=([0-9.]+)", result.output)
    if found is None or int(found[1]) < 2:
        raise SystemExit(f"the counting breakpoint did not run: {result.output[-2000:]}")
    return float(found[2]) / (int(found[1]) - 1)


def dense_run(args: argparse.Namespace, work: Path, index: int) -> DenseRun:
    """Each way once, in turn, on the same guest."""
    dense = argparse.Namespace(**{**vars(args), "guest": "probe"})
    load = os.getloadavg()[0]
    base_s, _ = qemu_alone(dense, work, 0)
    plain_s, quiet = qemu_alone(dense, work, args.dense_rounds)
    qemu_per_access = (plain_s - base_s) / quiet if quiet else 0.0
    floor = counting_floor(dense, work, args.dense_rounds)
    row, trace = qtrace_run(dense, work, args.dense_rounds, f"qtrace-dense-{index}")
    hits = len(trace.accesses)
    span_per_hit = dense_span([a.t for a in trace.accesses if a.t is not None])
    fast_row, fast = qtrace_run(dense, work, args.dense_rounds, f"qtrace-fast-dense-{index}",
                                collector="fast")  # fmt: skip
    fast_span = dense_span([a.t for a in fast.accesses if a.t is not None])
    return DenseRun(
        load=load,
        qemu_per_access_s=qemu_per_access,
        floor_per_hit_s=floor,
        qtrace_per_hit_s=span_per_hit - qemu_per_access,
        qtrace_whole_per_hit_s=(row.wall_s - plain_s) / hits if hits else 0.0,
        hits=hits,
        status=row.note.split(";", 1)[0],
        fast_per_hit_s=fast_span - qemu_per_access,
        fast_status=fast_row.note.split(";", 1)[0],
    )


def dense_span(stamps: list[float], idle_s: float = 0.1) -> float:
    """Seconds per access over the longest run of accesses with no pause of ``idle_s`` or
    more between two of them: the register loop. Collector start-up, QEMU's boot and the
    guest's own waits (the probe waits for its frames to come back, a second or so) are
    left out; the hiccups of a shared machine within the loop are not."""
    best, start = (0, 0), 0
    for i in range(1, len(stamps) + 1):
        if i == len(stamps) or stamps[i] - stamps[i - 1] >= idle_s:
            best = max(best, (i - start, start))
            start = i
    count, first = best
    return (stamps[first + count - 1] - stamps[first]) / (count - 1) if count > 1 else 0.0


def _us(values: list[float]) -> str:
    """Median (min-max) of seconds, in microseconds."""
    micro = [v * 1e6 for v in values]
    if len(micro) == 1:
        return f"{micro[0]:.1f} us"
    return f"{statistics.median(micro):.1f} us ({min(micro):.1f}-{max(micro):.1f})"


def dense_rates(args: argparse.Namespace, work: Path, table_above: bool = True) -> str:
    """Per-hit cost on a hit-dense workload: the probe guest reading registers in a loop.

    On the linux guest most wall time is the guest waiting (timers, ARP replies), so the
    hit rate there says little about the cost of a hit. Here each way runs ``--repeat``
    times in turn (QEMU alone, gdb's counting floor, qtrace), then the MI loop once.
    """
    runs = []
    for index in range(args.repeat):
        print(f"  hit-dense round {index + 1}/{args.repeat} ...", file=sys.stderr)
        runs.append(dense_run(args, work, index))
    dense = argparse.Namespace(**{**vars(args), "guest": "probe"})
    handlers = device_handlers(read_trace(work / f"qtrace-dense-{len(runs) - 1}"))
    mi = mi_loop(dense, work, handlers, runs[-1].hits, args.dense_rounds, skip=args.mi_skip)
    mi_per_hit = mi.wall_s / runs[-1].hits if runs[-1].hits else 0.0
    qtrace = [r.qtrace_per_hit_s for r in runs]
    fast = [max(r.fast_per_hit_s, 1e-9) for r in runs]
    floor = [r.floor_per_hit_s for r in runs]
    loads = ", ".join(f"{r.load:.2f}" for r in runs)
    return (
        f"\n## Per-hit cost (hit-dense workload)\n\n"
        f"{'' if table_above else 'Machine: ' + machine() + '. '}"
        f"Probe guest, `--probe-rounds {args.dense_rounds}` (4 register reads a round), "
        f"{args.accel}: {runs[-1].hits} device accesses a capture; {len(runs)} rounds, each "
        f"way once per round in turn; median (min-max). Load average (1 min) at the start "
        f"of each round: {loads}.\n\n"
        f"| way | per hit | hits/s | how |\n| --- | ---: | ---: | --- |\n"
        f"| (a) QEMU alone | {_us([r.qemu_per_access_s for r in runs])} | | (QEMU's time with "
        f"the loop - without it) / its accesses |\n"
        f"| (e) gdb's floor: a Python breakpoint on the read handler that only counts | "
        f"{_us(floor)} | {1 / statistics.median(floor):.0f} | the hits' span / hits: gdb's "
        f"own stop and resume |\n"
        f"| (d) qtrace capture (value + own stack id + guest PC per hit) | {_us(qtrace)} | "
        f"{1 / statistics.median(qtrace):.0f} | the accesses' timestamps over the loop "
        f"(no pause of 0.1 s) / accesses - (a) |\n"
        f"| (f) qtrace capture --collector fast (value + own stack id per hit, QEMU never "
        f"stopped) | {_us(fast)} | {1 / statistics.median(fast):.0f} | the accesses' agent "
        f"timestamps over the loop / accesses - (a) |\n"
        f"| (c) pygdbmi stop + `-stack-list-frames` per hit | {mi_per_hit * 1e6:.0f} us | "
        f"{1 / mi_per_hit if mi_per_hit else 0:.0f} | its first {args.mi_hits} hits |\n\n"
        f"(d) over gdb's floor: **{statistics.median(qtrace) / statistics.median(floor):.2f}x**; "
        f"(d) / (c) hit rate: **{mi_per_hit / statistics.median(qtrace):.0f}x**. Counted over "
        f"the whole capture instead ((time under gdb - QEMU alone) / accesses: collector "
        f"start-up, boot and discovery included, as this table measured before), (d) is "
        f"{_us([r.qtrace_whole_per_hit_s for r in runs])} a hit. (d) / (f) per hit: "
        f"**{statistics.median(qtrace) / statistics.median(fast):.0f}x**. Statuses: "
        f"{', '.join(r.status for r in runs)}; fast: {', '.join(r.fast_status for r in runs)}.\n"
    )


_TRACE_STAMP = re.compile(r"T([0-9]+):([0-9]+):([0-9.]+)Z memory_region_ops_")
"""A ``-msg timestamp=on`` line of the log trace backend: ``2026-12-03T08:19:14.167484Z ...``."""


def firmware_traced(args: argparse.Namespace, work: Path, regions: Trace) -> tuple[int, float]:
    """(b) on the firmware guest: QEMU with ``-trace 'memory_region_ops_*'`` (timestamped)
    for ``--firmware-seconds``; the device's accesses in the log and the seconds per access
    over iPXE's polling (:func:`dense_span` of their timestamps)."""
    out = work / "firmware-trace"
    out.mkdir()
    names = {f"name '{r.name}'" for r in regions.header.regions if r.kind == "io"}
    with _container(out, args.qemu_version, args.accel) as container:
        start = _device_start(container, out, args.device)
        argv = _argv("firmware", args.device, args.accel, start)
        _build_guest(container, "firmware", args.device)
        with _backends(container, out, start):
            container.exec(
                ["timeout", "-s", "INT", str(args.firmware_seconds), *argv, "-msg",
                 "timestamp=on", "-trace", "memory_region_ops_*", "-D",
                 f"{MOUNT_OUT}/trace-events.log"]
            )  # fmt: skip
    stamps = []
    with (out / "trace-events.log").open(errors="replace") as log:
        for line in log:
            found = _TRACE_STAMP.search(line)
            if found and any(name in line for name in names):
                hours, minutes, seconds = found.groups()
                stamps.append(int(hours) * 3600 + int(minutes) * 60 + float(seconds))
    return len(stamps), dense_span(stamps)


def firmware_rates(args: argparse.Namespace, work: Path, table_above: bool = True) -> str:
    """The firmware guest (SeaBIOS, then iPXE polling the NIC without end), bounded by
    ``--max-hits``: per access over the polling loop, each way once in turn."""
    fw = argparse.Namespace(**{**vars(args), "guest": "firmware"})
    load = os.getloadavg()[0]
    print("  firmware: (f) fast collector ...", file=sys.stderr)
    fast_out = work / "firmware-fast"
    request = CaptureRequest(
        device=args.device, accel=args.accel, guest=fw.guest, qemu_version=args.qemu_version,
        out_dir=fast_out, timeout_s=args.timeout, hang_timeout_s=args.timeout,
        max_hits=args.firmware_hits, collector="fast",
    )  # fmt: skip
    started = time.monotonic()
    fast_result = run_capture(request, _Quiet())
    fast_wall = time.monotonic() - started
    fast = read_trace(fast_out)
    checks = (fast.end.fast_checks if fast.end else None) or {}
    fast_span = dense_span([a.t for a in fast.accesses if a.t is not None])
    print("  firmware: (b) QEMU -trace ...", file=sys.stderr)
    traced, traced_span = firmware_traced(fw, work, fast)
    print("  firmware: (d) breakpoint collector ...", file=sys.stderr)
    slow_out = work / "firmware-breakpoint"
    started = time.monotonic()
    slow_result = run_capture(
        CaptureRequest(
            device=args.device, accel=args.accel, guest=fw.guest,
            qemu_version=args.qemu_version, out_dir=slow_out, timeout_s=args.timeout,
            hang_timeout_s=args.timeout, max_hits=args.firmware_breakpoint_hits,
        ),
        _Quiet(),
    )  # fmt: skip
    slow_wall = time.monotonic() - started
    slow = read_trace(slow_out)
    slow_span = dense_span([a.t for a in slow.accesses if a.t is not None])
    full = {"breakpoint": slow_span * 4_000_000, "fast": fast_span * 4_000_000}
    return (
        f"\n## Firmware guest (iPXE polling, bounded by --max-hits)\n\n"
        f"{'' if table_above else 'Machine: ' + machine() + '. '}"
        f"SeaBIOS, then the e1000's iPXE ROM polling the NIC without end, {args.accel}; "
        f"each way once, in turn; load average (1 min) at the start: {load:.2f}. Per access: "
        f"the accesses' timestamps over the polling loop (the longest run without a pause of "
        f"0.1 s) / accesses, QEMU's own time included. QEMU alone cannot be timed per "
        f"access (nothing counts them); (b) is the closest to it.\n\n"
        f"| way | accesses | per access | whole command | notes |\n"
        f"| --- | ---: | ---: | ---: | --- |\n"
        f"| (b) QEMU -trace 'memory_region_ops_*' ({args.firmware_seconds:.0f} s) | {traced} | "
        f"{traced_span * 1e6:.1f} us | {args.firmware_seconds:.0f} s | values, no stacks |\n"
        f"| (d) qtrace capture --max-hits {args.firmware_breakpoint_hits} | "
        f"{len(slow.accesses)} | {slow_span * 1e6:.1f} us | {slow_wall:.0f} s | status "
        f"{slow_result.status}; everything recorded; {len(slow.stacks)} stacks |\n"
        f"| (f) qtrace capture --collector fast --max-hits {args.firmware_hits} | "
        f"{len(fast.accesses)} | {fast_span * 1e6:.1f} us | {fast_wall:.0f} s | status "
        f"{fast_result.status}; self-checks {'ok' if checks.get('ok') else checks}; "
        f"{checks.get('hits_by_agent')} hits by the agent, {checks.get('beyond_max_hits')} "
        f"past the limit; {checks.get('segments')} drains of the buffer; QEMU ran traced "
        f"{checks.get('traced_s')} s; {len(fast.stacks)} stacks |\n\n"
        f"iPXE's ~4 million polling accesses of a 40 s firmware run (ENVIRONMENT.md) at these "
        f"rates: (d) {full['breakpoint'] / 60:.0f} min, (f) {full['fast']:.0f} s of QEMU "
        f"traced. (d) / (f) per access: **{slow_span / fast_span if fast_span else 0:.0f}x**.\n"
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
    parser.add_argument(
        "--mi-skip",
        type=int,
        default=300,
        help="hits (c) lets pass before timing, per-hit table (the probe's waits come first)",
    )
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--dense-rounds",
        type=int,
        default=5000,
        help="probe rounds for the per-hit table (0: skip)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of the per-hit table (the median is given)"
    )
    parser.add_argument(
        "--dense-only", action="store_true", help="only the per-hit table (no linux-guest table)"
    )
    parser.add_argument(
        "--firmware-hits", type=int, default=1_000_000,
        help="--max-hits of the fast collector on the firmware guest (0: skip that table)",
    )  # fmt: skip
    parser.add_argument(
        "--firmware-breakpoint-hits", type=int, default=60_000,
        help="--max-hits of the breakpoint collector on the firmware guest",
    )  # fmt: skip
    parser.add_argument(
        "--firmware-seconds", type=float, default=20.0,
        help="how long (b) runs on the firmware guest",
    )  # fmt: skip
    parser.add_argument(
        "--firmware-only", action="store_true", help="only the firmware guest's table"
    )
    parser.add_argument("--write", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qtrace-bench-") as tmp:
        work = Path(tmp)
        table = ""
        if not (args.dense_only or args.firmware_only):
            print("(a)/(b) plain QEMU ...", file=sys.stderr)
            plain, traced = plain_runs(args, work)
            print("(d) qtrace capture ...", file=sys.stderr)
            qt, trace = qtrace_run(args, work)
            traced.hits = device_ops(work / "plain0" / "trace-events.log", trace)
            print("(f) qtrace capture --collector fast ...", file=sys.stderr)
            fast, _ = qtrace_run(args, work, collector="fast")
            print("(c) pygdbmi MI loop ...", file=sys.stderr)
            mi = mi_loop(args, work, device_handlers(trace), len(trace.accesses))
            table = render([plain, traced, mi, qt, fast], args)
            print(table, flush=True)  # before the per-hit table's runs, which take long
        if args.firmware_hits:
            print("the firmware guest ...", file=sys.stderr)
            firmware = firmware_rates(args, work, table_above=bool(table))
            print(firmware, flush=True)
            table += firmware
        if args.firmware_only:
            args.dense_rounds = 0
        if args.dense_rounds:
            print("per-hit throughput on the probe guest ...", file=sys.stderr)
            dense = dense_rates(args, work, table_above=bool(table))
            print(dense)
            table += dense
    if args.write:
        args.write.write_text("# Capture speed\n\n" + table)


if __name__ == "__main__":
    main()

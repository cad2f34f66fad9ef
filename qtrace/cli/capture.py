"""``qtrace capture``: record how QEMU handles every access to a device.

Termination signals are the CLI's business (library code installs no handlers): while the
command runs, SIGTERM and SIGHUP (what ``timeout``, CI runners, systemd, ``docker stop`` and
a closed terminal send) are delivered as :class:`~qtrace.launch.interrupts.SignalInterrupt`,
a KeyboardInterrupt, so they end a capture exactly like Ctrl-C: QEMU stopped, the trace
closed with an ``end`` record saying ``interrupted`` and naming the signal, the container
removed; then the exit code is 128 + the signal (143 for SIGTERM, 129 for SIGHUP), through
:class:`~qtrace.errors.Interrupted` like Ctrl-C's 130. A capture that ends with a status other
than ok is a :class:`~qtrace.errors.CaptureFailed` (exit 1) after its summary is printed.

After the capture, the command writes ``report.md`` and ``report.html`` into the run directory
(the report ``qtrace report`` writes) whenever the trace has device accesses, also when the
capture did not end ok, and prints under the summary the answer: the path of the report's
representative access, the findings in short and where the HTML report is. A report that
cannot be made is a warning, never the capture's failure: the evidence is on disk and
``qtrace report`` can be run on it again.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from qtrace.image.builder import BuildRequest, build_image, find_qemu_image
from qtrace.image.versions import DEFAULT_QEMU_VERSION
from qtrace.cli.app import qtrace_command
from qtrace.cli.console import console, err_console
from qtrace.docker_env import connect
from qtrace.errors import CaptureFailed, QtraceError, SignalInterrupt, UsageError
from qtrace.launch import evidence
from qtrace.launch.capture import CaptureRequest, CaptureResult, run_capture
from qtrace.launch.live import LiveStats
from qtrace.launch.out_dir import OUT_DIR_RULE
from qtrace.report.model import CaptureReport, build_report
from qtrace.report.render import write_report
from qtrace.report.terminal import answer_renderables
from qtrace.trace.kinds import Accel, AccelChoice, CaptureStatus, Guest, Machine, Topology

__all__ = ["capture"]

logger = logging.getLogger(__name__)


class _LiveView:
    """The live display: hits, distinct stacks, accesses per register, elapsed."""

    def __init__(self, live: Live | None) -> None:
        self._live = live

    def status(self, text: str) -> None:
        err_console.print(f"[cyan]•[/] {text}")

    def progress(self, stats: LiveStats, elapsed_s: float, armed: bool) -> None:
        if self._live is None:
            return
        table = Table(
            title=(
                f"capturing — {elapsed_s:5.1f} s — {'armed' if armed else 'waiting for the guest'}"
            )
        )
        table.add_column("accesses", justify="right")
        table.add_column("exits", justify="right")
        table.add_column("distinct stacks", justify="right")
        table.add_column("busiest registers")
        busiest = ", ".join(
            f"{space}+{offset:#x}×{n}" for (space, offset), n in stats.per_register.most_common(4)
        )
        table.add_row(str(stats.accesses), str(stats.exits), str(stats.stacks), busiest)
        self._live.update(table)


def _summary_table(result: CaptureResult) -> Table:
    table = Table(
        title=f"qtrace capture: {result.summary['device']} ({result.accel})", show_header=False
    )
    table.add_column("what")
    table.add_column("value")
    style = "green" if result.status == "ok" else "red"
    table.add_row(
        "status", f"[{style}]{result.status}[/]" + (f" — {result.reason}" if result.reason else "")
    )
    table.add_row("accesses", str(result.accesses))
    table.add_row("distinct stacks", str(result.stacks))
    exit_reasons = result.summary.get("exit_reasons")
    if exit_reasons is None and result.accel is Accel.KVM:
        # A fast capture that looked for no exit: "none" would be a finding it cannot make.
        table.add_row("KVM exits", "not recorded by the fast collector")
    else:
        table.add_row(
            "KVM exits recorded",
            ", ".join(f"{k} {v}" for k, v in (exit_reasons or {}).items()) or "none (TCG)",
        )
    for backend in result.summary.get("backends", ()):
        # Whose work the trace lacks: what a process beside QEMU served in its place.
        table.add_row(f"backend {backend['name']}", f"{backend['serves']} ({backend['log']})")
    noted = result.summary.get("collector_errors")
    if noted:
        # Not a failed capture, but not to be read as a clean one either.
        first = (result.summary.get("collector_error_messages") or ["(see gdb.log)"])[0]
        table.add_row(
            "collector errors", f"[yellow]{noted}[/] (first: {first}; all in gdb.log)"
        )
    table.add_row("elapsed", f"{result.elapsed_s:.1f} s")
    table.add_row("output", str(result.out_dir))
    return table


@qtrace_command("capture")
def capture(
    device: Annotated[
        str,
        typer.Argument(
            help="QEMU device type name, e.g. e1000, e1000e, rtl8139 (see `qtrace devices`)."
        ),
    ] = "e1000",
    accel: Annotated[
        AccelChoice, typer.Option("--accel", help="kvm, tcg, or auto (KVM when usable, else TCG).")
    ] = AccelChoice.AUTO,
    machine: Annotated[
        Machine,
        typer.Option("--machine", help="pc (config via 0xCF8/0xCFC) or q35 (PCIe, MMCONFIG)."),
    ] = Machine.PC,
    device_prop: Annotated[
        list[str] | None,
        typer.Option(
            "--device-prop",
            metavar="KEY=VALUE",
            help=(
                "Set a property of the captured device's -device option, e.g. ioeventfd=off "
                "(repeatable; wins over what its pack and the start rules set)."
            ),
        ),
    ] = None,
    topology: Annotated[
        Topology,
        typer.Option(
            "--topology",
            help=(
                "Where the device sits: root-bus (00:05.0 on the root bus, default) or "
                "root-port (q35 only: behind a pcie-root-port at 00:04.0, so the device is "
                "01:00.0 and the guest enumerates a bridge, as on real PCIe)."
            ),
        ),
    ] = Topology.ROOT_BUS,
    guest: Annotated[
        Guest,
        typer.Option(
            "--guest",
            help=(
                "The guest that drives the device: probe (bare-metal, default); linux (Debian's "
                "kernel and driver, ends by itself; under nested KVM it hangs, use --accel tcg); "
                "firmware (SeaBIOS and the device's iPXE ROM, never ends by itself: bound it "
                "with --max-hits)."
            ),
        ),
    ] = Guest.PROBE,
    qemu_version: Annotated[
        str, typer.Option("--qemu-version", help="Which debug image to use.")
    ] = DEFAULT_QEMU_VERSION,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=(
                f"Output directory (default captures/<device>-<accel>-<utc>/). "
                f"Rule: {OUT_DIR_RULE}."
            ),
        ),
    ] = None,
    max_hits: Annotated[
        int, typer.Option("--max-hits", help="Stop after this many device accesses (0: no limit).")
    ] = 0,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Stop after this many seconds.")
    ] = 180.0,
    hang_timeout: Annotated[
        float,
        typer.Option(
            "--hang-timeout",
            help=(
                "Call the guest hung after this many seconds without progress (before the "
                "guest has started, while the firmware boots: at least 120 s)."
            ),
        ),
    ] = 45.0,
    probe_rounds: Annotated[
        int,
        typer.Option(
            "--probe-rounds",
            help=(
                "Probe guest, e1000: extra rounds of register reads (a longer run for load tests)."
            ),
        ),
    ] = 0,
    collector: Annotated[
        str,
        typer.Option(
            "--collector",
            metavar="breakpoint|fast",
            help=(
                "breakpoint (default): gdb stops QEMU at every hit and records everything "
                "(accesses, stacks, config space, irq, DMA, async work, KVM exits). fast: "
                "fast tracepoints under gdbserver, QEMU never stopped; records the device's "
                "register and config-space accesses, its interrupts (INTx, MSI, MSI-X), its "
                "DMA copies through its bus-master address space and, under KVM, the exits, "
                "with values and stacks (no async work, DMA mappings or virtqueue-ring "
                "caches), "
                "draining its trace buffer while QEMU runs (a million accesses take about a "
                "minute), and checks that every hit was decoded."
            ),
        ),
    ] = "breakpoint",
    build: Annotated[
        bool, typer.Option("--build", help="Build the debug image first if it is missing.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout instead of a table.")
    ] = False,
) -> None:
    """Run QEMU under gdb with a guest that drives DEVICE and record every access.

    Each access is recorded with its value, the KVM exit that caused it and its own
    (deduplicated) backtrace. A device that needs a backend to start (a drive, an audio
    backend, a memory backend, ...) gets one, chosen from the property list this QEMU
    gives for it and from its device pack. Output: trace.jsonl (qtrace-trace/1), qemu.log, gdb.log,
    serial.log, summary.json, and report.md and report.html (what `qtrace report` writes), whose
    answer the command prints under its summary: the path of one access from the vCPU thread to
    the device's handler, and what the trace shows about where the work ran. Exit code 0 only
    when the capture finished normally.
    """
    request = CaptureRequest(
        device=device,
        accel=accel,
        machine=machine,
        guest=guest,
        topology=topology,
        device_props=_device_props(device_prop or []),
        qemu_version=qemu_version,
        out_dir=out,
        max_hits=max_hits,
        timeout_s=timeout,
        hang_timeout_s=hang_timeout,
        load_rounds=probe_rounds,
        collector=collector,
    )
    with _signals_as_interrupts():  # an interrupt leaves as Interrupted (qtrace_command)
        result = _run(request, build, as_json)
        report, written = _write_reports(result)
    if as_json:
        console.print_json(json.dumps(result.summary))
    else:
        console.print(_summary_table(result))
        if report is not None:
            html = next((str(p) for p in written if p.suffix == ".html"), None)
            console.print()
            for renderable in answer_renderables(report, html):
                console.print(renderable)
    if written and result.status is not CaptureStatus.OK:
        err_console.print(
            f"[yellow]note:[/] the capture ended {result.status}: the report covers the "
            f"{result.accesses} accesses recorded until then."
        )
    if result.status is not CaptureStatus.OK:
        raise CaptureFailed(result.status, result.reason, result.out_dir, hint=result.hint)


def _write_reports(result: CaptureResult) -> tuple[CaptureReport | None, list[Path]]:
    """``report.md`` and ``report.html`` in the run directory, when the trace has accesses;
    the summary (and ``summary.json``) then lists them. Never raises: a report that cannot be
    made is a warning (the capture's evidence is on disk either way)."""
    if result.accesses == 0 or not (result.out_dir / "trace.jsonl").is_file():
        return None, []
    retry = f"`qtrace report {result.out_dir}` tries again."
    try:
        report = build_report(result.out_dir)
        written = write_report(report, result.out_dir)
    except QtraceError as exc:
        err_console.print(f"[yellow]warning:[/] no report: {exc.message} {retry}")
        return None, []
    except Exception as exc:  # a bug in the report must not fail a finished capture
        logger.debug("report of %s failed", result.out_dir, exc_info=True)
        err_console.print(
            f"[yellow]warning:[/] no report: {type(exc).__name__}: {exc} (a bug in qtrace's "
            f"report; -vv shows the traceback). {retry}"
        )
        return None, []
    files = {*result.summary.get("files", ()), *(path.name for path in written)}
    result.summary["files"] = sorted(files)
    try:
        evidence.write_json(result.out_dir, "summary.json", result.summary)
    except OSError as exc:
        err_console.print(f"[yellow]warning:[/] summary.json not updated: {exc.strerror}")
    return report, written


def _run(request: CaptureRequest, build: bool, as_json: bool) -> CaptureResult:
    if build and find_qemu_image(connect(), request.qemu_version) is None:
        err_console.print(
            f"[cyan]•[/] building the debug image for QEMU {request.qemu_version} first"
        )
        build_image(BuildRequest(qemu_version=request.qemu_version), _QuietBuild())
    use_live = err_console.is_terminal and not as_json
    with (
        Live(console=err_console, transient=True, refresh_per_second=4)
        if use_live
        else _NoLive() as live
    ):
        return run_capture(request, _LiveView(live if use_live else None))


_TERMINATING = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """While in the block, SIGTERM/SIGHUP raise :class:`SignalInterrupt` (once: a second
    signal during the cleanup it starts is noted, not raised, so the cleanup finishes)."""
    caught: list[int] = []

    def deliver(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)
        if len(caught) == 1:
            raise SignalInterrupt(signum)
        err_console.print(f"[yellow]{signal.Signals(signum).name} again[/]: still cleaning up.")

    previous = {sig: signal.signal(sig, deliver) for sig in _TERMINATING}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _NoLive:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class _QuietBuild:
    def stage(self, name: str) -> None:
        err_console.print(f"[cyan]stage[/] {name}")

    def step(self, done: int, total: int) -> None:
        if done % 200 == 0 or done == total:
            err_console.print(f"  compile [{done}/{total}]")

    def line(self, text: str) -> None:
        return None


def _device_props(values: list[str]) -> tuple[tuple[str, str], ...]:
    """``--device-prop KEY=VALUE`` options as pairs (a bare KEY is refused: QEMU would read
    it as ``KEY=on``, which is too easy to type by accident)."""
    pairs = []
    for value in values:
        key, sep, setting = value.partition("=")
        if not sep or not key or "," in value:
            raise UsageError(
                f"--device-prop {value!r} is not KEY=VALUE.",
                hint="Give one property per option, e.g. --device-prop ioeventfd=off.",
            )
        pairs.append((key, setting))
    return tuple(pairs)

"""``qtrace capture``: run QEMU under gdb in a container and record every device access.

The steps, each leaving evidence in the run directory (``captures/<device>-<accel>-<utc>/``):

1. check the request (image present, device known, KVM usable) and write ``manifest.json``;
2. start the capture container (no network, only /dev/kvm) and build the guest in it;
3. discover the device's handlers and kvm_cpu_exec's exit cases in this QEMU's source and
   write ``collector.json`` for the collector inside gdb;
4. run gdb (MI) -> QEMU; the collector writes ``trace.jsonl`` itself, the host only arms it
   when the guest starts, watches for the end, a timeout, a hang or Ctrl-C;
5. make sure the trace ends with an ``end`` record, copy the source lines the stacks
   point at (``source-snippets.json``), write ``summary.json``; remove the container.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import docker

from qtrace import __version__
from qtrace.annotate.source import ReaderSourceProvider, write_source_snippets
from qtrace.image.builder import LABEL_QEMU_VERSION, find_qemu_image, qemu_image_tag
from qtrace.discover.device import check_device_name, discover_handlers, parse_device_help
from qtrace.discover.exit_cases import KVM_ALL_PATH, locate_exit_cases
from qtrace.docker_env import connect, new_run_id
from qtrace.errors import CollectorError, ImageMissing, KvmUnavailable, LaunchFailure, QtraceError, UsageError
from qtrace.guests.firmware_plan import firmware_plan
from qtrace.guests.linux_plan import linux_plan
from qtrace.guests.plan import GuestPlan
from qtrace.guests.probe_plan import probe_plan
from qtrace.guests.probe_output import read_serial_log
from qtrace.launch.collector_config import CollectorConfig, ExitCaseSpec
from qtrace.launch.container import CaptureContainer, ContainerSource, ContainerSpec
from qtrace.launch.gdb_session import GdbSession, shell_join
from qtrace.launch.kvm import kvm_usable
from qtrace.launch.live import LiveStats, TraceTail
from qtrace.launch.qemu_argv import QEMU_BINARY, QemuConfig, qemu_argv
from qtrace.paths import gdbscripts_dir, guests_dir
from qtrace.trace import SCHEMA_VERSION, End, TraceWriter, iter_records, repair_partial_tail
from qtrace.trace.schema import Stack

__all__ = ["CaptureRequest", "CaptureResult", "CaptureObserver", "run_capture", "default_out_dir", "MACHINES", "GUESTS"]

logger = logging.getLogger(__name__)

MACHINES = ("pc", "q35")
GUESTS = ("probe", "linux", "firmware")
ACCELS = ("kvm", "tcg", "auto")
DEVICE_SLOT = 5
MOUNT_OUT = "/out"
MOUNT_GDBSCRIPTS = "/qtrace/gdbscripts"
MOUNT_GUESTS = "/qtrace/guests"
# Only the frame's own line: reports quote QEMU line by line as evidence, never whole passages.
SNIPPET_CONTEXT_LINES = 0
QUIET_BEFORE_LIVENESS_CHECK_S = 5.0
LIVENESS_CHECK_EVERY_S = 2.0


class CaptureObserver(Protocol):
    """Receives the capture's progress (the CLI draws it)."""

    def status(self, text: str) -> None: ...

    def progress(self, stats: LiveStats, elapsed_s: float, armed: bool) -> None: ...


@dataclass(frozen=True)
class CaptureRequest:
    device: str = "e1000"
    accel: str = "auto"
    machine: str = "pc"
    guest: str = "probe"
    qemu_version: str = "10.2.2"
    out_dir: Path | None = None
    max_hits: int = 0
    timeout_s: float = 180.0
    hang_timeout_s: float = 45.0
    load_rounds: int = 0


@dataclass
class CaptureResult:
    out_dir: Path
    status: str
    reason: str | None
    accel: str
    accesses: int
    stacks: int
    exits: int
    elapsed_s: float
    summary: dict[str, Any] = field(default_factory=dict)


def _qemu_alive(container: CaptureContainer) -> bool:
    """Is a QEMU process still running in the container? A killed QEMU can stay a zombie
    while gdb, its tracer, has not reaped it: that counts as dead. (``comm`` is cut to
    15 characters.)"""
    states = container.exec(["ps", "-C", "qemu-system-x86", "-o", "stat="]).output.split()
    return any(not state.startswith("Z") for state in states)


def guest_plan(guest: str, device: str, machine: str, load_rounds: int = 0) -> GuestPlan:
    """The plan of the named guest kind (see ``qtrace.guests``)."""
    if guest == "probe":
        return probe_plan(device, machine, DEVICE_SLOT, MOUNT_GUESTS, MOUNT_OUT, load_rounds)
    if guest == "linux":
        return linux_plan(device, MOUNT_GUESTS, MOUNT_OUT)
    if guest == "firmware":
        return firmware_plan(MOUNT_OUT)
    raise UsageError(f"--guest must be one of {', '.join(GUESTS)}, not {guest!r}.")


def default_out_dir(device: str, accel: str, base: Path | None = None) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return (base or Path("captures")) / f"{device}-{accel}-{stamp}"


def _validate(request: CaptureRequest) -> None:
    if request.accel not in ACCELS:
        raise UsageError(f"--accel must be one of {', '.join(ACCELS)}, not {request.accel!r}.")
    if request.machine not in MACHINES:
        raise UsageError(f"--machine must be one of {', '.join(MACHINES)}, not {request.machine!r}.")
    if request.guest not in GUESTS:
        raise UsageError(f"--guest must be one of {', '.join(GUESTS)}, not {request.guest!r}.")
    if request.max_hits < 0 or request.timeout_s <= 0 or request.load_rounds < 0:
        raise UsageError("--max-hits and --probe-rounds must be >= 0 and --timeout > 0.")


def _choose_accel(requested: str, observer: CaptureObserver) -> str:
    usable, why = kvm_usable()
    if requested == "kvm" and not usable:
        raise KvmUnavailable(f"--accel kvm was asked for, but KVM is not usable: {why}.", hint="Use --accel tcg or --accel auto.")
    if requested == "auto":
        chosen = "kvm" if usable else "tcg"
        observer.status(f"accelerator: {chosen} ({'KVM usable' if usable else why})")
        return chosen
    return requested


def run_capture(request: CaptureRequest, observer: CaptureObserver) -> CaptureResult:
    """Capture ``request.device``; see the module docstring for the steps.

    Raises:
        QtraceError subclasses for bad input or a missing environment. Ctrl-C
        (KeyboardInterrupt) is re-raised after the trace is closed and all is cleaned up.
    """
    _validate(request)
    client = connect()
    image = find_qemu_image(client, request.qemu_version)
    if image is None:
        raise ImageMissing(
            f"The debug image {qemu_image_tag(request.qemu_version)} has not been built.",
            hint=f"Run `qtrace build --qemu-version {request.qemu_version}` (or pass --build to capture).",
        )
    accel = _choose_accel(request.accel, observer)
    out_dir = (request.out_dir or default_out_dir(request.device, accel)).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    trace_path = out_dir / "trace.jsonl"
    if trace_path.exists():
        raise UsageError(f"{out_dir} already holds a capture.", hint="Pick a new --out directory.")
    run = _CaptureRun(client, request, accel, out_dir, image.labels.get(LABEL_QEMU_VERSION, request.qemu_version), observer)
    return run.execute()


class _CaptureRun:
    """One capture's state and steps (kept together so cleanup sees everything)."""

    def __init__(
        self,
        client: docker.DockerClient,
        request: CaptureRequest,
        accel: str,
        out_dir: Path,
        qemu_version: str,
        observer: CaptureObserver,
    ) -> None:
        self.client = client
        self.request = request
        self.accel = accel
        self.out_dir = out_dir
        self.qemu_version = qemu_version
        self.observer = observer
        self.trace_path = out_dir / "trace.jsonl"
        self.started = time.monotonic()
        self.status = "error"
        self.reason: str | None = None
        self.qemu_exit: int | None = None
        self.plan = guest_plan(request.guest, request.device, request.machine, request.load_rounds)
        self.armed = self.plan.arm_on is None  # armed from QEMU's start

    # ----- orchestration -----

    def execute(self) -> CaptureResult:
        interrupted: BaseException | None = None
        spec = ContainerSpec(
            image=qemu_image_tag(self.request.qemu_version),
            run_id=new_run_id(),
            mounts={
                str(self.out_dir): (MOUNT_OUT, "rw"),
                str(gdbscripts_dir()): (MOUNT_GDBSCRIPTS, "ro"),
                str(guests_dir()): (MOUNT_GUESTS, "ro"),
            },
            kvm=self.accel == "kvm",
        )
        argv = self._qemu_argv()
        self._write_json("manifest.json", self._manifest(argv))
        with CaptureContainer(self.client, spec) as container:
            try:
                self.observer.status("finding the device's handlers and the KVM exit cases in the source")
                config = self._collector_config(container, argv)
                self.observer.status(f"building the {self.plan.name} guest in the container")
                self._build_guest(container)
                config.write(self.out_dir / "collector.json")
                with GdbSession(container, QEMU_BINARY, self.out_dir / "gdb.log") as gdb:
                    self._run_gdb(gdb, argv, container)
            except KeyboardInterrupt as exc:
                interrupted = exc
                self.status, self.reason = "interrupted", "Ctrl-C"
            except QtraceError as exc:
                self.status, self.reason = "error", str(exc)
                raise
            finally:
                self._close_trace()
                try:
                    self._write_snippets(container)
                except (QtraceError, OSError, docker.errors.APIError) as exc:
                    logger.warning("could not copy source lines for the report: %s", exc)
        result = self._result()
        self._write_json("summary.json", result.summary)
        if interrupted is not None:
            raise interrupted
        return result

    def _qemu_argv(self) -> list[str]:
        plan = self.plan
        cfg = QemuConfig(
            device=self.request.device,
            accel=self.accel,
            machine=self.request.machine,
            slot=DEVICE_SLOT,
            memory_mb=plan.memory_mb,
            kernel=plan.kernel,
            initrd=plan.initrd,
            append=plan.append,
            out_dir=MOUNT_OUT,
            marker_port=plan.marker_port,
            exit_port=plan.exit_port,
            rom=plan.rom,
            extra=plan.extra_qemu_args,
        )
        return [QEMU_BINARY, *qemu_argv(cfg)]

    def _build_guest(self, container: CaptureContainer) -> None:
        for command in self.plan.build_commands:
            result = container.exec(list(command), workdir=MOUNT_OUT)
            if result.exit_code != 0:
                raise LaunchFailure(
                    f"building the {self.plan.name} guest failed: {' '.join(command)}",
                    result.exit_code,
                    result.output.splitlines()[-20:],
                )

    def _collector_config(self, container: CaptureContainer, argv: list[str]) -> CollectorConfig:
        devices = parse_device_help(container.exec([QEMU_BINARY, "-device", "help"]).output)
        check_device_name(self.request.device, devices)
        source = ContainerSource(container)
        handlers = discover_handlers(self.request.device, source)
        exits: list[ExitCaseSpec] = []
        if self.accel == "kvm":
            for case in locate_exit_cases(source.read(KVM_ALL_PATH)):
                exits.append(ExitCaseSpec(f"{KVM_ALL_PATH}:{case.body_line}", tuple(case.labels)))
        header = {
            "device": self.request.device,
            "qemu_version": self.qemu_version,
            "accel": self.accel,
            "machine": self.request.machine,
            "guest": self.request.guest,
            "argv": argv,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "extra": {"handlers": [h.as_config() for h in handlers], "qtrace_version": __version__},
        }
        return CollectorConfig(
            trace_path=f"{MOUNT_OUT}/trace.jsonl",
            header=header,
            handlers=tuple(handlers),
            pci_config_device=self.request.device,
            irq_device=self.request.device,
            dma_device=self.request.device,
            exits=tuple(exits),
            arm_on=self.plan.arm_on,
            quiet_ports=self.plan.quiet_ports,
            max_hits=self.request.max_hits,
        )

    def _run_gdb(self, gdb: GdbSession, argv: list[str], container: CaptureContainer) -> None:
        self.observer.status("starting QEMU under gdb")
        gdb.command(f"-exec-arguments {shell_join(argv[1:])} >{MOUNT_OUT}/qemu.log 2>&1")
        gdb.console(f"source {MOUNT_GDBSCRIPTS}/qtrace_gdb.py")
        gdb.command("-exec-run --start", timeout_s=120)
        first = gdb.wait_for_stop(120)
        if first is None or first.reason.startswith("exited"):
            raise LaunchFailure("QEMU did not start under gdb", first.exit_code if first else None, self._qemu_log_tail())
        replies = gdb.console(f"qtrace setup {MOUNT_OUT}/collector.json", timeout_s=120)
        if not replies:
            raise CollectorError("the collector did not answer 'qtrace setup'")
        gdb.command("-exec-continue")
        self.observer.status("capturing (waiting for the guest to start)")
        self._watch(gdb, container)

    def _watch(self, gdb: GdbSession, container: CaptureContainer) -> None:
        tail = TraceTail(self.trace_path)
        last_records, last_change = 0, time.monotonic()
        last_alive_check = last_change
        try:
            while True:
                try:
                    stop = gdb.wait_for_stop(0.25)
                except LaunchFailure as exc:  # gdb itself died: the host closes the trace
                    self.status, self.reason = "error", str(exc)
                    return
                now = time.monotonic()
                stats = tail.update()
                self.observer.progress(stats, now - self.started, self.armed)
                if stats.records != last_records:
                    last_records, last_change = stats.records, now
                if stop is None:
                    quiet_s = now - last_change
                    if quiet_s > QUIET_BEFORE_LIVENESS_CHECK_S and now - last_alive_check > LIVENESS_CHECK_EVERY_S:
                        last_alive_check = now
                        if not _qemu_alive(container):
                            # QEMU died (e.g. SIGKILL) while gdb did not report it.
                            self.status, self.reason = "error", "QEMU died without exiting (killed by a signal?)"
                            return
                    if now - self.started > self.request.timeout_s:
                        self._stop_running(gdb, "timeout", f"--timeout {self.request.timeout_s:.0f} s reached")
                        return
                    if now - last_change > self.request.hang_timeout_s:
                        self._stop_running(gdb, "guest-hang", self._hang_reason())
                        return
                    continue
                if stop.reason == "breakpoint-hit":
                    replies = gdb.console("qtrace on-stop")
                    why = replies[0].get("reason") if replies else None
                    if why == "arm":
                        self.armed = True
                        self.observer.status("capturing (guest started, collectors armed)")
                        last_change = time.monotonic()
                        gdb.command("-exec-continue")
                        continue
                    if why == "max-hits":
                        self.status, self.reason = "ok", f"stopped at --max-hits {self.request.max_hits}"
                        self._finish(gdb)
                        return
                    gdb.command("-exec-continue")
                    continue
                if stop.reason.startswith("exited"):
                    self.qemu_exit = stop.exit_code
                    self.status, self.reason = self._judge_exit(stop.exit_code)
                    self._finish(gdb)
                    return
                self.status, self.reason = "error", f"QEMU stopped: {stop.reason} {stop.signal or ''}".strip()
                self._finish(gdb)
                return
        except KeyboardInterrupt:
            self.status, self.reason = "interrupted", "Ctrl-C"
            try:
                self._stop_running(gdb, "interrupted", "Ctrl-C")
            finally:
                raise

    def _hang_reason(self) -> str:
        if not self.armed:
            where = "the guest never started"
        else:
            where = "the guest stopped making progress"
        advice = " Under nested KVM some guests never exit to QEMU again; try --accel tcg." if self.accel == "kvm" else ""
        return f"no progress for {self.request.hang_timeout_s:.0f} s: {where}.{advice}"

    def _stop_running(self, gdb: GdbSession, status: str, reason: str) -> None:
        self.status, self.reason = status, reason
        try:
            gdb.interrupt()
            gdb.wait_for_stop(10)
        except QtraceError as exc:
            logger.debug("interrupting QEMU: %s", exc)
        self._finish(gdb)

    def _finish(self, gdb: GdbSession) -> None:
        try:
            reason = (self.reason or "").replace('"', "'")
            gdb.console(f'qtrace finish {self.status} {reason}', timeout_s=20)
        except QtraceError as exc:
            logger.debug("collector finish failed (%s); the host closes the trace", exc)

    def _judge_exit(self, code: int | None) -> tuple[str, str | None]:
        if code not in self.plan.ok_exit_statuses:
            return "error", f"QEMU exited with status {code}: {' | '.join(self._qemu_log_tail()[-3:])}"
        if not self.plan.serial_verdict:
            return "ok", None
        serial = self.out_dir / "serial.log"
        try:
            output = read_serial_log(serial)
        except (QtraceError, OSError) as exc:
            return "error", f"cannot read the guest's serial output: {exc}"
        if output.ok:
            return "ok", None
        if output.done is None:
            return "error", "the guest exited without its DONE line"
        return "error", f"the guest reported: DONE fail {output.done.reason or ''}".strip()

    def _qemu_log_tail(self) -> list[str]:
        path = self.out_dir / "qemu.log"
        return path.read_text(errors="replace").splitlines()[-20:] if path.exists() else []

    # ----- evidence -----

    def _close_trace(self) -> None:
        """Make sure the trace ends with an end record, even when gdb died."""
        if not self.trace_path.exists():
            return
        repair_partial_tail(self.trace_path)
        last = None
        try:
            for record in iter_records(self.trace_path):
                last = record
        except QtraceError as exc:
            logger.warning("trace not readable to the end: %s", exc)
        if isinstance(last, End):
            return
        counts = {"access": 0, "stack": 0}
        with self.trace_path.open(encoding="utf-8") as handle:
            for line in handle:
                kind = json.loads(line).get("type")
                if kind in counts:
                    counts[kind] += 1
        with TraceWriter.append_to(self.trace_path) as writer:
            writer.write(End(status=self.status if self.status != "ok" else "error",  # type: ignore[arg-type]
                             accesses=counts["access"], stacks=counts["stack"],
                             elapsed_s=round(time.monotonic() - self.started, 3),
                             reason=(self.reason or "the collector did not close the trace") + " (closed by the host)"))

    def _write_snippets(self, container: CaptureContainer) -> None:
        """The QEMU source lines around every frame and the extents of the frames' functions
        (``qtrace-source-snippets/1``), so reports render and links are checked without the image."""
        if not self.trace_path.exists():
            return
        stacks = [r for r in iter_records(self.trace_path) if isinstance(r, Stack)]
        source = ReaderSourceProvider(ContainerSource(container))
        write_source_snippets(self.out_dir, stacks, source, self.qemu_version, SNIPPET_CONTEXT_LINES)

    def _manifest(self, argv: list[str]) -> dict[str, Any]:
        return {
            "qtrace_version": __version__,
            "schema": SCHEMA_VERSION,
            "request": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.request).items()},
            "accel": self.accel,
            "qemu_version": self.qemu_version,
            "image": qemu_image_tag(self.request.qemu_version),
            "argv": argv,
            "host": {"node": platform.node(), "kernel": platform.release(), "python": platform.python_version()},
        }

    def _result(self) -> CaptureResult:
        elapsed = time.monotonic() - self.started
        stats = TraceTail(self.trace_path).update() if self.trace_path.exists() else LiveStats()
        end = stats.ended or {}
        status = str(end.get("status", self.status))
        reason = end.get("reason", self.reason)
        summary = {
            "device": self.request.device,
            "accel": self.accel,
            "machine": self.request.machine,
            "guest": self.request.guest,
            "qemu_version": self.qemu_version,
            "status": status,
            "reason": reason,
            "qemu_exit_status": self.qemu_exit,
            "accesses": stats.accesses,
            "stacks": stats.stacks,
            "exits": stats.exits,
            "exit_reasons": dict(sorted(stats.exit_reasons.items())),
            "irqs": stats.irqs,
            "dmas": stats.dmas,
            "elapsed_s": round(elapsed, 2),
            "out_dir": str(self.out_dir),
            "files": sorted(p.name for p in self.out_dir.iterdir() if p.is_file()),
        }
        return CaptureResult(self.out_dir, status, str(reason) if reason else None, self.accel,
                             stats.accesses, stats.stacks, stats.exits, elapsed, summary)

    def _write_json(self, name: str, payload: dict[str, Any]) -> None:
        (self.out_dir / name).write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")

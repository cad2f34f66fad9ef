"""``qtrace capture``: run QEMU under gdb in a container and record every device access.

The steps, each leaving evidence in the run directory (``captures/<device>-<accel>-<utc>/``,
or ``--out``, which must be new or empty: :mod:`qtrace.launch.out_dir`):

1. check the request (output directory, image present, KVM usable) and write
   ``manifest.json``;
2. start the capture container (no network, only /dev/kvm), start the backend processes the
   device needs beside QEMU (:mod:`qtrace.launch.backends`) and build the guest in it;
3. discover the device's handlers and kvm_cpu_exec's exit cases in this QEMU's source and
   write ``collector.json`` for the collector inside gdb;
4. run gdb (MI) -> QEMU; the collector writes ``trace.jsonl`` itself; the host polls gdb,
   the trace and qemu.log and lets the pure watch step (:mod:`qtrace.launch.watch`) decide
   when the run ends: the guest's exit, ``--max-hits``, a timeout, a hang, a KVM internal
   error, a dead QEMU or gdb, a full disk, or an interrupt (Ctrl-C, or SIGTERM/SIGHUP as
   the CLI delivers them);
5. make sure the trace ends with an ``end`` record, copy the source lines the stacks
   point at (``source-snippets.json``), write ``summary.json``; remove the container.

The resources (container, gdb, the trace's closing, the snippets) are held in one
``contextlib.ExitStack``, so every ending unwinds them in the same order. The trace is read
once, incrementally, by one :class:`~qtrace.launch.live.TraceTail`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

import docker
import docker.errors

from qtrace import __version__
from qtrace.annotate.source import SNIPPETS_FILE, ReaderSourceProvider, write_source_snippets
from qtrace.image.builder import LABEL_QEMU_VERSION, qemu_image_tag, require_image
from qtrace.discover.device import check_device_name, parse_device_help
from qtrace.discover.exit_cases import KVM_ALL_PATH, locate_exit_cases
from qtrace.devices import CAPTURED_QDEV_ID
from qtrace.devices import DeviceStart, device_start, pack_or_default, parse_device_properties
from qtrace.docker_env import ContainerKind, ContainerSpec, LabelledContainer, connect, new_run_id
from qtrace.errors import (
    CollectorError,
    DiscoveryError,
    EnvironmentProblem,
    GdbExited,
    KvmUnavailable,
    LaunchFailure,
    QemuRefused,
    QtraceError,
    UsageError,
)
from qtrace.guests.firmware_plan import firmware_plan
from qtrace.guests.linux_plan import linux_plan
from qtrace.guests.plan import GuestPlan
from qtrace.guests.probe_plan import probe_plan
from qtrace.launch import evidence
from qtrace.launch.backends import BACKENDS_PACKAGE_MOUNT, BackendProcesses
from qtrace.launch.collector_config import CollectorConfig, ExitCaseSpec
from qtrace.launch.container import ContainerSource
from qtrace.launch.fast.checks import FALLBACK_HINT, OUT_OF_SPACE_HINT
from qtrace.launch.fast.progress import Progress
from qtrace.launch.fast.records import ExitsRecorded
from qtrace.launch.fast.run import FastRun
from qtrace.launch.gdb_session import GdbSession, shell_join
from qtrace.launch.gdb_xstate import SHIM_IN_CONTAINER, needs_xstate_shim, shim_build_command
from qtrace.launch.interrupts import interrupt_reason
from qtrace.launch.kvm import kvm_usable
from qtrace.launch.kernel_events import KernelEvents
from qtrace.launch.kvm_error import KVM_ERROR_HINT, merge, parse_qemu_log
from qtrace.launch.live import LiveStats, TextTail, TraceTail
from qtrace.launch.out_dir import check_out_dir, create_out_dir, remove_created
from qtrace.launch.qemu_refusal import find_refusal
from qtrace.launch.qemu_argv import (
    QEMU_BINARY,
    ROOT_PORT_SLOT,
    QemuConfig,
    device_bdf,
    qemu_argv,
)
from qtrace.launch.watch import (
    HANG_HINT,
    Action,
    CollectorAnswer,
    Do,
    Limits,
    Phase,
    Report,
    start,
    step,
)
from qtrace.paths import backends_dir, gdbscripts_dir, guests_dir
from qtrace.trace.codec import device_properties, iter_records
from qtrace.trace.schema import Header, Region
from qtrace.trace.kinds import Accel, AccelChoice, CaptureStatus, Guest, Machine, Topology

__all__ = [
    "CaptureRequest",
    "CaptureResult",
    "CaptureObserver",
    "run_capture",
    "default_out_dir",
    "guest_plan",
    "ask_device_start",
    "capture_argv",
    "capture_container_spec",
    "create_start_files",
    "GUESTS",
]

logger = logging.getLogger(__name__)

_K = TypeVar("_K", AccelChoice, Machine, Guest, Topology)

COLLECTORS = ("breakpoint", "fast")
"""How a capture records: gdb breakpoints (every kind of record) or fast tracepoints."""
GUESTS: tuple[Guest, ...] = tuple(Guest)
"""Every guest kind (derived from :class:`~qtrace.trace.kinds.Guest`, the one list)."""
DEVICE_SLOT = 5
"""The captured device's PCI device number on bus 0 (``--topology root-bus``), unless its
pack names another (``[start] slot``)."""
MOUNT_OUT = "/out"
MOUNT_GDBSCRIPTS = "/qtrace/gdbscripts"
MOUNT_GUESTS = "/qtrace/guests"
# Only the frame's own line: reports quote QEMU line by line as evidence, never whole passages.
SNIPPET_CONTEXT_LINES = 0
POLL_S = 0.25
# After QEMU was killed (KVM internal error), how long gdb gets to report it.
KILLED_STOP_WAIT_S = 5.0
# From QEMU's start to vm_start (devices created), and for the walk of the device's regions.
DISCOVERY_TIMEOUT_S = 120.0
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class CaptureObserver(Protocol):
    """Receives the capture's progress (the CLI draws it)."""

    def status(self, text: str) -> None: ...

    def progress(self, stats: LiveStats, elapsed_s: float, armed: bool) -> None: ...


def _member(kind: type[_K], value: str, what: str) -> _K:
    """``value`` as a member of ``kind``; a string that names none is a :class:`UsageError`
    that lists the members (named by what they are, not by a CLI flag: callers differ)."""
    try:
        return kind(value)
    except ValueError:
        raise UsageError(f"unknown {what} {value!r}; expected one of {', '.join(kind)}.") from None


@dataclass(frozen=True)
class CaptureRequest:
    """What to capture. The kinds may be given as their strings (``"tcg"``); they are
    converted to the enums on construction, and an unknown one is a :class:`UsageError`."""

    device: str
    accel: AccelChoice = AccelChoice.AUTO
    machine: Machine = Machine.PC
    guest: Guest = Guest.PROBE
    topology: Topology = Topology.ROOT_BUS
    qemu_version: str = "10.2.2"
    out_dir: Path | None = None
    max_hits: int = 0
    timeout_s: float = 180.0
    hang_timeout_s: float = 45.0
    load_rounds: int = 0
    # ``-device`` properties the user sets (``--device-prop ioeventfd=off``); they win over
    # the pack's and the start rules'.
    device_props: tuple[tuple[str, str], ...] = ()
    # "breakpoint" (every kind of record, QEMU stopped at each hit) or "fast" (register and
    # configuration-space accesses, interrupts and, under KVM, exits, by fast tracepoints:
    # qtrace.launch.fast.run).
    collector: str = "breakpoint"

    def __post_init__(self) -> None:
        object.__setattr__(self, "accel", _member(AccelChoice, self.accel, "accelerator"))
        object.__setattr__(self, "machine", _member(Machine, self.machine, "machine"))
        object.__setattr__(self, "guest", _member(Guest, self.guest, "guest"))
        object.__setattr__(self, "topology", _member(Topology, self.topology, "topology"))
        if self.collector not in COLLECTORS:
            raise UsageError(
                f"unknown collector {self.collector!r}; expected one of {', '.join(COLLECTORS)}."
            )
        if self.topology is Topology.ROOT_PORT and self.machine is not Machine.Q35:
            raise UsageError(
                f"the root-port topology puts the device behind a PCIe root port, which the "
                f"{self.machine} machine (plain PCI, no PCIe) does not have.",
                hint="Capture on q35 (--machine q35), or leave the topology at root-bus.",
            )


@dataclass
class CaptureResult:
    """How a capture ended; ``hint`` says what to try when it did not end well."""

    out_dir: Path
    status: CaptureStatus
    reason: str | None
    accel: Accel
    accesses: int
    stacks: int
    exits: int
    elapsed_s: float
    summary: dict[str, Any] = field(default_factory=dict)
    hint: str | None = None


def _qemu_alive(container: LabelledContainer) -> bool:
    """Is a QEMU process still running in the container? A killed QEMU can stay a zombie
    while gdb, its tracer, has not reaped it: that counts as dead. (``comm`` is cut to
    15 characters.)"""
    states = container.exec(["ps", "-C", "qemu-system-x86", "-o", "stat="]).output.split()
    return any(not state.startswith("Z") for state in states)


def device_slot(device: str) -> int:
    """The device number the captured ``device`` gets on bus 0 (``--topology root-bus``)."""
    return pack_or_default(device).start_slot or DEVICE_SLOT


def guest_plan(
    guest: Guest | str,
    device: str,
    machine: Machine | str,
    load_rounds: int = 0,
    topology: Topology | str = Topology.ROOT_BUS,
) -> GuestPlan:
    """The plan of the named guest kind (see ``qtrace.guests``); the probe is told where the
    device is (behind the root port: on the bus the probe gives the port)."""
    kind = _member(Guest, guest, "guest")
    if kind is Guest.PROBE:
        bus, slot = device_bdf(_member(Topology, topology, "topology"), device_slot(device))
        return probe_plan(
            device,
            _member(Machine, machine, "machine"),
            slot,
            MOUNT_GUESTS,
            MOUNT_OUT,
            load_rounds,
            bus=bus,
        )
    if kind is Guest.LINUX:
        behind_port = _member(Topology, topology, "topology") is Topology.ROOT_PORT
        slot = ROOT_PORT_SLOT if behind_port else device_slot(device)
        return linux_plan(
            slot, MOUNT_GUESTS, MOUNT_OUT, record_async=pack_or_default(device).linux_async
        )
    return firmware_plan(MOUNT_OUT)


def capture_argv(
    device: str,
    accel: str,
    machine: str,
    plan: GuestPlan,
    start: DeviceStart | None = None,
    topology: Topology | str = Topology.ROOT_BUS,
) -> list[str]:
    """QEMU's full command line for a capture of ``device`` with the guest ``plan`` (the
    benchmarks and tests build it here too, so they run what a capture runs). ``start`` is
    what the device needs to start (:func:`qtrace.devices.device_start`, from the property
    list the capture asks the image's QEMU for); without it only its pack's ``[start]``."""
    if start is None:
        start = device_start(pack_or_default(device), (), MOUNT_OUT)
    cfg = QemuConfig(
        device=device,
        accel=accel,
        machine=machine,
        slot=device_slot(device),
        memory_mb=plan.memory_mb,
        kernel=plan.kernel,
        initrd=plan.initrd,
        append=plan.append,
        out_dir=MOUNT_OUT,
        marker_port=plan.marker_port,
        exit_port=plan.exit_port,
        rom=plan.rom,
        extra=plan.extra_qemu_args,
        start=start,
        topology=_member(Topology, topology, "topology"),
    )
    return [QEMU_BINARY, *qemu_argv(cfg)]


def ask_device_start(
    container: LabelledContainer,
    device: str,
    device_props: tuple[tuple[str, str], ...] = (),
) -> DeviceStart:
    """What ``device`` needs to start in this container's QEMU: its property list (``-device
    NAME,help``, asked once) matched against its pack and the start rules
    (:mod:`qtrace.devices.start`), then the user's ``device_props``, which win. A capture
    and the benchmarks start QEMU with it, through :func:`capture_argv`.

    Raises:
        UsageError: one of ``device_props`` names a property the device does not have.
    """
    help_text = container.exec([QEMU_BINARY, "-device", f"{device},help"])
    properties = parse_device_properties(help_text.output)
    start = device_start(pack_or_default(device), properties, MOUNT_OUT)
    known = {prop.name for prop in properties}
    unknown = [key for key, _ in device_props if known and key not in known]
    if unknown:
        raise UsageError(
            f"--device-prop: {device} has no property {', '.join(map(repr, unknown))}.",
            hint=f"See its properties: qemu-system-x86_64 -device {device},help "
            "(in the debug image).",
        )
    return dataclasses.replace(start, properties=(*start.properties, *device_props))


def create_start_files(start: DeviceStart, out_dir: Path, *, reuse: bool = False) -> None:
    """Create the files ``start`` needs in the run directory (sparse, at their size); an
    existing one is an error unless ``reuse`` (several QEMU runs in one directory)."""
    for run_file in start.files:
        path = out_dir / run_file.name
        if reuse and path.exists():
            continue
        with path.open("xb") as handle:
            handle.truncate(run_file.size_bytes)


def capture_container_spec(out_dir: Path, qemu_version: str, *, kvm: bool) -> ContainerSpec:
    """The capture container: the run directory read-write, the collector, the guest
    sources and the stub backends read-only, ``/dev/kvm`` only for KVM."""
    return ContainerSpec(
        image=qemu_image_tag(qemu_version),
        run_id=new_run_id(),
        mounts={
            str(out_dir): (MOUNT_OUT, "rw"),
            str(gdbscripts_dir()): (MOUNT_GDBSCRIPTS, "ro"),
            str(guests_dir()): (MOUNT_GUESTS, "ro"),
            str(backends_dir()): (BACKENDS_PACKAGE_MOUNT, "ro"),
        },
        kvm=kvm,
        kind=ContainerKind.CAPTURE,
        workdir=MOUNT_OUT,
    )


def _exit_cases(source: ContainerSource, qemu_version: str) -> list[ExitCaseSpec]:
    """Where this QEMU's ``kvm_cpu_exec`` handles each exit (discovery's border: its
    ``ValueError`` and a missing file become a :class:`DiscoveryError` with a hint)."""
    try:
        cases = locate_exit_cases(source.read(KVM_ALL_PATH))
    except (ValueError, FileNotFoundError, docker.errors.NotFound) as exc:
        raise DiscoveryError(
            f"cannot locate kvm_cpu_exec's exit cases in QEMU {qemu_version}'s "
            f"{KVM_ALL_PATH}: {exc}",
            hint=(
                "This QEMU's KVM source is not shaped as qtrace expects; "
                "capture with --accel tcg, "
                "which needs no exit cases, and report the version."
            ),
        ) from exc
    return [ExitCaseSpec(f"{KVM_ALL_PATH}:{case.body_line}", tuple(case.labels)) for case in cases]


def _exits_recorded(config: CollectorConfig) -> ExitsRecorded | None:
    """Which KVM exits a fast run records: the collector config's exit cases and quiet
    ports, as the breakpoint collector's; ``None`` under TCG (no exit case)."""
    if not config.exits:
        return None
    labels = frozenset(label for case in config.exits for label in case.labels)
    return ExitsRecorded(labels, tuple(config.quiet_ports))


def _async_recorded(plan: GuestPlan) -> dict[str, list[str]]:
    """The header's note of a plan that records only some kinds of asynchronous work
    (``extra.record_async``: the report says the others were not looked for)."""
    if isinstance(plan.record_async, tuple):
        return {"record_async": list(plan.record_async)}
    return {}


def default_out_dir(device: str, accel: Accel, base: Path | None = None) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return (base or Path("captures")) / f"{device}-{accel}-{stamp}"


def _validate(request: CaptureRequest) -> None:
    """The numeric limits (the kinds were checked when the request was made)."""
    if request.max_hits < 0 or request.timeout_s <= 0 or request.load_rounds < 0:
        raise UsageError("--max-hits and --probe-rounds must be >= 0 and --timeout > 0.")


def _choose_accel(requested: AccelChoice, observer: CaptureObserver) -> Accel:
    """The accelerator to run under: ``auto`` resolved by whether KVM works here."""
    usable, why = kvm_usable()
    if requested is AccelChoice.KVM and not usable:
        raise KvmUnavailable(
            f"--accel kvm was asked for, but KVM is not usable: {why}.",
            hint="Use --accel tcg or --accel auto.",
        )
    if requested is AccelChoice.AUTO:
        chosen = Accel.KVM if usable else Accel.TCG
        observer.status(f"accelerator: {chosen} ({'KVM usable' if usable else why})")
        return chosen
    return Accel(requested.value)


def run_capture(request: CaptureRequest, observer: CaptureObserver) -> CaptureResult:
    """Capture ``request.device``; see the module docstring for the steps.

    Raises:
        UsageError: a bad request, or an output directory that is not new or empty.
        EnvironmentProblem: no Docker, image or KVM; or the disk filled up during the
            capture (after cleaning up; the partial trace is kept and readable).
        KeyboardInterrupt: Ctrl-C, or a signal the CLI delivers as
            :class:`~qtrace.launch.interrupts.SignalInterrupt`; re-raised after the trace
            is closed (status ``interrupted``) and everything is cleaned up.
    """
    _validate(request)
    if request.out_dir is not None:
        check_out_dir(request.out_dir)  # before Docker: a bad --out fails at once
    client = connect()
    image = require_image(client, request.qemu_version, also=" (or pass --build to capture)")
    accel = _choose_accel(request.accel, observer)
    out_dir = (request.out_dir or default_out_dir(request.device, accel)).resolve()
    check_out_dir(out_dir)
    created = create_out_dir(out_dir)
    qemu_version = image.labels.get(LABEL_QEMU_VERSION, request.qemu_version)
    run = _CaptureRun(client, request, accel, out_dir, qemu_version, observer)
    try:
        run.write_manifest()
    except OSError as exc:
        (out_dir / "manifest.json").unlink(missing_ok=True)
        remove_created(created)
        raise UsageError(
            f"--out {out_dir} cannot be written: {exc.strerror}.", hint="Pick another --out."
        ) from exc
    return run.execute()


class _CaptureRun:
    """One capture's state and steps (kept together so cleanup sees everything)."""

    def __init__(
        self,
        client: docker.DockerClient,
        request: CaptureRequest,
        accel: Accel,
        out_dir: Path,
        qemu_version: str,
        observer: CaptureObserver,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.request = request
        self.accel = accel
        self.out_dir = out_dir
        self.qemu_version = qemu_version
        self.observer = observer
        self.clock = clock
        self.started = clock()
        self.status = CaptureStatus.ERROR
        self.reason: str | None = None
        self.hint: str | None = None
        self.qemu_exit: int | None = None
        self.write_failure: str | None = None  # why the run directory could not be written
        self.discovery: dict[str, Any] = {}  # the collector's answer to 'qtrace discover'
        self.preloaded = False  # gdb runs with the xstate shim (qtrace.launch.gdb_xstate)
        self.plan = guest_plan(
            request.guest, request.device, request.machine, request.load_rounds, request.topology
        )
        self.start: DeviceStart | None = None  # the device's needs, once QEMU listed its properties
        self.backends: BackendProcesses | None = None  # the processes started beside QEMU
        self.argv = self._qemu_argv()
        self.tail = TraceTail(out_dir / "trace.jsonl")
        self.qemu_log = TextTail(out_dir / "qemu.log")

    # ----- orchestration -----

    def write_manifest(self) -> None:
        record = evidence.manifest(
            asdict(self.request),
            self.accel,
            self.qemu_version,
            qemu_image_tag(self.request.qemu_version),
            self.argv,
        )
        evidence.write_json(self.out_dir, "manifest.json", record)

    def execute(self) -> CaptureResult:
        interrupted: KeyboardInterrupt | None = None
        spec = capture_container_spec(
            self.out_dir, self.request.qemu_version, kvm=self.accel is Accel.KVM
        )
        # Unwound last-in first-out: gdb (QEMU dies with it), the trace's end record, the
        # source snippets (they need the container), the container.
        with contextlib.ExitStack() as resources:
            container = resources.enter_context(LabelledContainer(self.client, spec))
            resources.callback(self._write_snippets, container)
            resources.callback(self._close_trace)
            # After gdb (QEMU gone): the kvm: events, the instance removed, kernel.jsonl.
            self.kernel = resources.enter_context(
                KernelEvents(
                    self.out_dir,
                    spec.run_id,
                    quiet_ports=self.plan.quiet_ports,
                    quiet_gsis=self.plan.quiet_gsis,
                )
            )
            try:
                self._start_device(container)
                self.backends = resources.enter_context(self._backend_processes(container))
                self.observer.status(
                    "checking the device name and finding kvm_cpu_exec's exit cases in the source"
                    if self.accel is Accel.KVM
                    else "checking the device name"
                )
                config = self._collector_config(container)
                self.observer.status(f"building the {self.plan.name} guest in the container")
                self._build_guest(container)
                config.write(self.out_dir / "collector.json")
                gdb = GdbSession(
                    container,
                    QEMU_BINARY,
                    self.out_dir / "gdb.log",
                    self._gdb_environment(container),
                    # Under gdbserver QEMU's stderr reaches gdb: kept in qemu.log as well.
                    self.out_dir / "qemu.log" if self.request.collector == "fast" else None,
                ).__enter__()
                resources.callback(self._close_gdb, gdb)
                if self.request.collector == "fast":
                    self._run_fast(gdb, container, config)
                else:
                    self._run_gdb(gdb, container)
            except KeyboardInterrupt as exc:
                interrupted = exc
                self.status, self.reason = CaptureStatus.INTERRUPTED, interrupt_reason(exc)
            except QtraceError as exc:
                self.status, self.reason = CaptureStatus.ERROR, str(exc)
                raise
            except OSError as exc:
                if exc.errno not in _DISK_FULL:
                    raise
                self._note_write_failure(exc)
        result = self._result()
        try:
            evidence.write_json(self.out_dir, "summary.json", result.summary)
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            self._note_write_failure(exc)
        if interrupted is not None:
            raise interrupted
        if self.write_failure is not None:
            raise EnvironmentProblem(
                f"The capture stopped: writing its evidence in {self.out_dir} failed "
                f"({self.write_failure}). "
                f"QEMU and the container are gone; the trace keeps the {result.accesses} "
                "accesses recorded until then.",
                hint=(
                    f"Free space there or pick --out on a larger filesystem. "
                    f"See what was captured: `qtrace show {self.out_dir}`."
                ),
            )
        return result

    def _note_write_failure(self, exc: OSError) -> None:
        """A full disk: remembered once (raised after cleanup), every later failure is the same."""
        if self.write_failure is not None:
            logger.debug("another write failed: %s", exc)
            return
        self.write_failure = exc.strerror or str(exc)
        self.status, self.reason = (
            CaptureStatus.ERROR,
            f"cannot write to {self.out_dir}: {self.write_failure}",
        )
        logger.warning("%s", self.reason)

    def _close_gdb(self, gdb: GdbSession) -> None:
        try:
            gdb.close()
        except OSError as exc:  # gdb.log could not be flushed (a full disk)
            if exc.errno not in _DISK_FULL:
                raise
            self._note_write_failure(exc)

    def _qemu_argv(self) -> list[str]:
        return capture_argv(
            self.request.device,
            self.accel,
            self.request.machine,
            self.plan,
            self.start,
            self.request.topology,
        )

    def _start_device(self, container: LabelledContainer) -> None:
        """Give the device what it needs to start (:func:`ask_device_start`), create its files
        in the run directory and rebuild the argv (the manifest is rewritten)."""
        self.start = ask_device_start(container, self.request.device, self.request.device_props)
        create_start_files(self.start, self.out_dir)
        if self.start.rules:
            logger.debug("start rules for %s: %s", self.request.device, self.start.rules)
        self.argv = self._qemu_argv()
        self.write_manifest()

    def _backend_processes(self, container: LabelledContainer) -> BackendProcesses:
        """The device's backend processes (none for most devices), started on entering; on
        the stack after the container and before gdb, so they stop once QEMU is gone."""
        runs = self.start.backends if self.start is not None else ()
        for run in runs:
            self.observer.status(f"starting the {run.name} backend process ({run.log})")
        return BackendProcesses(container, runs, self.out_dir, MOUNT_OUT)

    def _build_guest(self, container: LabelledContainer) -> None:
        for command in self.plan.build_commands:
            result = container.exec(list(command), workdir=MOUNT_OUT)
            if result.exit_code != 0:
                raise LaunchFailure(
                    f"building the {self.plan.name} guest failed: {' '.join(command)}",
                    result.exit_code,
                    result.output.splitlines()[-20:],
                )

    def _gdb_environment(self, container: LabelledContainer) -> dict[str, str]:
        """gdb's environment: on a CPU whose XSAVE state gdb 13 cannot write back (AMX), the
        shim of :mod:`qtrace.launch.gdb_xstate`, built in the container; without it every
        inferior call the collector makes would fail."""
        if not needs_xstate_shim():
            return {}
        result = container.exec(shim_build_command(self.out_dir, MOUNT_OUT))
        if result.exit_code != 0:
            logger.warning("building the gdb xstate shim failed: %s", result.output[-400:])
            return {}
        self.preloaded = True
        self.observer.status(
            "gdb: preloading the xstate shim (this CPU's AMX state is past gdb 13's)"
        )
        return {"LD_PRELOAD": SHIM_IN_CONTAINER}

    def _collector_config(self, container: LabelledContainer) -> CollectorConfig:
        devices = parse_device_help(container.exec([QEMU_BINARY, "-device", "help"]).output)
        check_device_name(self.request.device, devices)
        source = ContainerSource(container)
        exits = _exit_cases(source, self.qemu_version) if self.accel is Accel.KVM else []
        header = {
            "device": self.request.device,
            "qemu_version": self.qemu_version,
            "accel": self.accel,
            "machine": self.request.machine,
            "guest": self.request.guest,
            "topology": self.request.topology,
            "argv": self.argv,
            "device_properties": device_properties(self.argv, self.request.device),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "qdev_id": CAPTURED_QDEV_ID,
            "extra": {
                "qtrace_version": __version__,
                **_async_recorded(self.plan),
                **({"collector": "fast"} if self.request.collector == "fast" else {}),
            },
        }
        if self.request.collector == "fast":
            return CollectorConfig(
                trace_path=f"{MOUNT_OUT}/trace.jsonl",
                header=header,
                device_path=f"/machine/peripheral/{CAPTURED_QDEV_ID}",
                # The gdb side's breakpoint hooks stay off: the fast run traces the
                # configuration space, INTx and KVM's exits itself
                # (qtrace.launch.fast.locate); the exit cases and quiet ports say which
                # exits it records, as the breakpoint collector would.
                record_pci_config=False,
                record_irq=False,
                record_dma=False,
                record_async=False,
                exits=tuple(exits),
                arm_on=self.plan.arm_on,
                quiet_ports=self.plan.quiet_ports,
                collector="fast",
            )
        return CollectorConfig(
            trace_path=f"{MOUNT_OUT}/trace.jsonl",
            header=header,
            device_path=f"/machine/peripheral/{CAPTURED_QDEV_ID}",
            exits=tuple(exits),
            arm_on=self.plan.arm_on,
            quiet_ports=self.plan.quiet_ports,
            max_hits=self.request.max_hits,
            record_async=self.plan.record_async,
        )

    def _run_gdb(self, gdb: GdbSession, container: LabelledContainer) -> None:
        self.observer.status("starting QEMU under gdb")
        if self.preloaded:  # the shim is gdb's, not QEMU's
            gdb.console("unset environment LD_PRELOAD")
        gdb.command(f"-exec-arguments {shell_join(self.argv[1:])} >{MOUNT_OUT}/qemu.log 2>&1")
        gdb.console(f"source {MOUNT_GDBSCRIPTS}/qtrace_gdb.py")
        gdb.command("-exec-run --start", timeout_s=120)
        first = gdb.wait_for_stop(120)
        if first is None or first.reason.startswith("exited"):
            raise LaunchFailure(
                "QEMU did not start under gdb",
                first.exit_code if first else None,
                self._qemu_log_tail(),
            )
        replies = gdb.console(f"qtrace setup {MOUNT_OUT}/collector.json", timeout_s=120)
        if not replies:
            raise CollectorError("the collector did not answer 'qtrace setup'")
        self._discover(gdb)
        if self.accel is Accel.KVM:  # QEMU's threads exist, no vCPU has run
            self.observer.status(self.kernel.attach(container.id))
        gdb.command("-exec-continue")
        self.observer.status("capturing (waiting for the guest to start)")
        try:
            self._watch(gdb, container)
        except KeyboardInterrupt as exc:
            self._stop_running(gdb, CaptureStatus.INTERRUPTED, interrupt_reason(exc))
            raise

    def _run_fast(
        self, gdb: GdbSession, container: LabelledContainer, config: CollectorConfig
    ) -> None:
        """The fast collector (:mod:`qtrace.launch.fast.run`): QEMU runs without a stop
        until it exits, times out or is interrupted; the buffer is then saved and decoded,
        and the end record (with the self-checks) is written here."""
        run = FastRun(
            gdb, container, self.out_dir, MOUNT_OUT, MOUNT_GDBSCRIPTS, self.argv,
            self.observer.status, self.tail.path, self.request.max_hits,
            _exits_recorded(config),
            Progress(self.request.hang_timeout_s, self.accel is Accel.KVM),
        )  # fmt: skip
        self.discovery = run.start()
        run.trace(self.discovery, self._header_regions(), self.plan.arm_on)
        interrupted: KeyboardInterrupt | None = None
        reason: str | None
        hint: str | None = None
        try:
            stop = run.wait(self.request.timeout_s)
        except KeyboardInterrupt as exc:
            interrupted = exc
            run.interrupt()
            stop = None
        if interrupted is not None:
            status, reason = CaptureStatus.INTERRUPTED, interrupt_reason(interrupted)
        elif run.kvm_error is not None:
            status, reason, hint = CaptureStatus.ERROR, run.kvm_error.describe(), KVM_ERROR_HINT
        elif run.hang is not None:
            status, reason = CaptureStatus.GUEST_HANG, run.hang
            hint = HANG_HINT if self.accel is Accel.KVM else None
        elif run.out_of_space is not None:
            status, reason = CaptureStatus.ERROR, run.out_of_space
            hint = OUT_OF_SPACE_HINT
        elif run.reached_max_hits:
            status, reason = CaptureStatus.OK, f"stopped at --max-hits {self.request.max_hits}"
        elif stop is None:
            status = CaptureStatus.TIMEOUT
            reason = f"the guest did not finish within {self.request.timeout_s:.0f} s"
        elif stop.reason.startswith("exited"):
            raise CollectorError(
                "QEMU exited without calling exit(), and its trace buffer went with it",
                hint=FALLBACK_HINT.capitalize() + ".",
            )
        elif stop.reason == "signal-received":
            status, reason = CaptureStatus.ERROR, f"QEMU received {stop.signal}"
        else:
            self.qemu_exit = run.exit_status()
            status, reason = self._judge_exit(self.qemu_exit)
        outcome = run.finish(status, reason, lambda: self.clock() - self.started)
        self.status, self.reason = outcome.status, outcome.reason
        self.hint = outcome.hint or hint
        if interrupted is not None:
            raise interrupted

    def _header_regions(self) -> tuple[Region, ...]:
        """The regions the collector wrote into the trace header at discovery."""
        header = next(iter_records(self.tail.path), None)
        return header.regions if isinstance(header, Header) else ()

    def _discover(self, gdb: GdbSession) -> None:
        """Run QEMU to ``vm_start`` and let the collector find the device's regions there.

        A QEMU that exits first refused its command line (a device without its backend, a
        bad property): the capture fails with QEMU's own words from qemu.log.
        """
        self.observer.status("starting QEMU: finding the device's regions in the running QEMU")
        gdb.command("-exec-continue")
        stop = gdb.wait_for_stop(DISCOVERY_TIMEOUT_S)
        if stop is None:
            raise CollectorError(
                f"QEMU did not create its devices within {DISCOVERY_TIMEOUT_S} s "
                "(no stop at vm_start)"
            )
        if stop.reason.startswith("exited"):
            failure = self._refusal(stop.exit_code)
            self.status, self.reason, self.hint = CaptureStatus.ERROR, str(failure), failure.hint
            self._finish(gdb)
            raise failure
        try:
            replies = gdb.console("qtrace discover", timeout_s=DISCOVERY_TIMEOUT_S)
        except CollectorError as exc:
            self.status, self.reason = CaptureStatus.ERROR, str(exc)
            self._finish(gdb)
            raise
        if not replies:
            raise CollectorError("the collector did not answer 'qtrace discover'")
        self.discovery = replies[0]
        logger.debug("discovered: %s", self.discovery)

    def _refusal(self, exit_code: int | None) -> QtraceError:
        """QEMU exited before creating its devices: its own words from qemu.log, and a hint."""
        request = self.request
        refusal = find_refusal(
            self.qemu_log.update(), request.device, request.machine, request.topology
        )
        if refusal is None:
            return LaunchFailure("QEMU refused to start", exit_code, self._qemu_log_tail())
        return QemuRefused(refusal.message, hint=refusal.hint)

    # ----- watching: I/O around the pure step of qtrace.launch.watch -----

    def _watch(self, gdb: GdbSession, container: LabelledContainer) -> None:
        limits = Limits(
            timeout_s=self.request.timeout_s,
            hang_timeout_s=self.request.hang_timeout_s,
            kvm=self.accel is Accel.KVM,
            max_hits=self.request.max_hits,
        )
        state = start(self.clock(), armed=self.plan.arm_on is None)
        pending: Report | None = None
        while True:
            report = pending if pending is not None else self._observe(gdb)
            pending = None
            now = self.clock()
            before = state.phase
            state, action = step(state, report, now, limits)
            self.observer.progress(
                self.tail.stats, now - self.started, state.phase is not Phase.WAITING
            )
            if before is Phase.WAITING and state.phase is Phase.CAPTURING:
                self.observer.status("capturing (guest started, collectors armed)")
            if action.do is Do.POLL:
                continue
            if action.do is Do.ASK_COLLECTOR:
                pending = self._ask_collector(gdb)
            elif action.do is Do.RESUME:
                pending = self._resume(gdb)
            elif action.do is Do.CHECK_ALIVE:
                pending = Report(records=self.tail.stats.records, qemu_alive=_qemu_alive(container))
            else:
                self._end(gdb, container, action)
                return

    def _ask_collector(self, gdb: GdbSession) -> Report:
        """Why the collector stopped QEMU; gdb dying mid-question is reported, not raised."""
        try:
            replies = gdb.console("qtrace on-stop")
        except GdbExited as exc:
            return self._gdb_lost(exc)
        why = replies[0].get("reason") if replies else None
        return Report(
            records=self.tail.stats.records, collector=CollectorAnswer(str(why) if why else None)
        )

    def _resume(self, gdb: GdbSession) -> Report | None:
        try:
            gdb.command("-exec-continue")
        except GdbExited as exc:
            return self._gdb_lost(exc)
        return None

    def _gdb_lost(self, exc: GdbExited) -> Report:
        """gdb itself died: the host closes the trace (see _close_trace)."""
        return Report(records=self.tail.stats.records, gdb_lost=str(exc))

    def _observe(self, gdb: GdbSession) -> Report:
        """What gdb, the trace and QEMU's log say now (waits up to POLL_S for gdb)."""
        try:
            stop = gdb.wait_for_stop(POLL_S)
        except GdbExited as exc:
            return self._gdb_lost(exc)
        stats = self.tail.update()
        kvm_error = merge(stats.kvm_error, parse_qemu_log(self.qemu_log.update()))
        return Report(records=stats.records, stop=stop, kvm_error=kvm_error)

    def _end(self, gdb: GdbSession, container: LabelledContainer, action: Action) -> None:
        """Carry out an ending action: the collector writes the end record when it can."""
        self.status, self.reason, self.hint = (
            action.status or CaptureStatus.ERROR,
            action.reason,
            action.hint,
        )
        if action.write_failure is not None:
            self.write_failure = action.write_failure
        if action.do is Do.JUDGE_EXIT:
            self.qemu_exit = action.exit_code
            self.status, self.reason = self._judge_exit(action.exit_code, action.exit_status_lost)
            self._finish(gdb)
        elif action.do is Do.FINISH:
            self._finish(gdb)
        elif action.do is Do.INTERRUPT:
            self._stop_running(gdb, self.status, self.reason or "")
        elif action.do is Do.KILL:
            self._kill_qemu(gdb, container)
        # Do.ABANDON: gdb or QEMU is gone; _close_trace writes the end record.

    def _kill_qemu(self, gdb: GdbSession, container: LabelledContainer) -> None:
        """End a QEMU that gdb cannot interrupt (paused after a KVM internal error)."""
        container.exec(["pkill", "-KILL", "-x", "qemu-system-x86"])
        try:
            stop = gdb.wait_for_stop(KILLED_STOP_WAIT_S)
        except LaunchFailure as exc:
            logger.debug("gdb after killing QEMU: %s", exc)
            return
        if stop is not None:
            self._finish(gdb)

    def _stop_running(self, gdb: GdbSession, status: CaptureStatus, reason: str) -> None:
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
            gdb.console(f"qtrace finish {self.status} {reason}", timeout_s=20)
        except QtraceError as exc:
            logger.debug("collector finish failed (%s); the host closes the trace", exc)

    def _judge_exit(
        self, code: int | None, status_lost: bool = False
    ) -> tuple[CaptureStatus, str | None]:
        """Judge QEMU's exit by the guest plan: its exit status, then the guest's serial verdict.

        When gdb lost the exit status, only a guest that reports its own verdict on the serial
        port (the probe's ``DONE ok``) can still be judged ok; the reason says so either way.
        """
        if status_lost:
            lost = "gdb lost QEMU's exit status (No unwaited-for children left)"
            if not self.plan.serial_verdict:
                return (
                    CaptureStatus.ERROR,
                    f"{lost}; this guest has no serial verdict to judge it by",
                )
            status, why = self._serial_verdict()
            return status, f"{lost}; {why or 'the guest reported success on its serial port'}"
        if code not in self.plan.ok_exit_statuses:
            return (
                CaptureStatus.ERROR,
                f"QEMU exited with status {code}: {' | '.join(self._qemu_log_tail()[-3:])}",
            )
        if not self.plan.serial_verdict:
            return CaptureStatus.OK, None
        return self._serial_verdict()

    def _serial_verdict(self) -> tuple[CaptureStatus, str | None]:
        """The guest's own verdict from its serial log (the plan's ``serial_verdict``)."""
        assert self.plan.serial_verdict is not None
        try:
            why = self.plan.serial_verdict(self.out_dir / "serial.log")
        except (QtraceError, OSError) as exc:
            return CaptureStatus.ERROR, f"cannot read the guest's serial output: {exc}"
        return (CaptureStatus.OK, None) if why is None else (CaptureStatus.ERROR, why)

    def _qemu_log_tail(self) -> list[str]:
        return self.qemu_log.update().splitlines()[-20:]

    # ----- evidence -----

    def _close_trace(self) -> None:
        """Make sure the trace ends with an end record, even when gdb died."""
        try:
            evidence.close_trace(self.tail, self.status, self.reason, self.clock() - self.started)
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            self._note_write_failure(exc)

    def _write_snippets(self, container: LabelledContainer) -> None:
        """The QEMU source lines of every frame and the extents of the frames' functions
        (``qtrace-source-snippets/1``), so reports render and links are checked without the
        image."""
        if not self.tail.path.exists():
            return
        try:
            source = ReaderSourceProvider(ContainerSource(container))
            write_source_snippets(
                self.out_dir,
                self.tail.stack_records,
                source,
                self.qemu_version,
                SNIPPET_CONTEXT_LINES,
            )
        except OSError as exc:
            (self.out_dir / SNIPPETS_FILE).unlink(missing_ok=True)  # no half-written file
            if exc.errno in _DISK_FULL:
                self._note_write_failure(exc)
            else:
                logger.warning("could not copy source lines for the report: %s", exc)
        except (QtraceError, docker.errors.APIError) as exc:
            logger.warning("could not copy source lines for the report: %s", exc)

    def _result(self) -> CaptureResult:
        elapsed = self.clock() - self.started
        identity = {
            "device": self.request.device,
            "accel": self.accel,
            "machine": self.request.machine,
            "guest": self.request.guest,
            "qemu_version": self.qemu_version,
        }
        summary = evidence.summary(
            self.tail, identity, self.status, self.reason, self.qemu_exit, elapsed, self.out_dir
        )
        if self.backends is not None and self.backends.records:
            summary["backends"] = [record.as_json() for record in self.backends.records]
        stats = self.tail.stats
        reason = summary["reason"]
        status = CaptureStatus(summary["status"])
        return CaptureResult(
            self.out_dir,
            status,
            str(reason) if reason else None,
            self.accel,
            stats.accesses,
            stats.stacks,
            stats.exits,
            elapsed,
            summary,
            hint=self.hint if status is not CaptureStatus.OK else None,
        )

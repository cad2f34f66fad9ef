"""The host kernel's side of a KVM capture: its ``kvm:`` tracepoints, for QEMU's threads only.

While QEMU runs, :class:`KernelEvents` records the tracepoints of the capture's QEMU process
into ``kernel.jsonl`` (format: :mod:`qtrace.trace.kernel`; joined to the trace by
:mod:`qtrace.trace.kernel_join`). How it leaves the host as it found it:

- **tracefs.** ``/sys/kernel/tracing`` (or ``$QTRACE_TRACEFS``) when it is mounted; when it is
  not and qtrace runs as root with tracefs in the kernel, tracefs is mounted on a private
  directory for the capture and unmounted after, so ``/sys/kernel/tracing`` stays as it was.
- **A private instance.** Everything happens in ``instances/qtrace-<run id>``: its own ring
  buffer, event switches, pid filter and clock (``mono``: CLOCK_MONOTONIC, which the trace's
  ``kvm_vcpu`` records also give). The host's global tracing state and other tracers'
  instances are never touched. The instance is removed at the end, also after an error or
  Ctrl-C (the capture's ExitStack closes it).
- **Only QEMU's threads.** ``set_event_pid`` gets every thread of the QEMU process (found by
  its container's cgroup, at ``vm_start``: the vCPU threads exist, none has run) and
  ``options/event-fork`` adds threads created later. The filter is per thread id, so this
  list is what keeps other processes' events out; the conversion drops any event of a thread
  not in the final filter, and counts it.
- **Not slowing the guest.** ``kvm_emulate_insn`` is not enabled: under this project's nested
  KVM (kvm-pvm) it fires for every guest instruction run in paging-off mode (5.4 million
  events for one probe capture, enough to make the guest miss its progress deadline).

While QEMU runs a reader thread copies ``trace_pipe`` into ``kernel.trace`` (tracefs' text, as
read); at the end it becomes ``kernel.jsonl``, keeping the events from the collectors'
arming on (the trace's ``kvm_vcpu`` record; the ones before are counted by event, except
the few MMIO ones, :data:`KEEP_BEFORE_ARMING`), and
``kernel.trace`` is removed. Where tracefs cannot be used (not root, no tracefs, the instance
refused), ``kernel.jsonl`` holds only its first line saying why and how to fix it, and the
capture goes on.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from qtrace.launch.kernel_quiet import quiet_events
from qtrace.trace.kernel import (
    KERNEL_FILE,
    KernelEnd,
    KernelEvent,
    KernelHeader,
    KernelLogWriter,
    lost_events,
    parse_line,
)

__all__ = [
    "TRACEFS_ENV",
    "DEFAULT_TRACEFS",
    "EVENTS",
    "RAW_FILE",
    "TracefsStatus",
    "probe_tracefs",
    "find_qemu_pid",
    "leftover_tracing",
    "thread_ids",
    "kvm_modules",
    "KVM_MODULES",
    "KernelEvents",
    "KernelState",
]

logger = logging.getLogger(__name__)

TRACEFS_ENV = "QTRACE_TRACEFS"
"""Where to find tracefs instead of ``/sys/kernel/tracing`` (qtrace never mounts there)."""
DEFAULT_TRACEFS = Path("/sys/kernel/tracing")
EVENTS: tuple[str, ...] = (
    "kvm_userspace_exit",
    "kvm_mmio",
    "kvm_pio",
    "kvm_fast_mmio",
    "kvm_exit",
    "kvm_entry",
    "kvm_page_fault",
    "kvm_msi_set_irq",
    "kvm_set_irq",
    "kvm_apic",
    "kvm_apic_accept_irq",
    "kvm_inj_virq",
)
"""The ``kvm:`` events recorded (those this kernel has; the header lists the missing).
``kvm_pic_set_irq`` and ``kvm_ioapic_set_irq`` are left out: they repeat each
``kvm_set_irq`` through the PIC and the IOAPIC (the serial console's interrupt alone made
25,000 of them in a probe capture)."""
REQUIRED_EVENTS = ("kvm_userspace_exit", "kvm_mmio", "kvm_pio")
KEEP_BEFORE_ARMING = frozenset({"kvm_mmio", "kvm_fast_mmio", "kvm_apic"})
"""Events kept from before the arming too: few (the firmware's LAPIC and IOAPIC accesses
KVM completes itself), and the evidence of what never reaches QEMU."""
RAW_FILE = "kernel.trace"
QEMU_COMM = "qemu-system-x86"  # /proc/<pid>/comm is cut to 15 characters
BUFFER_KB_PER_CPU = 4096
READ_CHUNK = 1 << 16
IDLE_SLEEP_S = 0.05
READER_JOIN_S = 10.0
_FIX_ROOT = "Run qtrace as root (tracefs and the kvm: events need it) to record the kernel's side."


@dataclass(frozen=True)
class TracefsStatus:
    """Whether tracefs can be used here: ``root`` (mounted) or ``mountable`` (as root, tracefs
    in the kernel, not mounted yet); else ``reason`` and ``fix``."""

    usable: bool
    root: Path | None = None
    mountable: bool = False
    reason: str | None = None
    fix: str | None = None


def probe_tracefs(
    env: dict[str, str] | None = None,
    filesystems: Path = Path("/proc/filesystems"),
    euid: Callable[[], int] = os.geteuid,
    default: Path = DEFAULT_TRACEFS,
) -> TracefsStatus:
    """Can a capture record kernel events here? (Also ``qtrace doctor``'s check.)"""
    env = dict(os.environ) if env is None else env
    override = env.get(TRACEFS_ENV)
    root = Path(override) if override else default
    if (root / "instances").is_dir():
        return TracefsStatus(True, root)
    if override:
        return TracefsStatus(
            False,
            reason=f"no tracefs at {root} (${TRACEFS_ENV})",
            fix=f"Point ${TRACEFS_ENV} at a mounted tracefs, or unset it.",
        )
    if euid() != 0:
        return TracefsStatus(
            False, reason=f"tracefs is not mounted at {root} and qtrace is not root", fix=_FIX_ROOT
        )
    try:
        known = filesystems.read_text(encoding="utf-8")
    except OSError:
        known = ""
    if "tracefs" not in known.split():
        return TracefsStatus(
            False,
            reason="this kernel has no tracefs (CONFIG_TRACING off)",
            fix="Use a kernel built with tracing (Debian's are) to record the kernel's side.",
        )
    return TracefsStatus(True, None, mountable=True)


MOUNT_PREFIX = "qtrace-tracefs-"
INSTANCE_PREFIX = "qtrace-"


def leftover_tracing(live_run_ids: set[str], mounts: Path = Path("/proc/mounts")) -> list[str]:
    """What a capture killed outright (SIGKILL) left on the host: its private tracefs mounts
    and its instances, for run ids with no live container; each as the command removing it
    (instances first: a mount with an instance in it is still usable by nobody else)."""
    try:
        lines = mounts.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    fixes: list[str] = []
    umounts: list[str] = []
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or parts[2] != "tracefs":
            continue
        root = Path(parts[1])
        if root.name.startswith(MOUNT_PREFIX):
            run_id = root.name[len(MOUNT_PREFIX) :].split("-")[0]
            if run_id not in live_run_ids:
                umounts.append(f"umount {root} && rmdir {root}")
        try:
            instances = list((root / "instances").iterdir())
        except OSError:
            continue
        for instance in instances:
            run_id = instance.name[len(INSTANCE_PREFIX) :]
            if instance.name.startswith(INSTANCE_PREFIX) and run_id not in live_run_ids:
                fixes.append(f"rmdir {instance}")
    return fixes + umounts


def find_qemu_pid(container_id: str, proc: Path = Path("/proc")) -> int | None:
    """The host pid of the QEMU process in the container ``container_id`` (by its cgroup)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text(encoding="utf-8").strip() != QEMU_COMM:
                continue
            if container_id not in (entry / "cgroup").read_text(encoding="utf-8"):
                continue
        except OSError:
            continue
        found.append(int(entry.name))
    return min(found) if found else None


KVM_MODULES = ("kvm_intel", "kvm_amd", "kvm_pvm")
"""KVM's vendor modules: which one runs the guests decides which events fire (``kvm_exit``
carries the VMX/SVM exit reason; under kvm_pvm it does not fire)."""


def kvm_modules(modules: Path = Path("/sys/module")) -> list[str]:
    """The KVM vendor modules loaded on this host (``/sys/module/<name>``)."""
    return [name for name in KVM_MODULES if (modules / name).is_dir()]


def thread_ids(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Every thread of ``pid`` (its ``task`` directory)."""
    try:
        return sorted(int(t.name) for t in (proc / str(pid) / "task").iterdir())
    except OSError:
        return []


class KernelState(enum.Enum):
    IDLE = "idle"
    RECORDING = "recording"
    UNAVAILABLE = "unavailable"
    CLOSED = "closed"


class _Unavailable(Exception):
    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


class KernelEvents:
    """Records the capture's ``kvm:`` events; a context manager (see the module docstring).

    ``attach`` starts recording once QEMU's threads exist; ``close`` (idempotent, also from
    ``__exit__``) stops, removes the instance, unmounts what it mounted and writes
    ``kernel.jsonl``. Nothing is done for a capture that never attached (TCG).
    """

    def __init__(
        self,
        out_dir: Path,
        run_id: str,
        env: dict[str, str] | None = None,
        quiet_ports: tuple[tuple[int, int], ...] = (),
        quiet_gsis: tuple[int, ...] = (),
    ) -> None:
        self.out_dir = out_dir
        self.run_id = run_id
        # The serial console's ports and interrupt lines: their events are counted, not kept.
        self.quiet_ports = quiet_ports
        self.quiet_gsis = quiet_gsis
        self.env = dict(os.environ) if env is None else env
        self.state = KernelState.IDLE
        self.header: KernelHeader | None = None
        self._root: Path | None = None
        self._mounted: Path | None = None
        self._instance: Path | None = None
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._raw = out_dir / RAW_FILE
        self._read_error: str | None = None

    def __repr__(self) -> str:
        return f"<KernelEvents {self.run_id} {self.state.value}>"

    def __enter__(self) -> KernelEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- start -----

    def attach(self, container_id: str) -> str:
        """Start recording the QEMU process of ``container_id``; returns a line for the user
        saying what is recorded or why not (the capture goes on either way)."""
        if self.state is not KernelState.IDLE:
            return "kernel events: already attached"
        try:
            self.header = self._start(container_id)
            self.state = KernelState.RECORDING
            return (
                f"kernel events: recording {len(self.header.events)} kvm: events of QEMU's "
                f"{len(self.header.tids)} threads (tracefs instance {self.header.instance})"
            )
        except _Unavailable as exc:
            self._teardown()
            self.header = KernelHeader("unavailable", exc.reason, exc.fix)
            self.state = KernelState.UNAVAILABLE
            self._write_unavailable()
            return f"kernel events not recorded: {exc.reason}"

    def _start(self, container_id: str) -> KernelHeader:
        status = probe_tracefs(self.env)
        if not status.usable:
            raise _Unavailable(status.reason or "tracefs unusable", status.fix or _FIX_ROOT)
        pid = self._find_pid(container_id)
        if pid is None:
            raise _Unavailable(
                "QEMU's process was not found on the host (is qtrace in another pid namespace?)",
                "Run qtrace on the host that runs the Docker daemon.",
            )
        root = status.root if status.root is not None else self._mount()
        self._root = root
        instance = root / "instances" / f"{INSTANCE_PREFIX}{self.run_id}"
        try:
            self._make_instance(instance)
        except OSError as exc:
            raise _Unavailable(
                f"tracefs refused the instance {instance}: {exc.strerror}",
                "Check that tracefs is writable (root, no kernel lockdown of tracing).",
            ) from exc
        self._instance = instance
        events, missing = [], []
        try:
            self._write("trace_clock", "mono")
            self._write("buffer_size_kb", str(BUFFER_KB_PER_CPU))
            tids = self._thread_ids(pid)
            self._write("set_event_pid", " ".join(map(str, tids)))
            self._write("options/event-fork", "1")
            for name in EVENTS:
                switch = instance / "events" / "kvm" / name / "enable"
                if switch.exists():
                    switch.write_text("1", encoding="utf-8")
                    events.append(f"kvm:{name}")
                else:
                    missing.append(f"kvm:{name}")
            if any(f"kvm:{name}" in missing for name in REQUIRED_EVENTS):
                raise _Unavailable(
                    f"this kernel lacks the tracepoints {', '.join(missing)}",
                    "Load the kvm module of a kernel with KVM tracepoints.",
                )
            self._write("tracing_on", "1")
        except OSError as exc:
            raise _Unavailable(
                f"tracefs instance {instance} could not be set up: {exc.strerror}",
                "Check that tracefs is writable (root).",
            ) from exc
        self._reader = threading.Thread(
            target=self._read_pipe, name=f"qtrace-kernel-{self.run_id}", daemon=True
        )
        self._reader.start()
        return KernelHeader(
            "recorded",
            tracefs=str(root),
            mounted_by_qtrace=self._mounted is not None,
            instance=instance.name,
            pid=pid,
            tids=tuple(tids),
            events=tuple(events),
            missing_events=tuple(missing),
            clock="mono",
            started_monotonic_s=round(time.monotonic(), 6),
            kvm_modules=tuple(kvm_modules()),
        )

    # ----- the host seams (a test double overrides these) -----

    def _find_pid(self, container_id: str) -> int | None:
        return find_qemu_pid(container_id)

    def _thread_ids(self, pid: int) -> list[int]:
        return thread_ids(pid)

    def _make_instance(self, path: Path) -> None:
        path.mkdir()  # tracefs creates the instance's files and buffer

    def _remove_instance(self, path: Path) -> None:
        path.rmdir()  # tracefs frees the instance (refused while a file in it is open)

    def _mount(self) -> Path:
        target = Path(tempfile.mkdtemp(prefix=f"{MOUNT_PREFIX}{self.run_id}-"))
        done = subprocess.run(
            ["mount", "-t", "tracefs", "nodev", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            target.rmdir()
            raise _Unavailable(
                f"mounting tracefs failed: {done.stderr.strip() or done.returncode}",
                "Mount it yourself: mount -t tracefs nodev /sys/kernel/tracing",
            )
        self._mounted = target
        return target

    def _write(self, name: str, value: str) -> None:
        assert self._instance is not None
        (self._instance / name).write_text(value, encoding="utf-8")

    # ----- while QEMU runs -----

    def _read_pipe(self) -> None:
        assert self._instance is not None
        try:
            fd = os.open(self._instance / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            self._read_error = f"cannot open trace_pipe: {exc.strerror}"
            return
        try:
            with self._raw.open("ab") as raw:
                while True:
                    try:
                        data = os.read(fd, READ_CHUNK)
                    except BlockingIOError:
                        data = b""
                    if data:
                        raw.write(data)
                        continue
                    if self._stop.is_set():
                        break
                    raw.flush()
                    time.sleep(IDLE_SLEEP_S)
        except OSError as exc:
            self._read_error = f"reading trace_pipe: {exc.strerror}"
        finally:
            os.close(fd)

    # ----- end -----

    def close(self) -> None:
        """Stop, clean up the host, write ``kernel.jsonl``; idempotent."""
        if self.state is not KernelState.RECORDING:
            self._teardown()
            if self.state is KernelState.IDLE:
                self.state = KernelState.CLOSED
            return
        stopped = round(time.monotonic(), 6)
        filter_tids: set[int] = set()
        try:
            self._write("tracing_on", "0")
            assert self._instance is not None
            text = (self._instance / "set_event_pid").read_text(encoding="utf-8")
            filter_tids = {int(t) for t in text.split()}
        except OSError as exc:
            logger.warning("stopping the kernel events: %s", exc)
        self._stop.set()
        if self._reader is not None:
            self._reader.join(READER_JOIN_S)
        self._teardown()
        self.state = KernelState.CLOSED
        assert self.header is not None
        allowed = filter_tids | set(self.header.tids)
        try:
            self._convert(allowed, stopped)
        except OSError as exc:
            logger.warning("writing %s: %s", KERNEL_FILE, exc)
            return
        self._raw.unlink(missing_ok=True)

    def _teardown(self) -> None:
        """Remove the instance and unmount what was mounted (each at most once)."""
        instance, self._instance = self._instance, None
        if instance is not None:
            try:
                self._remove_instance(instance)
            except OSError as exc:
                logger.warning("could not remove the tracefs instance %s: %s", instance, exc)
        mounted, self._mounted = self._mounted, None
        if mounted is not None:
            done = subprocess.run(
                ["umount", str(mounted)], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                logger.warning("could not unmount %s: %s", mounted, done.stderr.strip())
                return
            try:
                mounted.rmdir()
            except OSError as exc:
                logger.debug("removing %s: %s", mounted, exc)

    def _write_unavailable(self) -> None:
        assert self.header is not None
        writer = KernelLogWriter.create(self.out_dir / KERNEL_FILE)
        try:
            writer.header(self.header)
        finally:
            writer.close()

    def _convert(self, allowed: set[int], stopped: float) -> None:
        assert self.header is not None
        armed = _armed_at(self.out_dir / "trace.jsonl")
        before: Counter[str] = Counter()
        lost = unparsed = foreign = 0
        kept: list[KernelEvent] = []
        for line in _lines(self._raw):
            item = parse_line(line)
            if item is None:
                count = lost_events(line)
                lost += count
                unparsed += 1 if not count and line.strip() else 0
                continue
            if item.tid not in allowed:
                foreign += 1
                continue
            if armed is not None and item.ts < armed and item.event not in KEEP_BEFORE_ARMING:
                before[item.event] += 1
                continue
            kept.append(item)
        if foreign:
            logger.warning("%d kernel events of other threads dropped", foreign)
            before["(other threads)"] = foreign
        kept, quiet = quiet_events(kept, self.quiet_ports, self.quiet_gsis)
        writer = KernelLogWriter.create(self.out_dir / KERNEL_FILE)
        try:
            writer.header(self.header)
            writer.events(kept)
            writer.end(
                KernelEnd(
                    events=len(kept),
                    lost=lost,
                    before_arming=dict(before),
                    unparsed_lines=unparsed,
                    stopped_monotonic_s=stopped,
                    quiet=quiet,
                    quiet_ports=self.quiet_ports,
                    quiet_gsis=self.quiet_gsis,
                )
            )
        finally:
            writer.close()
        if self._read_error:
            logger.warning("kernel events: %s", self._read_error)


def _lines(path: Path) -> Iterator[str]:
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as handle:
        yield from handle


def _armed_at(trace: Path) -> float | None:
    """CLOCK_MONOTONIC when the collectors were armed: the trace's first ``kvm_vcpu`` record."""
    try:
        with trace.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if '"kvm_vcpu"' not in line:
                    continue
                try:
                    value = json.loads(line).get("monotonic_s")
                except ValueError:
                    continue
                if isinstance(value, (int, float)):
                    return float(value)
    except OSError:
        return None
    return None

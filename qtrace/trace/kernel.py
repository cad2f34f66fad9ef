"""``kernel.jsonl``: the host kernel's KVM tracepoints of one capture (``qtrace-kernel/1``).

During a KVM capture the host records the ``kvm:`` tracepoints of the capture's QEMU process
(``qtrace.launch.kernel_events``) from a private tracefs instance and writes them here, one
JSON object per line (TRACE_FORMAT.md, "Kernel events"):

- the first line, ``{"type": "kernel", ...}``: whether the kernel side was recorded
  (``status`` ``recorded``) or why not (``unavailable``, with ``reason`` and ``fix``), which
  tracefs, instance, process, threads and events, and the clock (``mono``: CLOCK_MONOTONIC,
  the clock of the trace's ``kvm_vcpu`` records);
- one ``{"type": "kevent", ...}`` per tracepoint hit: ``ts`` (seconds), ``tid``, ``cpu``,
  ``comm`` (the thread's name: ``CPU 0/KVM`` for vCPU 0), ``event`` and the ``fields``
  decoded from the kernel's own text, which is kept in ``text``;
- the last line, ``{"type": "kernel_end", ...}``: counts, events the kernel lost, and the
  events left out because they came before the collectors were armed or belong to the
  quiet serial console (by name).

This module parses tracefs' text lines and reads and writes the file; pure, no I/O but the
file. The join with the trace is :mod:`qtrace.trace.kernel_join`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from qtrace.errors import TraceFormatError

__all__ = [
    "KERNEL_SCHEMA",
    "KERNEL_FILE",
    "KernelHeader",
    "KernelEvent",
    "KernelEnd",
    "KernelLog",
    "parse_line",
    "parse_fields",
    "lost_events",
    "read_kernel_log",
    "KernelLogWriter",
]

KERNEL_SCHEMA = "qtrace-kernel/1"
KERNEL_FILE = "kernel.jsonl"

KernelStatus = Literal["recorded", "unavailable"]

# One line of tracefs' text output (trace_pipe), default options:
#   "       CPU 0/KVM-1859    [000] .....  7750.319946: kvm_pio: pio_read at 0xcfc ..."
# The thread name may hold spaces and dashes; the tid is the last "-<digits>" before the CPU.
_LINE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<tid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s\d][^\s]*)\s+)?(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s?(?P<text>.*?)\s*$"
)
_LOST = re.compile(r"CPU:(?P<cpu>\d+) \[LOST (?P<count>\d+) EVENTS\]")

_HEX = r"0x[0-9a-fA-F]+"
# event -> the patterns of its TP_printk text (include/trace/events/kvm.h,
# arch/x86/kvm/trace.h); named groups become fields (hex and decimal numbers as integers).
_FIELDS: dict[str, tuple[re.Pattern[str], ...]] = {
    "kvm_mmio": (
        re.compile(
            rf"mmio (?P<op>unsatisfied-read|read|write) len (?P<len>\d+) gpa (?P<gpa>{_HEX})"
            rf"(?: val (?P<val>{_HEX}))?"
        ),
    ),
    "kvm_pio": (
        re.compile(
            rf"pio_(?P<op>read|write) at (?P<port>{_HEX}) size (?P<size>\d+) "
            rf"count (?P<count>\d+)(?: val (?P<val>{_HEX}))?"
        ),
    ),
    "kvm_fast_mmio": (re.compile(rf"fast mmio at gpa (?P<gpa>{_HEX})"),),
    "kvm_userspace_exit": (re.compile(r"reason (?P<reason>\S+) \((?P<code>-?\d+)\)"),),
    "kvm_exit": (
        re.compile(r"(?:vcpu (?P<vcpu>\d+) )?reason (?P<reason>\S+)"),
        re.compile(rf"rip (?P<rip>{_HEX})"),
    ),
    "kvm_entry": (
        re.compile(r"vcpu (?P<vcpu>\d+)"),
        re.compile(rf"rip (?P<rip>{_HEX})"),
    ),
    "kvm_page_fault": (
        re.compile(
            rf"(?:vcpu (?P<vcpu>\d+) )?(?:rip (?P<rip>{_HEX}) )?address (?P<address>{_HEX})"
        ),
        re.compile(rf"error_code (?P<error_code>{_HEX})"),
    ),
    "kvm_set_irq": (re.compile(r"gsi (?P<gsi>\d+) level (?P<level>-?\d+) source (?P<source>\d+)"),),
    "kvm_msi_set_irq": (re.compile(r"dst (?P<dst>[0-9a-fA-Fx]+) vec (?P<vec>\d+)"),),
    "kvm_ioapic_set_irq": (re.compile(r"pin (?P<pin>\d+) dst (?P<dst>\d+) vec (?P<vec>\d+)"),),
    "kvm_pic_set_irq": (re.compile(r"chip (?P<chip>\d+) pin (?P<pin>\d+)"),),
    "kvm_apic": (re.compile(rf"apic_(?P<op>read|write) (?P<reg>\S+) = (?P<val>{_HEX})"),),
    "kvm_inj_virq": (re.compile(rf"(?:irq|IRQ) (?P<vec>{_HEX}|\d+)"),),
    "kvm_apic_accept_irq": (re.compile(r"apicid (?P<apicid>\S+) vec (?P<vec>\d+)"),),
}
_STRINGS = {"op", "reason", "reg"}


def _value(name: str, text: str) -> int | str:
    if name in _STRINGS:
        return text
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        try:
            return int(text, 16)
        except ValueError:
            return text


def parse_fields(event: str, text: str) -> dict[str, int | str]:
    """The fields of one event's text by :data:`_FIELDS` (empty for events it does not know)."""
    fields: dict[str, int | str] = {}
    for pattern in _FIELDS.get(event, ()):
        found = pattern.search(text)
        if found is None:
            continue
        for name, raw in found.groupdict().items():
            if raw is not None:
                fields[name] = _value(name, raw)
    return fields


@dataclass(frozen=True)
class KernelEvent:
    """One tracepoint hit: ``ts`` in seconds of the instance's clock, the thread (``tid``,
    ``comm``) and CPU it fired on, the event's name, decoded ``fields`` and its ``text``."""

    ts: float
    tid: int
    cpu: int
    comm: str
    event: str
    fields: dict[str, int | str] = field(default_factory=dict)
    text: str = ""
    type: Literal["kevent"] = "kevent"

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "ts": self.ts,
            "tid": self.tid,
            "cpu": self.cpu,
            "comm": self.comm,
            "event": self.event,
            "fields": self.fields,
            "text": self.text,
        }


def parse_line(line: str) -> KernelEvent | None:
    """One line of tracefs text as an event; ``None`` for anything else (a LOST marker, a
    comment line of the ``trace`` file, a blank)."""
    found = _LINE.match(line)
    if found is None:
        return None
    event, text = found["event"], found["text"]
    return KernelEvent(
        ts=float(found["ts"]),
        tid=int(found["tid"]),
        cpu=int(found["cpu"]),
        comm=found["comm"].strip(),
        event=event,
        fields=parse_fields(event, text),
        text=text,
    )


def lost_events(line: str) -> int:
    """How many events a ``CPU:N [LOST n EVENTS]`` line says the kernel dropped (else 0)."""
    found = _LOST.search(line)
    return int(found["count"]) if found else 0


@dataclass(frozen=True)
class KernelHeader:
    """The first line of ``kernel.jsonl``: what was recorded, or why nothing was."""

    status: KernelStatus
    reason: str | None = None
    fix: str | None = None
    tracefs: str | None = None
    mounted_by_qtrace: bool = False
    instance: str | None = None
    pid: int | None = None
    tids: tuple[int, ...] = ()
    events: tuple[str, ...] = ()
    missing_events: tuple[str, ...] = ()
    clock: str = "mono"
    started_monotonic_s: float | None = None
    # The host's KVM modules (/sys/module): kvm_intel (VMX), kvm_amd (SVM), kvm_pvm (PVM)...
    # The vendor module decides which events fire (kvm_exit does not under kvm_pvm).
    kvm_modules: tuple[str, ...] = ()
    schema: str = KERNEL_SCHEMA
    type: Literal["kernel"] = "kernel"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "schema": self.schema, "status": self.status}
        for key in (
            "reason",
            "fix",
            "tracefs",
            "mounted_by_qtrace",
            "instance",
            "pid",
            "tids",
            "events",
            "missing_events",
            "clock",
            "started_monotonic_s",
            "kvm_modules",
        ):
            value = getattr(self, key)
            if value is None or value == ():
                continue
            out[key] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class KernelEnd:
    """The last line: ``events`` written, ``lost`` (the kernel's ring overflowed), the events
    before arming left out (``before_arming``, by event name), lines not understood, and the
    events of the quiet devices left out (``quiet``, by event name: those of the ports
    ``quiet_ports`` and the interrupt lines ``quiet_gsis``, the serial console's;
    :mod:`qtrace.launch.kernel_quiet`)."""

    events: int = 0
    lost: int = 0
    before_arming: dict[str, int] = field(default_factory=dict)
    unparsed_lines: int = 0
    stopped_monotonic_s: float | None = None
    quiet: dict[str, int] = field(default_factory=dict)
    quiet_ports: tuple[tuple[int, int], ...] = ()
    quiet_gsis: tuple[int, ...] = ()
    type: Literal["kernel_end"] = "kernel_end"

    @property
    def quiet_total(self) -> int:
        return sum(self.quiet.values())

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "events": self.events,
            "lost": self.lost,
            "before_arming": self.before_arming,
            "unparsed_lines": self.unparsed_lines,
        }
        if self.stopped_monotonic_s is not None:
            out["stopped_monotonic_s"] = self.stopped_monotonic_s
        if self.quiet or self.quiet_ports or self.quiet_gsis:
            out["quiet"] = self.quiet
            out["quiet_ports"] = [list(p) for p in self.quiet_ports]
            out["quiet_gsis"] = list(self.quiet_gsis)
        return out


@dataclass
class KernelLog:
    """A whole ``kernel.jsonl`` in memory."""

    header: KernelHeader
    events: list[KernelEvent] = field(default_factory=list)
    end: KernelEnd | None = None

    @property
    def recorded(self) -> bool:
        return self.header.status == "recorded"


def _header(obj: dict[str, Any]) -> KernelHeader:
    if obj.get("schema") != KERNEL_SCHEMA:
        raise ValueError(f"schema {obj.get('schema')!r}, this qtrace reads {KERNEL_SCHEMA!r}")
    if obj.get("status") not in ("recorded", "unavailable"):
        raise ValueError(f"status {obj.get('status')!r} is not recorded/unavailable")
    return KernelHeader(
        status=obj["status"],
        reason=obj.get("reason"),
        fix=obj.get("fix"),
        tracefs=obj.get("tracefs"),
        mounted_by_qtrace=bool(obj.get("mounted_by_qtrace", False)),
        instance=obj.get("instance"),
        pid=obj.get("pid"),
        tids=tuple(obj.get("tids", ())),
        events=tuple(obj.get("events", ())),
        missing_events=tuple(obj.get("missing_events", ())),
        clock=obj.get("clock", "mono"),
        started_monotonic_s=obj.get("started_monotonic_s"),
        kvm_modules=tuple(obj.get("kvm_modules", ())),
    )


def _event(obj: dict[str, Any]) -> KernelEvent:
    return KernelEvent(
        ts=float(obj["ts"]),
        tid=int(obj["tid"]),
        cpu=int(obj.get("cpu", 0)),
        comm=str(obj.get("comm", "")),
        event=str(obj["event"]),
        fields=dict(obj.get("fields") or {}),
        text=str(obj.get("text", "")),
    )


def _end(obj: dict[str, Any]) -> KernelEnd:
    return KernelEnd(
        events=int(obj.get("events", 0)),
        lost=int(obj.get("lost", 0)),
        before_arming={str(k): int(v) for k, v in (obj.get("before_arming") or {}).items()},
        unparsed_lines=int(obj.get("unparsed_lines", 0)),
        stopped_monotonic_s=obj.get("stopped_monotonic_s"),
        quiet={str(k): int(v) for k, v in (obj.get("quiet") or {}).items()},
        quiet_ports=tuple((int(p[0]), int(p[1])) for p in obj.get("quiet_ports") or ()),
        quiet_gsis=tuple(int(g) for g in obj.get("quiet_gsis") or ()),
    )


def read_kernel_log(path: Path | str) -> KernelLog | None:
    """Read ``kernel.jsonl`` (a run directory means the file in it); ``None`` when the capture
    has none (TCG, or made before qtrace recorded the kernel side).

    Raises:
        TraceFormatError: a line that is not a valid record, naming the file and line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / KERNEL_FILE
    if not path.exists():
        return None
    log: KernelLog | None = None
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("a record must be a JSON object")
                kind = obj.get("type")
                if log is None:
                    if kind != "kernel":
                        raise ValueError(f'the first record must be "kernel", found {kind!r}')
                    log = KernelLog(_header(obj))
                elif kind == "kevent":
                    log.events.append(_event(obj))
                elif kind == "kernel_end":
                    log.end = _end(obj)
                else:
                    raise ValueError(f"unknown record type {kind!r}")
            except (ValueError, KeyError, TypeError) as exc:
                if not line.endswith("\n"):
                    break  # a torn last line (the host was killed while writing it)
                raise TraceFormatError(path, number, str(exc)) from exc
    if log is None:
        raise TraceFormatError(path, 1, 'the file is empty; expected a "kernel" record')
    return log


class KernelLogWriter:
    """Writes ``kernel.jsonl``: the header, then events, then the end record."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle
        self.count = 0

    @classmethod
    def create(cls, path: Path) -> KernelLogWriter:
        return cls(path.open("w", encoding="utf-8"))

    def _line(self, obj: dict[str, Any]) -> None:
        self._handle.write(json.dumps(obj, separators=(",", ":")) + "\n")

    def header(self, header: KernelHeader) -> None:
        self._line(header.as_json())
        self._handle.flush()

    def events(self, events: Iterable[KernelEvent]) -> None:
        for event in events:
            self._line(event.as_json())
            self.count += 1

    def end(self, end: KernelEnd) -> None:
        self._line(end.as_json())
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def iter_text_events(lines: Iterable[str]) -> Iterator[KernelEvent | int]:
    """Events of tracefs text lines, with the count of a LOST marker as an int."""
    for line in lines:
        event = parse_line(line)
        if event is not None:
            yield event
        elif (lost := lost_events(line)) > 0:
            yield lost

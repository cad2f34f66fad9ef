"""Reading and writing ``qtrace-trace/1`` files.

The writer flushes every line, so a killed capture leaves valid JSONL up to its last
complete line. The reader validates each line against :mod:`qtrace.trace.schema` and raises
:class:`~qtrace.errors.TraceFormatError` naming the file and line; unknown fields are
ignored so later schema additions do not break older readers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from qtrace.errors import TraceFormatError
from qtrace.trace.kinds import CaptureStatus
from qtrace.trace.layout import FlatRange, FlatView, IoEventFd, KvmVcpu, LayoutRecord, Memslot
from qtrace.trace.schema import (
    SCHEMA_VERSION,
    Access,
    Async,
    CoalescingZone,
    Dma,
    End,
    Exit,
    Frame,
    Header,
    Irq,
    KvmHost,
    Region,
    Record,
    Stack,
)

__all__ = [
    "Trace",
    "TraceWriter",
    "read_trace",
    "iter_records",
    "decode_line",
    "device_properties",
    "record_to_json",
    "record_from_json",
    "repair_partial_tail",
]

_RECORD_CLASSES: dict[str, type[Any]] = {
    "header": Header,
    "stack": Stack,
    "exit": Exit,
    "access": Access,
    "irq": Irq,
    "dma": Dma,
    "async": Async,
    "end": End,
    "memslot": Memslot,
    "flatview": FlatView,
    "ioeventfd": IoEventFd,
    "kvm_vcpu": KvmVcpu,
}

# Fields a consumer cannot do without, per record type (the rest are optional).
_REQUIRED: dict[str, tuple[str, ...]] = {
    "header": ("schema", "device"),
    "stack": ("id", "frames"),
    "exit": ("seq", "reason"),
    "access": ("op", "space", "offset", "size", "value"),
    "irq": ("seq", "level"),
    "dma": ("seq", "op", "addr", "size"),
    "async": ("seq", "kind", "op"),
    "end": ("status",),
    "memslot": ("seq", "op", "slot", "start", "size"),
    "flatview": ("seq", "space", "cause", "ranges"),
    "ioeventfd": ("seq", "op", "space", "addr", "size"),
    "kvm_vcpu": ("seq", "index"),
}


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    """A record class's field names, once per class (``dataclasses.fields`` per record
    was a third of writing a million-access trace)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _plain(value: Any) -> Any:
    """``value`` as JSON takes it: nested records as dicts, sequences as lists. A plain
    value is returned as it is: what ``dataclasses.asdict`` gives, without deep-copying
    each scalar of every record."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def record_to_json(record: Record) -> str:
    """One record as a compact JSON line (no newline); ``None`` fields are left out."""
    raw = {name: _plain(getattr(record, name)) for name in _field_names(type(record))}
    out = {"type": raw.pop("type")}
    for key, value in raw.items():
        if value is None or value == {} or (key == "truncated" and value is False):
            continue
        if key == "frames":
            value = [{k: v for k, v in f.items() if v is not None} for f in value]
        elif key == "ranges" and isinstance(record, FlatView):
            value = [
                {k: v for k, v in r.items() if (v or k in _RANGE_KEPT) and v is not None}
                for r in value
            ]
        out[key] = list(value) if isinstance(value, tuple) else value
    return json.dumps(out, separators=(",", ":"))


_RANGE_KEPT = ("start", "size", "region", "kind")


def record_from_json(obj: dict[str, Any], default_seq: int = 0) -> Record:
    """Build a typed record from a decoded JSON object; raises ``ValueError`` if invalid.

    An access without ``seq`` (consumers need only op/space/offset/size/value) gets
    ``default_seq``, which the file reader sets to the line number.
    """
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in _RECORD_CLASSES:
        raise ValueError(
            f"unknown record type {kind!r}; "
            f'expected "type" to be one of {", ".join(_RECORD_CLASSES)}'
        )
    cls = _RECORD_CLASSES[kind]
    missing = [name for name in _REQUIRED[kind] if name not in obj]
    if missing:
        raise ValueError(
            f"{kind} record lacks {', '.join(missing)}; "
            f"a {kind} record needs {', '.join(_REQUIRED[kind])}"
        )
    known = _field_names(cls)
    kwargs = {k: v for k, v in obj.items() if k in known and k != "type"}
    if kind == "header":
        if kwargs["schema"] != SCHEMA_VERSION:
            raise ValueError(
                f"schema {kwargs['schema']!r}, this qtrace reads {SCHEMA_VERSION!r} "
                f"(a trace of another qtrace version?)"
            )
        kwargs["argv"] = tuple(kwargs.get("argv", ()))
        kwargs["device_properties"] = _header_device_properties(obj, kwargs["argv"])
        kwargs["regions"] = _regions(obj.get("regions", []))
    elif kind == "stack":
        kwargs["frames"] = tuple(_frame(f) for f in kwargs["frames"])
    elif kind == "flatview":
        kwargs["ranges"] = _flat_ranges(kwargs["ranges"])
    elif kind == "access":
        kwargs.setdefault("seq", default_seq)
        if kwargs["op"] not in ("read", "write"):
            raise ValueError(
                f'access op {kwargs["op"]!r} is not read/write; expected "read" or "write"'
            )
        if kwargs["space"] not in ("mmio", "pio", "pci-config"):
            raise ValueError(
                f"access space {kwargs['space']!r} is not mmio/pio/pci-config; "
                f"expected one of those"
            )
        for name in ("offset", "size", "value"):
            if not isinstance(kwargs[name], int) or isinstance(kwargs[name], bool):
                raise ValueError(f"access {name} must be an integer, found {kwargs[name]!r}")
    elif kind == "end":
        if isinstance(kwargs.get("kvm"), dict):
            kwargs["kvm"] = _kvm_host(kwargs["kvm"])
        if isinstance(kwargs.get("collector_error_messages"), list):
            kwargs["collector_error_messages"] = tuple(kwargs["collector_error_messages"])
        try:
            kwargs["status"] = CaptureStatus(kwargs["status"])
        except ValueError:
            raise ValueError(
                f"end status {kwargs['status']!r} is not a capture status; "
                f"expected one of {', '.join(CaptureStatus)}"
            ) from None
    return cls(**kwargs)  # type: ignore[no-any-return]


def _regions(raw: Any) -> tuple[Region, ...]:
    """The header's discovered region map (absent in traces written before discovery)."""
    if not isinstance(raw, list):
        raise ValueError("header regions must be a list of region objects")
    known = {f.name for f in dataclasses.fields(Region)}
    regions = []
    for entry in raw:
        if not isinstance(entry, dict) or not {"name", "bar", "offset", "size", "kind"} <= set(
            entry
        ):
            raise ValueError(
                f"header region {entry!r} lacks a field; expected name, bar, offset, size, kind"
            )
        fields = {k: v for k, v in entry.items() if k in known}
        fields["handlers"] = dict(fields.get("handlers") or {})
        regions.append(Region(**fields))
    return tuple(regions)


def _flat_ranges(raw: Any) -> tuple[FlatRange, ...]:
    if not isinstance(raw, list):
        raise ValueError("flatview ranges must be a list of range objects")
    known = {f.name for f in dataclasses.fields(FlatRange)}
    ranges = []
    for entry in raw:
        if not isinstance(entry, dict) or not {"start", "size", "kind"} <= set(entry):
            raise ValueError(f"flatview range {entry!r} lacks a field; expected start, size, kind")
        fields = {k: v for k, v in entry.items() if k in known}
        fields.setdefault("region", None)
        ranges.append(FlatRange(**fields))
    return tuple(ranges)


def _kvm_host(raw: dict[str, Any]) -> KvmHost:
    caps = raw.get("capabilities")
    try:
        zones = tuple(
            CoalescingZone(z["op"], z["space"], int(z["start"]), int(z["size"]), z.get("region"))
            for z in raw.get("zones", [])
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(
            f"end record's kvm zones: an entry lacks {exc}; expected op, space, start, size"
        ) from None
    return KvmHost(
        {str(k): bool(v) for k, v in caps.items()} if isinstance(caps, dict) else None, zones
    )


def _header_device_properties(obj: dict[str, Any], argv: tuple[str, ...]) -> dict[str, str] | None:
    """The header's ``device_properties``, validated; for an older trace, read from argv.

    Why the fallback: traces written before the field existed (every capture committed
    before it) only have QEMU's argv, and readers must not each parse it again; this is
    the one place that does, so that ``Header.device_properties`` is all they read.
    """
    if "device_properties" not in obj:
        device = obj.get("device")
        return device_properties(argv, device) if argv and isinstance(device, str) else None
    props = obj["device_properties"]
    if props is None:
        return None
    if not isinstance(props, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in props.items()
    ):
        raise ValueError(f"header device_properties must be an object of strings, found {props!r}")
    return dict(props)


def device_properties(argv: Iterable[str], device: str) -> dict[str, str] | None:
    """The ``key=value`` properties of ``device``'s ``-device`` option in QEMU's ``argv``.

    QEMU's option syntax: ``driver[,key=value...]`` (or ``driver=NAME,...``), a comma in a
    value doubled; a bare key means ``on``. The capture records the result in the header
    (from the argv it built), and the reader derives it for traces older than that field.
    ``None`` when no ``-device`` of that driver is there (then nothing is known of them).
    """
    args = list(argv)
    for flag, value in zip(args, args[1:], strict=False):
        if flag != "-device":
            continue
        parts = [part.replace("\0", ",") for part in value.replace(",,", "\0").split(",")]
        driver, items = (None, parts) if "=" in parts[0] else (parts[0], parts[1:])
        props: dict[str, str] = {}
        for item in filter(None, items):
            key, eq, val = item.partition("=")
            if key == "driver" and driver is None:
                driver = val
            else:
                props[key] = val if eq else "on"
        if driver == device:
            return props
    return None


def _frame(obj: Any) -> Frame:
    if not isinstance(obj, dict) or "func" not in obj:
        raise ValueError('a stack frame must be a JSON object with at least "func"')
    return Frame(func=obj["func"], file=obj.get("file"), line=obj.get("line"), pc=obj.get("pc"))


def decode_line(path: Path | str, number: int, line: str) -> Record:
    """One trace line as a typed record; raises :class:`TraceFormatError` naming the line.

    The message says what was wrong and what a valid line looks like, so a user holding a
    corrupt or cut-off trace knows which line to look at and why: json's own message counts
    lines and columns of the one-line document it was given, which misleads ("line 1
    column 1" for line 322 of the file).
    """
    text = line.rstrip("\n")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(path, number, _json_problem(text, line, exc)) from exc
    if not isinstance(obj, dict):
        raise TraceFormatError(
            path,
            number,
            f'a record must be a JSON object ({{"type": ...}}), not a JSON {_json_kind(obj)}',
        )
    try:
        return record_from_json(obj, default_seq=number)
    except (ValueError, TypeError, KeyError) as exc:
        raise TraceFormatError(path, number, str(exc)) from exc


def _json_problem(text: str, raw: str, exc: json.JSONDecodeError) -> str:
    """Why a line is not JSON, in terms of the trace (not of json's one-line document)."""
    shown = text if len(text) <= 60 else text[:57] + "..."
    if not raw.endswith("\n"):
        return (
            f"the file ends in the middle of this record ({exc.msg}, character {exc.pos + 1}): "
            "the capture was stopped while writing it (killed, or its disk was full). "
            "Expected a complete JSON object ending in a newline; the lines before it are intact"
        )
    if exc.pos >= len(text.rstrip()):
        return (
            f"the record stops before its JSON object is complete "
            f"({exc.msg}, character {exc.pos + 1}); "
            f"expected one whole JSON object per line, found {shown!r}"
        )
    return (
        f"not JSON ({exc.msg}, character {exc.pos + 1}); expected one JSON object per line "
        f'(e.g. {{"type":"access",...}}), found {shown!r}'
    )


def _json_kind(obj: object) -> str:
    if isinstance(obj, list):
        return "list"
    if isinstance(obj, str):
        return "string"
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "boolean"
    return "number"


def _numbered_records(path: Path) -> Iterator[tuple[int, Record]]:
    """(line number, record) for each non-blank line, validating as it goes."""
    try:
        handle = path.open(encoding="utf-8", errors="strict", newline="\n")
    except OSError as exc:
        raise TraceFormatError(path, 0, f"cannot open: {exc.strerror}") from exc
    with handle:
        number = 0
        seen_header = False
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                record = decode_line(path, number, line)
                if not seen_header and not isinstance(record, Header):
                    raise TraceFormatError(
                        path,
                        number,
                        f"the first record must be the header, "
                        f"found a record of type {record.type!r}",
                    )
                seen_header = True
                yield number, record
        except UnicodeDecodeError as exc:
            raise TraceFormatError(
                path,
                number + 1,
                f"not UTF-8 text ({exc.reason}) at or after this line; expected JSON Lines",
            ) from exc


def iter_records(path: Path | str) -> Iterator[Record]:
    """Yield the records of a trace file in order, validating each line."""
    for _, record in _numbered_records(Path(path)):
        yield record


@dataclass
class Trace:
    """A whole trace in memory, with stacks indexed by id.

    ``records`` holds the events (exits, accesses, interrupts, DMA); the memory-map records
    (memory slots, FlatViews, ioeventfds, vCPUs at arming) are kept apart in ``layout``, in
    file order, so readers of the events never meet them.
    """

    header: Header
    records: list[Record] = field(default_factory=list)
    stacks: dict[str, Stack] = field(default_factory=dict)
    end: End | None = None
    layout: list[LayoutRecord] = field(default_factory=list)

    @property
    def accesses(self) -> list[Access]:
        return [r for r in self.records if isinstance(r, Access)]

    @property
    def exits(self) -> list[Exit]:
        return [r for r in self.records if isinstance(r, Exit)]

    @property
    def irqs(self) -> list[Irq]:
        return [r for r in self.records if isinstance(r, Irq)]

    @property
    def dmas(self) -> list[Dma]:
        return [r for r in self.records if isinstance(r, Dma)]

    @property
    def memslots(self) -> list[Memslot]:
        return [r for r in self.layout if isinstance(r, Memslot)]

    @property
    def flatviews(self) -> list[FlatView]:
        return [r for r in self.layout if isinstance(r, FlatView)]

    @property
    def ioeventfds(self) -> list[IoEventFd]:
        return [r for r in self.layout if isinstance(r, IoEventFd)]

    @property
    def vcpus(self) -> list[KvmVcpu]:
        return [r for r in self.layout if isinstance(r, KvmVcpu)]

    @property
    def asyncs(self) -> list[Async]:
        return [r for r in self.records if isinstance(r, Async)]


def read_trace(path: Path | str) -> Trace:
    """Read and validate a whole trace file (a directory means its ``trace.jsonl``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "trace.jsonl"
    records = _numbered_records(path)
    first = next(records, None)
    if first is None:
        raise TraceFormatError(
            path,
            1,
            f"the file is empty; expected a header record on line 1 "
            f'({{"type":"header","schema":"{SCHEMA_VERSION}",...}})',
        )
    header = first[1]
    assert isinstance(header, Header)  # _numbered_records checks the first record
    trace = Trace(header=header)
    for number, record in records:
        if isinstance(record, Stack):
            trace.stacks[record.id] = record
        elif isinstance(record, End):
            trace.end = record
        elif isinstance(record, Header):
            raise TraceFormatError(
                path, number, "a second header record; expected exactly one, on line 1"
            )
        elif isinstance(record, (Memslot, FlatView, IoEventFd, KvmVcpu)):
            trace.layout.append(record)
        else:
            trace.records.append(record)
    return trace


def repair_partial_tail(path: Path) -> bool:
    """Drop a torn last line (a writer killed mid-line). Returns True if it cut something."""
    if not path.exists():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        handle.truncate(keep)
    return True


class TraceWriter:
    """Appends records to a trace file, one flushed line each."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    @classmethod
    def append_to(cls, path: Path) -> "TraceWriter":
        return cls(path.open("a", encoding="utf-8"))

    def write(self, record: Record) -> None:
        self._handle.write(record_to_json(record) + "\n")
        self._handle.flush()

    def write_all(self, records: Iterable[Record]) -> None:
        for record in records:
            self.write(record)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

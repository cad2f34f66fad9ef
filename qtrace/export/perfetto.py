"""The Chrome JSON trace event format, as Perfetto UI and Chromium's DevTools open it.

One process (the captured QEMU), one track per host thread (:mod:`qtrace.export.threads`):

* every KVM exit is a complete slice (``ph: X``) on its vCPU's track, spanning up to the
  end of the last access it caused, so those accesses (and whatever the vCPU thread did
  meanwhile: a write QEMU replayed from the coalesced-MMIO ring, an interrupt) nest inside;
* every device access is a complete slice with the register, value, region, handler and the
  stack's frames in ``args``;
* interrupts (``irq``) and DMA are thread-scoped instants (``ph: i``);
* the device's work off the register path (``async``: a timer armed, a bottom half
  scheduled, an fd handler run, ...) is a slice on the thread that did it; a ``run`` spans
  the records after it on its thread whose stack holds its callback (an interrupt raised
  from the timer, say);
* a flow (``ph: s`` at the cause's start, ``ph: f`` at the effect's start, both bound to
  their enclosing slice, ``bp: e``) joins each exit to the access it caused (``exit_seq``),
  and each timer arm or bottom-half schedule to the run of the same callback that follows
  it, often on another thread (the vCPU's write arms, the main loop runs).

Times come from :mod:`qtrace.export.timing`; on each track they strictly increase in
``seq`` order (a tie is moved 1 ns later). The capture records moments, not durations: an
access is drawn :data:`ACCESS_SPAN_US` long, or up to the next event on its track if that
comes sooner, and ``otherData`` says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath

from qtrace import __version__
from qtrace.annotate import decode_access
from qtrace.export.stacks import stack_labels
from qtrace.export.threads import SETUP_OPS, HostThread, TimelineRecord, assign_threads
from qtrace.export.timing import timing_of
from qtrace.trace import Access, Async, Dma, Exit, Irq, Trace

__all__ = ["ACCESS_SPAN_US", "CATEGORY", "EXIT_SPAN_US", "PID", "chrome_trace", "render"]

ACCESS_SPAN_US = 50.0
"""How long an access slice is drawn (capped by the next event on its track)."""

EXIT_SPAN_US = 50.0
"""How long an exit slice with nothing after it on its track is drawn (capped likewise)."""

PID = 1
"""The one process of the export: the captured QEMU."""

CATEGORY = "qtrace"
"""The category of every event (``args.kind`` says exit, access, irq, dma or async). One category,
because Chromium's DevTools binds a flow event only to a slice of the flow's own category at
the same timestamp, thread and process; Perfetto binds by time and does not mind."""

_TIE_US = 0.001

JsonObject = dict[str, object]


@dataclass
class _Item:
    record: TimelineRecord
    thread: HostThread
    ts: float
    dur: float | None = None  # None: an instant


def _tracks(trace: Trace) -> tuple[list[_Item], str]:
    pairs = assign_threads(trace)
    timing = timing_of([record for record, _ in pairs])
    by_track: dict[int, list[_Item]] = {}
    for (record, thread), ts in zip(pairs, timing.times_us):
        track = by_track.setdefault(thread.tid, [])
        if track and ts <= track[-1].ts:
            ts = round(track[-1].ts + _TIE_US, 3)
        track.append(_Item(record, thread, ts))
    items: list[_Item] = []
    for track in by_track.values():
        _set_durations(track, trace)
        items.extend(track)
    return items, timing.note


def _nominal(track: list[_Item], i: int, span_us: float) -> float:
    gap = track[i + 1].ts - track[i].ts if i + 1 < len(track) else span_us
    return round(min(span_us, gap), 3)


def _runs_inside(record: Async, later: _Item, trace: Trace) -> bool:
    stack = trace.stacks.get(later.record.stack) if later.record.stack is not None else None
    return stack is not None and any(frame.func == record.callback for frame in stack.frames)


def _set_durations(track: list[_Item], trace: Trace) -> None:
    """Accesses and async records get their nominal span; an exit spans up to the end of the
    last access it caused (``exit_seq``), with whatever its vCPU thread did meanwhile (a
    replayed coalesced write, an interrupt) inside it; an async ``run`` spans up to the last
    record before the next run (or exit) on its track whose stack holds its callback. Every
    slice ends by the start of the next event that is not inside it, and
    :func:`_nest` cuts any that would still end after its parent, so the slices of a track
    nest and never overlap."""
    for i, item in enumerate(track):
        if isinstance(item.record, (Access, Async)):
            item.dur = _nominal(track, i, ACCESS_SPAN_US)
    for i, item in enumerate(track):
        record = item.record
        if isinstance(record, Exit):
            last: _Item | None = None
            for later in track[i + 1 :]:
                if isinstance(later.record, Exit):
                    break
                if isinstance(later.record, Access) and later.record.exit_seq == record.seq:
                    last = later
            item.dur = _nominal(track, i, EXIT_SPAN_US) if last is None else None
        elif isinstance(record, Async) and record.op == "run" and record.callback:
            last = None
            for later in track[i + 1 :]:
                if isinstance(later.record, Exit) or (
                    isinstance(later.record, Async) and later.record.op == "run"
                ):
                    break
                if _runs_inside(record, later, trace):
                    last = later
        else:
            continue
        if last is not None:
            item.dur = round(max(last.ts + (last.dur or 0.0) - item.ts, item.dur or 0.0), 3)
    _nest(track)


def _nest(track: list[_Item]) -> None:
    """Cut a slice that would end after the slice it starts in (never needed by the rules
    above on a well-formed trace; a guard for odd ones)."""
    open_ends: list[float] = []
    for item in sorted((i for i in track if i.dur is not None), key=lambda i: i.ts):
        assert item.dur is not None
        while open_ends and item.ts >= open_ends[-1]:
            open_ends.pop()
        if open_ends and item.ts + item.dur > open_ends[-1]:
            item.dur = round(open_ends[-1] - item.ts, 3)
        open_ends.append(item.ts + item.dur)


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value:#x}"


def _args(pairs: dict[str, object]) -> JsonObject:
    return {k: v for k, v in pairs.items() if v is not None}


def _event(
    trace: Trace,
    item: _Item,
    name: str,
    record: Exit | Access | Irq | Dma | Async,
    args: dict[str, object],
    instant: bool = False,
) -> JsonObject:
    """One Trace Event on the record's thread: a complete slice ("X") or, for records
    without a duration, a thread-scoped instant ("i"); args end with the record's stack."""
    shape: JsonObject = (
        {"ph": "i", "s": "t", "ts": item.ts}
        if instant
        else {"ph": "X", "ts": item.ts, "dur": item.dur}
    )
    return {
        "name": name,
        "cat": CATEGORY,
        **shape,
        "pid": PID,
        "tid": item.thread.tid,
        "args": _args(
            {
                "seq": record.seq,
                **args,
                "stack": list(reversed(stack_labels(trace, record.stack))),
            }
        ),
    }


def _exit_event(trace: Trace, item: _Item, record: Exit) -> JsonObject:
    if record.port is not None:
        name = f"{record.reason} {record.direction or ''} {record.port:#x}".replace("  ", " ")
    elif record.phys_addr is not None:
        op = "write" if record.is_write else "read"
        name = f"{record.reason} {op} {record.phys_addr:#x}"
    else:
        name = record.reason
    return _event(
        trace,
        item,
        name,
        record,
        {
            "kind": "exit",
            "reason": record.reason,
            "vcpu": record.vcpu,
            "phys_addr": _hex(record.phys_addr),
            "len": record.len,
            "is_write": record.is_write,
            "port": _hex(record.port),
            "size": record.size,
            "direction": record.direction,
            "count": record.count,
            "data": record.data,
        },
    )


def _access_event(trace: Trace, item: _Item, record: Access) -> JsonObject:
    decoded = decode_access(trace.header.device, record, trace.header.regions)
    return _event(
        trace,
        item,
        f"{record.op} {decoded.name}",
        record,
        {
            "kind": "access",
            "op": record.op,
            "space": record.space,
            "register": decoded.name,
            "fields": decoded.summary() or None,
            "value": _hex(record.value),
            "size": record.size,
            "region": record.region,
            "offset": _hex(record.offset),
            "addr": _hex(record.addr),
            "handler": record.handler,
            "exit_seq": record.exit_seq,
            "coalesced": record.coalesced,
            "device": record.device,
            "vcpu": record.vcpu,
        },
    )


def _instant_event(trace: Trace, item: _Item, record: Irq | Dma) -> JsonObject:
    if isinstance(record, Irq):
        name = f"IRQ {record.line} {'raise' if record.level else 'lower'}"
        args: dict[str, object] = {"kind": "irq", "line": record.line, "level": record.level}
    else:
        name = f"DMA {record.op} {record.size} B at {record.addr:#x}"
        args = {
            "kind": "dma",
            "op": record.op,
            "addr": _hex(record.addr),
            "size": record.size,
            "data": record.data or None,
            "truncated": record.truncated or None,
        }
    return _event(trace, item, name, record, args, instant=True)


def _async_event(trace: Trace, item: _Item, record: Async) -> JsonObject:
    what = record.callback or record.name or record.notifier or ""
    return _event(
        trace,
        item,
        f"{record.kind} {record.op} {what}".strip(),
        record,
        {
            "kind": "async",
            "async": record.kind,
            "op": record.op,
            "callback": record.callback,
            "name": record.name,
            "object": record.object,
            "notifier": record.notifier,
            "region": record.region,
            "offset": _hex(record.offset),
            "size": record.size,
            "match_data": record.match_data,
            "data": _hex(record.data),
            "expire_ns": record.expire_ns,
            "gsi": record.gsi,
            "thread": record.thread,
        },
    )


def _flow(name: str, flow_id: int, cause: _Item, effect: _Item) -> list[JsonObject]:
    common = {"name": name, "cat": CATEGORY, "id": flow_id, "pid": PID}
    return [
        {**common, "ph": "s", "ts": cause.ts, "tid": cause.thread.tid, "bp": "e"},
        {**common, "ph": "f", "ts": effect.ts, "tid": effect.thread.tid, "bp": "e"},
    ]


def _async_flows(items: list[_Item]) -> list[JsonObject]:
    """Each run of a timer or bottom half, from the latest arm/schedule of its callback."""
    latest: dict[tuple[str, str], _Item] = {}
    events: list[JsonObject] = []
    for item in sorted(items, key=lambda i: i.record.seq):
        record = item.record
        if not isinstance(record, Async) or record.kind not in SETUP_OPS or not record.callback:
            continue
        key = (record.kind, record.callback)
        if record.op == SETUP_OPS[record.kind]:
            latest[key] = item
        elif record.op == "run" and key in latest:
            name = f"{record.kind} {SETUP_OPS[record.kind]} -> run"
            events += _flow(name, record.seq, latest[key], item)
    return events


def _flow_events(items: list[_Item]) -> list[JsonObject]:
    exits = {item.record.seq: item for item in items if isinstance(item.record, Exit)}
    events: list[JsonObject] = []
    for item in items:
        record = item.record
        if not isinstance(record, Access) or record.exit_seq is None:
            continue
        cause = exits.get(record.exit_seq)
        if cause is None:
            continue
        events += _flow("exit -> access", record.seq, cause, item)
    return events + _async_flows(items)


def _metadata_events(trace: Trace, threads: list[HostThread]) -> list[JsonObject]:
    header = trace.header
    binary = PurePosixPath(header.argv[0]).name if header.argv else "qemu-system-x86_64"
    events: list[JsonObject] = [
        {
            "name": "process_name",
            "ph": "M",
            "pid": PID,
            "tid": 0,
            "args": {"name": f"{binary} ({header.device}, QEMU {header.qemu_version})"},
        },
        {
            "name": "process_labels",
            "ph": "M",
            "pid": PID,
            "tid": 0,
            "args": {"labels": f"{header.accel}, {header.machine}, guest {header.guest}"},
        },
    ]
    for thread in sorted(threads, key=lambda t: t.sort_index):
        events.append(
            {
                "name": "thread_name",
                "ph": "M",
                "pid": PID,
                "tid": thread.tid,
                "args": {"name": thread.name},
            }
        )
        events.append(
            {
                "name": "thread_sort_index",
                "ph": "M",
                "pid": PID,
                "tid": thread.tid,
                "args": {"sort_index": thread.sort_index},
            }
        )
    return events


_PHASE_ORDER = {"X": 0, "i": 1, "s": 2, "f": 3}


def _order(event: JsonObject) -> tuple[float, int, float]:
    ts, dur, ph = event["ts"], event.get("dur", 0.0), event["ph"]
    assert isinstance(ts, float) and isinstance(dur, float) and isinstance(ph, str)
    return (ts, _PHASE_ORDER[ph], -dur)


def chrome_trace(trace: Trace) -> JsonObject:
    """``trace`` as a Chrome JSON trace object (``traceEvents``, ``otherData``)."""
    items, timing_note = _tracks(trace)
    events: list[JsonObject] = []
    for item in items:
        record = item.record
        if isinstance(record, Exit):
            events.append(_exit_event(trace, item, record))
        elif isinstance(record, Access):
            events.append(_access_event(trace, item, record))
        elif isinstance(record, Async):
            events.append(_async_event(trace, item, record))
        else:
            events.append(_instant_event(trace, item, record))
    events.extend(_flow_events(items))
    events.sort(key=_order)
    threads = list({item.thread.tid: item.thread for item in items}.values())
    header, end = trace.header, trace.end
    return {
        "traceEvents": [*_metadata_events(trace, threads), *events],
        "displayTimeUnit": "ms",
        "otherData": _args(
            {
                "exporter": f"qtrace {__version__}",
                "schema": header.schema,
                "device": header.device,
                "qemu_version": header.qemu_version,
                "accel": header.accel,
                "machine": header.machine,
                "guest": header.guest,
                "started": header.started or None,
                "status": str(end.status) if end else "no end record (the capture was cut)",
                "end_reason": end.reason if end else None,
                "timestamps": timing_note,
                "durations": (
                    f"not measured: an access is drawn {ACCESS_SPAN_US:g} us long (or up to "
                    f"the next event on its thread); an exit spans up to the end of the last "
                    f"access it caused"
                ),
            }
        ),
    }


def render(trace: Trace) -> str:
    """The JSON text of :func:`chrome_trace` (one line, newline-terminated)."""
    return json.dumps(chrome_trace(trace), separators=(",", ":")) + "\n"

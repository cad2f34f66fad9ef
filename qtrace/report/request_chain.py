"""One request of the device, from the interrupt that ended it back to the guest's kick, as
the trace's own records link it (the "Where the work ran" section's diagram is drawn from it
by :mod:`qtrace.report.request_flow`).

Every device record ran in a *context* that its stack names (innermost match first):

- ``access``: a register handler (the record is part of handling the guest's access, on the
  vCPU thread that made it);
- ``run``: an asynchronous callback the trace saw run (a bottom half, a timer, an fd
  handler: the latest ``run`` record of that callback on that thread);
- ``coroutine``: the function a coroutine started in (the frame above
  ``coroutine_trampoline``);
- ``thread``: a thread's own function (the frame above ``qemu_thread_start``: edu's
  factorial thread).

A *segment* is one context with the device records made in it. The chain starts at the
request's interrupt and goes back one segment at a time, stating a link only as the trace
proves it: a run is caused by the latest arm or schedule of the same callback (whose own
stack gives the segment before), an fd handler by the guest's write to its ioeventfd, an
access by the guest. A coroutine or a thread has no record of what started it: the segment
before it is the device work just before it (the latest register write or callback run), and
the link is marked ``inferred``.

Pure: reads only the trace.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from qtrace.export.threads import SETUP_OPS, HostThread, ThreadRole, TimelineRecord, assign_threads
from qtrace.trace import Access, Irq, Trace
from qtrace.trace.schema import Async

__all__ = [
    "COROUTINE_ENTRY",
    "THREAD_ENTRY",
    "Link",
    "RequestChain",
    "Segment",
    "request_chain",
]

ContextKind = Literal["access", "run", "coroutine", "thread"]
Link = Literal["guest", "setup", "ioeventfd", "inferred", "none"]

COROUTINE_ENTRY = "coroutine_trampoline"
"""QEMU's coroutine start (util/coroutine-ucontext.c): the frame above it is the function the
coroutine was created with (``blk_aio_read_entry``, ...)."""
THREAD_ENTRY = "qemu_thread_start"
"""QEMU's thread trampoline (util/qemu-thread-posix.c): the frame above it is the thread's
function (``edu_fact_thread``, ``kvm_vcpu_thread_fn``, ...)."""
MAX_SEGMENTS = 8
"""A chain longer than this is cut (no real request has been seen with more than four)."""


@dataclass(frozen=True)
class Segment:
    """One context of the request: ``kind`` and ``entry`` (the handler, callback or function),
    the thread it ran on, its first record (``start``: the access, the callback's run, or the
    first record made in the coroutine or thread) and the device records made in it, in
    trace order. ``link`` says how the trace ties it to the segment before it (``guest``: it
    is the guest's own access; ``setup``: ``setup`` armed or scheduled it; ``ioeventfd``: an
    fd handler, run because the guest wrote to an ioeventfd; ``inferred``: nothing ties it,
    it is the device work that came next; ``none``: the trace has no cause)."""

    kind: ContextKind
    entry: str
    thread: HostThread
    start: TimelineRecord
    records: tuple[TimelineRecord, ...]
    link: Link
    setup: Async | None = None


@dataclass(frozen=True)
class RequestChain:
    """The request's segments, first (the guest's kick) to last (the interrupt's), and that
    interrupt."""

    segments: tuple[Segment, ...]
    irq: Irq


def _frames(trace: Trace, record: TimelineRecord) -> list[str]:
    stack = trace.stacks.get(record.stack) if record.stack is not None else None
    return [f.func for f in stack.frames] if stack is not None else []


class _Placed:
    """The trace's timeline records with their threads, and what names a context."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.records = assign_threads(trace)
        self.index = {r.seq: i for i, (r, _) in enumerate(self.records)}
        self.handlers = {a.handler for a in trace.accesses if a.handler}
        self.callbacks = {
            a.callback for a in trace.asyncs if a.op == "run" and a.callback is not None
        }

    def context(self, record: TimelineRecord) -> tuple[ContextKind, str] | None:
        frames = _frames(self.trace, record)
        for i, func in enumerate(frames):  # innermost first
            if isinstance(record, Async) and record.op == "run" and func == record.callback:
                return ("run", func)
            if func in self.callbacks:
                return ("run", func)
            if func in self.handlers:
                return ("access", func)
            if func == COROUTINE_ENTRY and i > 0:
                return ("coroutine", frames[i - 1])
            if func == THREAD_ENTRY and i > 0:
                return ("thread", frames[i - 1])
        return None

    def before(self, seq: int) -> list[tuple[TimelineRecord, HostThread]]:
        """Records before ``seq``, newest first."""
        return list(reversed(self.records[: self.index[seq]]))

    def thread_of(self, record: TimelineRecord) -> HostThread:
        return self.records[self.index[record.seq]][1]

    def segment(self, record: TimelineRecord) -> Segment | None:
        """The segment ``record`` was made in, from its start to the last record made in the
        same context on that thread (its link to the segment before is set by the chain)."""
        if isinstance(record, Access):
            context: tuple[ContextKind, str] | None = ("access", record.handler or "?")
        elif isinstance(record, Async) and record.op == "run" and record.callback:
            context = ("run", record.callback)
        else:
            context = self.context(record)
        if context is None:
            return None
        kind, entry = context
        thread = self.thread_of(record)
        start = self._start(record, kind, entry, thread)
        members = [start]
        for later, t in self.records[self.index[start.seq] + 1 :]:
            if t.name != thread.name:
                continue
            new_start = isinstance(later, Access) or (
                isinstance(later, Async) and later.op == "run"
            )
            if new_start or self.context(later) != context:
                break
            members.append(later)
        return Segment(kind, entry, thread, start, tuple(members), "none")

    def _start(
        self, record: TimelineRecord, kind: ContextKind, entry: str, thread: HostThread
    ) -> TimelineRecord:
        if isinstance(record, Access) or (isinstance(record, Async) and record.op == "run"):
            return record
        start: TimelineRecord = record
        for earlier, t in self.before(record.seq):
            if t.name != thread.name:
                continue
            if kind == "access" and isinstance(earlier, Access):
                return earlier if earlier.handler == entry else start
            if kind == "run" and isinstance(earlier, Async) and earlier.op == "run":
                return earlier if earlier.callback == entry else start
            if self.context(earlier) != (kind, entry):
                break
            start = earlier
        return start


def _cause(placed: _Placed, segment: Segment) -> Segment | None:
    """The segment before ``segment``, with ``segment``'s link set (see the module docstring);
    ``None`` when the chain starts here."""
    start = segment.start
    if segment.kind == "run" and isinstance(start, Async):
        setup_op = SETUP_OPS.get(start.kind)
        if setup_op is None:
            return None  # an fd handler: the guest's write to its ioeventfd, or QEMU's own
        for earlier, _ in placed.before(start.seq):
            if (
                isinstance(earlier, Async)
                and earlier.kind == start.kind
                and earlier.op == setup_op
                and earlier.callback == start.callback
            ):
                return placed.segment(earlier)
        return None
    if segment.kind in ("coroutine", "thread"):
        for earlier, thread in placed.before(start.seq):
            guest_write = (
                isinstance(earlier, Access)
                and earlier.op == "write"
                and thread.role is ThreadRole.VCPU
            )
            if guest_write or (isinstance(earlier, Async) and earlier.op == "run"):
                return placed.segment(earlier)
    return None


def _link(segment: Segment, before: Segment | None) -> Segment:
    start = segment.start
    if segment.kind == "access":
        # The handler is on the stack but the trace has no record of the access itself.
        link: Link = "guest" if isinstance(start, Access) else "none"
    elif segment.kind == "run" and isinstance(start, Async) and start.kind == "fd-handler":
        link = "ioeventfd"
    elif before is None:
        link = "none"
    elif segment.kind == "run":
        link = "setup"
    else:
        link = "inferred"
    setup = None
    if link == "setup" and before is not None:
        setup = next(
            (
                r
                for r in reversed(before.records)
                if isinstance(r, Async) and r.op != "run" and r.callback == segment.entry
            ),
            None,
        )
    return Segment(segment.kind, segment.entry, segment.thread, start, segment.records, link, setup)


def _ends(placed: _Placed, segment: Segment) -> bool:
    return segment.kind == "access" or (
        isinstance(segment.start, Async) and segment.start.kind == "fd-handler"
    )


def request_chain(trace: Trace) -> RequestChain | None:
    """The first request of ``trace`` whose interrupt the records link back to the guest's
    kick (an access or an ioeventfd write); ``None`` when no raised interrupt is."""
    if not any(r.thread for r in trace.irqs):
        return None
    placed = _Placed(trace)
    for irq in trace.irqs:
        if irq.level != 1:
            continue
        segment = placed.segment(irq)
        chain: list[Segment] = []
        while segment is not None and len(chain) < MAX_SEGMENTS:
            before = None if _ends(placed, segment) else _cause(placed, segment)
            chain.append(_link(segment, before))
            segment = before
        if chain and chain[-1].link in ("guest", "ioeventfd"):
            last = chain[0]
            upto = tuple(r for r in last.records if r.seq <= irq.seq)
            chain[0] = replace(last, records=upto)
            return RequestChain(tuple(reversed(chain)), irq)
    return None

"""Which access caused each ``irq`` and ``dma`` record of a trace.

Why: a replay compares the model's interrupt line and DMA with QEMU's after each access,
so every event must be tied to the access whose handler produced it, or recognised as
produced by no access at all (a QEMU timer, the host backend).

How the collector orders records (TRACE_FORMAT.md; observed in the Linux capture): a
write is recorded when its handler is entered, a read when its handler returns, since
only then is the value known. So an event raised inside a write handler follows the
write's record, and one raised inside a read handler (ICR's read lowering the line)
precedes the read's record. The event's stack says which: its frames name the
handler (the header's ``extra.handlers`` and the accesses' ``handler`` fields give the
names and whether each reads or writes). An event whose stack holds no handler frame
happened outside any access (QEMU's autonegotiation timer, interrupt moderation,
received frames) and is *asynchronous*.

Events without a stack: DMA is given to the preceding access (the write convention;
the e1000 starts DMA only from register writes); an interrupt change is taken as
asynchronous, since it cannot be placed.

Events of QEMU's own exit (``qemu_cleanup`` on the stack) are left out: the guest's run is
over, and QEMU tears its backends down (deleting the e1000's netdev takes its link down and
raises LSC, seen in a Linux capture), which no access and no work of the model's caused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from qtrace.trace import Access, Dma, Irq, Trace

__all__ = ["SHUTDOWN_FRAMES", "Step", "attribute", "handler_ops"]

Event = Irq | Dma

SHUTDOWN_FRAMES = frozenset({"qemu_cleanup"})
"""QEMU's exit path (system/runstate.c, called from qemu_default_main once the main loop
has ended): an event under it happened after the guest's run."""


@dataclass
class Step:
    """One access with the events its handler produced, or asynchronous events alone.

    Attributes:
        access: The access, or ``None`` for events that happened outside any access.
        events: Its ``irq`` and ``dma`` records, in trace order.
    """

    access: Access | None
    events: list[Event] = field(default_factory=list)

    @property
    def access_op(self) -> str | None:
        return self.access.op if self.access is not None else None


def handler_ops(trace: Trace) -> dict[str, Literal["read", "write"]]:
    """Handler function name -> the op it performs, from the header and the accesses.

    The header's discovered regions name each MemoryRegionOps callback (``read``,
    ``read_with_attrs``, ...); traces written before discovery listed them in
    ``extra.handlers``.
    """
    ops: dict[str, Literal["read", "write"]] = {}
    for region in trace.header.regions:
        for callback, function in region.handlers.items():
            ops[function] = "write" if "write" in callback else "read"
    handlers = trace.header.extra.get("handlers")
    if isinstance(handlers, list):
        for entry in handlers:
            if isinstance(entry, dict):
                func, op = entry.get("func"), entry.get("op")
                if isinstance(func, str) and op in ("read", "write"):
                    ops[func] = "read" if op == "read" else "write"
    for record in trace.records:
        if isinstance(record, Access) and record.handler:
            ops.setdefault(record.handler, record.op)
    return ops


def attribute(trace: Trace) -> Iterator[Step]:
    """The trace as steps, in the order the device went through them."""
    ops = handler_ops(trace)
    # Both questions depend on the event's stack alone: asked once per distinct stack (a
    # capture has thousands of events on a few dozen stacks).
    shutdown: dict[str | None, bool] = {}
    inside: dict[tuple[str | None, bool], Literal["read", "write", "none"]] = {}
    previous: Step | None = None
    pending: list[Event] = []
    for record in [*trace.records, None]:  # None: the end, where the last events settle
        if isinstance(record, (Irq, Dma)):
            at_end = shutdown.get(record.stack)
            if at_end is None:
                at_end = shutdown[record.stack] = _at_shutdown(trace, record)
            if not at_end:
                pending.append(record)
            continue
        if record is not None and not isinstance(record, Access):
            continue
        own: list[Event] = []
        asynchronous: list[Event] = []
        for event in pending:
            key = (event.stack, isinstance(event, Dma))
            where = inside.get(key)
            if where is None:
                where = inside[key] = _inside(trace, ops, event)
            if where == "read" and record is not None and record.op == "read":
                own.append(event)
            elif where == "write" and previous is not None and previous.access_op == "write":
                previous.events.append(event)
            else:
                asynchronous.append(event)
        pending = []
        if previous is not None:
            yield previous
        if asynchronous:
            yield Step(None, asynchronous)
        previous = Step(record, own) if record is not None else None


def _at_shutdown(trace: Trace, event: Event) -> bool:
    stack = trace.stacks.get(event.stack) if event.stack else None
    return stack is not None and any(f.func in SHUTDOWN_FRAMES for f in stack.frames)


def _inside(
    trace: Trace, ops: dict[str, Literal["read", "write"]], event: Event
) -> Literal["read", "write", "none"]:
    """Which kind of handler ``event`` happened in, from its stack (``none``: no handler)."""
    stack = trace.stacks.get(event.stack) if event.stack else None
    if stack is None:  # cannot be placed: DMA by the write convention, irq as asynchronous
        return "write" if isinstance(event, Dma) else "none"
    for frame in stack.frames:
        op = ops.get(frame.func)
        if op is not None:
            return op
    return "none"

"""Where the work ran: per host thread, what the device's records show ran there, and the cause
and effect the records prove (a report section, ``templates/threads.j2`` says it).

Only traces whose records carry ``thread`` (``qtrace-trace/1``'s optional field) get a
section: :func:`where_work_ran` returns ``None`` for the others, so their reports are
unchanged. Threads are named as the exports name them
(:func:`~qtrace.export.threads.assign_threads`: ``main loop`` for QEMU's ``main``).

A link is stated only when the records make it: a timer or bottom-half run is tied to the
latest arm or schedule of the same callback before it (as the Perfetto export's flows are),
the register access to the one being handled on the arming thread when its handler is on the
arm's stack; an ioeventfd to the fd handler registered for the same notifier, that handler's
runs, and the DMA and interrupts whose stacks have the handler on them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from qtrace.annotate.registers import decode_access
from qtrace.export.threads import (
    SETUP_OPS,
    HostThread,
    ThreadRole,
    TimelineRecord,
    assign_threads,
)
from qtrace.report.recorded import Recorded, recorded
from qtrace.report.request_flow import RequestFlow, request_flow
from qtrace.trace import Access, Dma, Irq, Trace
from qtrace.trace.kernel import KernelLog
from qtrace.trace.kernel_join import KernelJoin
from qtrace.trace.schema import Async

__all__ = [
    "ArmedElsewhere",
    "NotifierPath",
    "ThreadActivity",
    "WhereWorkRan",
    "where_work_ran",
]


@dataclass(frozen=True)
class ThreadActivity:
    """What one host thread did in the trace. Counts are ``(name, count)`` pairs, most first:
    ``handlers`` the functions that handled its register accesses, ``dma_apis`` the QEMU
    functions its DMA went through, ``irq_lines`` the interrupt lines it raised or lowered,
    ``runs`` the async callbacks it ran (``(kind, callback, count)``), ``setups`` the async
    work it set up (``(kind op, callback or region, count)``, e.g. ``timer arm``)."""

    thread: str
    role: str
    accesses: int
    handlers: tuple[tuple[str, int], ...]
    dmas: int
    dma_apis: tuple[tuple[str, int], ...]
    irqs: int
    irq_lines: tuple[tuple[str, int], ...]
    runs: tuple[tuple[str, str, int], ...]
    setups: tuple[tuple[str, str, int], ...]


@dataclass(frozen=True)
class ArmedElsewhere:
    """A timer armed (``kind`` ``timer``, ``op`` ``arm``) or bottom half scheduled on one thread
    whose callback then ran on another: the first such run (``run_seq`` on ``run_thread``) and
    the setup before it (``setup_seq`` on ``setup_thread``); ``runs`` counts the callback's
    runs on ``run_thread``. ``access_*``: the register access being handled when it was set
    up (its handler is on the setup's stack), when there is one."""

    kind: str
    op: str
    callback: str
    setup_seq: int
    setup_thread: str
    run_seq: int
    run_thread: str
    runs: int
    access_seq: int | None = None
    access_kind: str | None = None
    access_register: str | None = None
    access_handler: str | None = None


@dataclass(frozen=True)
class NotifierPath:
    """An ioeventfd and the fd handler QEMU registered for the same eventfd (``notifier``).

    ``addresses``: the ``region+offset`` writes KVM completes by signalling it, added at
    ``add_seq``; ``inline_accesses`` counts the device accesses to those addresses recorded on
    a vCPU thread while it was in effect (0: none reached QEMU's handler there). ``callback``
    registered at ``register_seq``; its runs on ``run_thread`` (``runs``, the first at
    ``run_seq``); ``dmas`` the DMA records on that thread whose stack has the callback on it,
    ``irq_lines`` the interrupts raised under it.
    """

    notifier: str
    addresses: tuple[str, ...]
    add_seq: int
    add_thread: str
    inline_accesses: int
    callback: str | None = None
    register_seq: int | None = None
    run_thread: str | None = None
    run_seq: int | None = None
    runs: int = 0
    dmas: int = 0
    dma_first_seq: int | None = None
    irq_lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class WhereWorkRan:
    """The section: one row per thread (vCPUs first, then the main loop, ...), then the links,
    then one request from the guest's kick to its interrupt (:mod:`.request_flow`)."""

    threads: tuple[ThreadActivity, ...]
    armed: tuple[ArmedElsewhere, ...] = ()
    notifiers: tuple[NotifierPath, ...] = ()
    request: RequestFlow | None = None
    # The only kinds of async work the capture recorded (header extra.record_async), if
    # its guest plan chose some: the others were not looked for.
    recorded_kinds: tuple[str, ...] | None = None
    # What the capture recorded at all (recorded.py): a column of a kind it did not record
    # says so instead of 0.
    recorded: Recorded = field(default_factory=Recorded)


def where_work_ran(
    trace: Trace, kernel: KernelLog | None = None, join: KernelJoin | None = None
) -> WhereWorkRan | None:
    """The section for ``trace``; ``None`` when no record names its thread (older traces).
    ``kernel`` and its ``join`` give the request diagram its kernel's lane."""
    placed = assign_threads(trace)
    if not any(record.thread for record, _ in placed):
        return None
    kinds = recorded(trace.header)
    return WhereWorkRan(
        threads=_activities(placed),
        armed=_armed_elsewhere(trace, placed),
        notifiers=_notifier_paths(trace, placed),
        request=request_flow(trace, kernel, join),
        recorded_kinds=kinds.async_kinds,
        recorded=kinds,
    )


def _most_first(counter: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def _activities(placed: list[tuple[TimelineRecord, HostThread]]) -> tuple[ThreadActivity, ...]:
    threads: dict[str, HostThread] = {}
    records: dict[str, list[TimelineRecord]] = {}
    for record, thread in placed:
        threads.setdefault(thread.name, thread)
        records.setdefault(thread.name, []).append(record)
    rows = []
    for name, thread in sorted(threads.items(), key=lambda kv: kv[1].sort_index):
        mine = records[name]
        accesses = [r for r in mine if isinstance(r, Access)]
        dmas = [r for r in mine if isinstance(r, Dma)]
        irqs = [r for r in mine if isinstance(r, Irq)]
        asyncs = [r for r in mine if isinstance(r, Async)]
        runs = Counter((a.kind, a.callback or "") for a in asyncs if a.op == "run")
        setups = Counter(
            (f"{a.kind} {a.op}", a.callback or a.region or "") for a in asyncs if a.op != "run"
        )
        rows.append(
            ThreadActivity(
                thread=name,
                role=str(thread.role),
                accesses=len(accesses),
                handlers=_most_first(Counter(a.handler or "?" for a in accesses)),
                dmas=len(dmas),
                dma_apis=_most_first(Counter(d.api or "pci_dma_rw" for d in dmas)),
                irqs=len(irqs),
                irq_lines=_most_first(Counter(i.line for i in irqs)),
                runs=tuple((k, c, n) for (k, c), n in sorted(runs.items())),
                setups=tuple((k, c, n) for (k, c), n in sorted(setups.items())),
            )
        )
    return tuple(rows)


def _stack_funcs(trace: Trace, stack_id: str | None) -> set[str]:
    stack = trace.stacks.get(stack_id) if stack_id is not None else None
    return {f.func for f in stack.frames} if stack is not None else set()


def _armed_elsewhere(
    trace: Trace, placed: list[tuple[TimelineRecord, HostThread]]
) -> tuple[ArmedElsewhere, ...]:
    latest: dict[tuple[str, str], tuple[Async, str]] = {}
    last_access: dict[str, Access] = {}
    setup_access: dict[int, Access] = {}
    first: dict[tuple[str, str, str], tuple[Async, str, Async]] = {}
    runs: Counter[tuple[str, str, str]] = Counter()
    for record, thread in placed:
        if isinstance(record, Access):
            last_access[thread.name] = record
        if not isinstance(record, Async) or record.kind not in SETUP_OPS or not record.callback:
            continue
        key = (record.kind, record.callback)
        if record.op == SETUP_OPS[record.kind]:
            latest[key] = (record, thread.name)
            access = last_access.get(thread.name)
            if access is not None and access.handler in _stack_funcs(trace, record.stack):
                setup_access[record.seq] = access
        elif record.op == "run" and key in latest:
            setup, setup_thread = latest[key]
            if setup_thread == thread.name:
                continue
            group = (record.kind, record.callback, thread.name)
            runs[group] += 1
            first.setdefault(group, (setup, setup_thread, record))
    links = []
    for (kind, callback, run_thread), (setup, setup_thread, run) in first.items():
        access = setup_access.get(setup.seq)
        register = None
        if access is not None:
            decoded = decode_access(trace.header.device, access, trace.header.regions)
            register = decoded.name if decoded.known else None
        links.append(
            ArmedElsewhere(
                kind=kind,
                op=setup.op,
                callback=callback,
                setup_seq=setup.seq,
                setup_thread=setup_thread,
                run_seq=run.seq,
                run_thread=run_thread,
                runs=runs[(kind, callback, run_thread)],
                access_seq=access.seq if access else None,
                access_kind=f"{access.space} {access.op}" if access else None,
                access_register=register,
                access_handler=access.handler if access else None,
            )
        )
    return tuple(links)


def _address(record: Async) -> str:
    return f"{record.region}+{record.offset or 0:#x}"


def _notifier_paths(
    trace: Trace, placed: list[tuple[TimelineRecord, HostThread]]
) -> tuple[NotifierPath, ...]:
    adds: dict[str, list[tuple[Async, str]]] = {}
    for record, thread in placed:
        if not isinstance(record, Async) or (record.kind, record.op) != ("ioeventfd", "add"):
            continue
        if record.notifier and record.region:
            adds.setdefault(record.notifier, []).append((record, thread.name))
    paths = []
    for notifier, added in adds.items():
        first_add, add_thread = added[0]
        targets = {(r.region, r.offset or 0) for r, _ in added}
        removed = min(
            (
                r.seq
                for r, _ in placed
                if isinstance(r, Async)
                and r.kind == "ioeventfd"
                and r.op == "del"
                and r.notifier == notifier
                and r.seq > first_add.seq
            ),
            default=None,
        )
        inline = sum(
            1
            for r, t in placed
            if isinstance(r, Access)
            and t.role is ThreadRole.VCPU
            and (r.region, r.offset) in targets
            and r.seq > first_add.seq
            and (removed is None or r.seq < removed)
        )
        register = next(
            (
                r
                for r, _ in placed
                if isinstance(r, Async)
                and r.kind == "fd-handler"
                and r.op == "register"
                and r.notifier == notifier
                and r.callback
            ),
            None,
        )
        path = NotifierPath(
            notifier=notifier,
            addresses=tuple(dict.fromkeys(_address(r) for r, _ in added)),
            add_seq=first_add.seq,
            add_thread=add_thread,
            inline_accesses=inline,
        )
        if register is not None and register.callback:
            path = _with_runs(trace, placed, path, register)
        paths.append(path)
    return tuple(paths)


def _with_runs(
    trace: Trace,
    placed: list[tuple[TimelineRecord, HostThread]],
    path: NotifierPath,
    register: Async,
) -> NotifierPath:
    """``path`` with the runs of the handler ``register`` registered, on the thread of its first
    run that the event loop dispatched (not a run made while the ioeventfd was torn down)."""
    callback = register.callback or ""
    runs = [
        (r, t.name)
        for r, t in placed
        if isinstance(r, Async)
        and r.kind == "fd-handler"
        and r.op == "run"
        and r.callback == callback
        and r.seq > register.seq
    ]
    dispatched = [(r, t) for r, t in runs if "aio_dispatch_handler" in _stack_funcs(trace, r.stack)]
    if not dispatched:
        return replace(path, callback=callback, register_seq=register.seq)
    first_run, thread = dispatched[0]
    under = [
        r
        for r, t in placed
        if t.name == thread
        and isinstance(r, (Dma, Irq))
        and r.seq > first_run.seq
        and callback in _stack_funcs(trace, r.stack)
    ]
    dmas = [r for r in under if isinstance(r, Dma)]
    return replace(
        path,
        callback=callback,
        register_seq=register.seq,
        run_thread=thread,
        run_seq=first_run.seq,
        runs=sum(1 for _, t in dispatched if t == thread),
        dmas=len(dmas),
        dma_first_seq=dmas[0].seq if dmas else None,
        irq_lines=tuple(dict.fromkeys(r.line for r in under if isinstance(r, Irq))),
    )

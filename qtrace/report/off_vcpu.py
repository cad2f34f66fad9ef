"""The evidence of the guide's chapter "When device work runs outside ``kvm_cpu_exec``":
what one capture shows about its device's work off the register path (``templates/
guide.md.j2`` tells it; :func:`off_vcpu_evidence` computes every number it uses).

All of it comes from the capture's report model (its request diagram, its ioeventfds and
timers, :mod:`qtrace.report.threads`), its trace and its guest's serial log: nothing here
knows a device. Where a field is empty the chapter says nothing about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qtrace.annotate import AnnotatedStack
from qtrace.export.threads import ThreadRole, assign_threads
from qtrace.report.model import CaptureReport
from qtrace.report.request_flow import FlowStep, RequestFlow, dma_purpose
from qtrace.report.sequence import to_mermaid
from qtrace.report.threads import ArmedElsewhere, NotifierPath
from qtrace.trace import Access, Dma, Exit, Irq, Trace
from qtrace.trace.schema import Async

__all__ = ["QUEUED_WORK_FRAMES", "DmaUse", "OffVcpuEvidence", "TimerWork", "off_vcpu_evidence"]

QUEUED_WORK_FRAMES = (
    "qemu_wait_io_event",
    "qemu_process_cpu_events",
    "process_queued_cpu_work",
    "run_on_cpu",
    "async_run_on_cpu",
    "async_safe_run_on_cpu",
)
"""Frames of the vCPU loop's queued work (name prefixes; ``qemu_process_cpu_events`` is
``qemu_wait_io_event`` since QEMU 10.2): a record made inside such work has one of them."""
GUEST_COMMENT = "# "
"""The probe guest's own lines in ``serial.log`` (what it read back and concluded)."""


@dataclass(frozen=True)
class DmaUse:
    """The request's DMA records made for one purpose (:func:`dma_purpose`), in order."""

    purpose: str
    op: str
    thread: str
    seqs: tuple[int, ...]
    sizes: tuple[int, ...]
    addrs: tuple[int, ...]
    data: str
    mapped: bool

    def le32(self, index: int) -> int | None:
        """Little-endian 32-bit word ``index`` of the first record's data (``None`` past its
        end): what a device wrote, as the guest reads it."""
        chunk = self.data[index * 8 : index * 8 + 8]
        return int.from_bytes(bytes.fromhex(chunk), "little") if len(chunk) == 8 else None


@dataclass(frozen=True)
class TimerWork:
    """A timer or bottom half set up on one thread and run on another, with what its runs
    did there: the DMA records and interrupts whose stacks have its callback."""

    link: ArmedElsewhere
    dmas: tuple[Dma, ...]
    irqs: tuple[Irq, ...]
    setups: int = 1


@dataclass(frozen=True)
class OffVcpuEvidence:
    """One capture's device work off the register path (see the module docstring).

    ``ioeventfds``: the ``add`` records of the notifier whose handler ran (``notifier``),
    ``ioeventfd_addr`` the guest-physical address of the first, ``added_during`` the access
    being handled when it was added; ``notify_accesses`` the device accesses to those
    addresses anywhere in the trace. ``kick``/``kick_exit``/``kick_stack``: the request's
    first register access, when it started with one. ``handler_stack``: the stack of the
    request's first DMA (the virtqueue handler's, under an fd handler). ``irq`` with its
    stack and the kernel's steps that delivered it. ``off_vcpu``: records (DMA, interrupts,
    async work) made on other threads than the vCPUs, ``queued_work``: of the trace's
    ``records`` that happen on a thread (accesses, exits, DMA, interrupts, async work), those
    whose stacks have a frame of :data:`QUEUED_WORK_FRAMES`.
    """

    name: str
    link: str
    report: CaptureReport
    flow: RequestFlow | None
    mermaid: str
    notifier: NotifierPath | None
    ioeventfds: tuple[Async, ...]
    ioeventfd_addr: int | None
    added_during: Access | None
    notify_accesses: int
    kick_kernel: FlowStep | None
    kick: Access | None
    kick_exit: Exit | None
    kick_stack: AnnotatedStack | None
    handler_stack: AnnotatedStack | None
    handler_dma: Dma | None
    dmas: tuple[DmaUse, ...]
    irq: Irq | None
    irq_stack: AnnotatedStack | None
    irq_kernel: tuple[FlowStep, ...]
    irqfd_assigned: tuple[int, ...]
    irqfd_signals: int
    records: int
    off_vcpu: int
    off_vcpu_threads: tuple[str, ...]
    queued_work: int
    timers: tuple[TimerWork, ...]
    guest_lines: tuple[str, ...]
    accesses: tuple[Access, ...] = ()

    def guest_line(self, text: str) -> str | None:
        """The guest's first serial line that contains ``text`` (without its ``# ``)."""
        return next((line for line in self.guest_lines if text in line), None)

    def dma(self, purpose: str) -> DmaUse | None:
        return next((d for d in self.dmas if d.purpose == purpose), None)

    def reads_after(self, access: Access) -> Access | None:
        """The guest's next read of the register ``access`` wrote (a result read back)."""
        return next(
            (
                a
                for a in self.accesses
                if a.seq > access.seq
                and a.op == "read"
                and (a.region, a.offset) == (access.region, access.offset)
            ),
            None,
        )


def _stack(report: CaptureReport, stack_id: str | None) -> AnnotatedStack | None:
    view = report.stack_view(stack_id) if stack_id is not None else None
    return view.stack if view is not None else None


def _dma_uses(trace: Trace, flow: RequestFlow | None) -> tuple[DmaUse, ...]:
    if flow is None:
        return ()
    groups: dict[tuple[str, str, str], list[Dma]] = {}
    for segment in flow.chain.segments:
        for record in segment.records:
            if isinstance(record, Dma):
                key = (dma_purpose(trace, record), record.op, segment.thread.name)
                groups.setdefault(key, []).append(record)
    return tuple(
        DmaUse(
            purpose,
            op,
            thread,
            tuple(d.seq for d in dmas),
            tuple(d.size for d in dmas),
            tuple(d.addr for d in dmas),
            dmas[0].data or "",
            all(bool(d.mapped) for d in dmas),
        )
        for (purpose, op, thread), dmas in groups.items()
    )


def _guest_lines(capture: Path) -> tuple[str, ...]:
    log = (capture if capture.is_dir() else capture.parent) / "serial.log"
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    return tuple(
        line[len(GUEST_COMMENT) :].strip()
        for line in text.splitlines()
        if line.startswith(GUEST_COMMENT)
    )


def _timer_work(trace: Trace, armed: tuple[ArmedElsewhere, ...]) -> tuple[TimerWork, ...]:
    out = []
    records: list[Dma | Irq] = [*trace.dmas, *trace.irqs]
    for link in armed:
        under = [
            r
            for r in records
            if r.seq > link.run_seq
            and r.stack is not None
            and link.callback in {f.func for f in trace.stacks[r.stack].frames}
        ]
        setups = sum(
            1
            for a in trace.asyncs
            if (a.kind, a.op, a.callback) == (link.kind, link.op, link.callback)
        )
        out.append(
            TimerWork(
                link,
                tuple(sorted((r for r in under if isinstance(r, Dma)), key=lambda r: r.seq)),
                tuple(sorted((r for r in under if isinstance(r, Irq)), key=lambda r: r.seq)),
                setups,
            )
        )
    return tuple(out)


def off_vcpu_evidence(
    name: str, link: str, report: CaptureReport, trace: Trace, capture: Path
) -> OffVcpuEvidence:
    """The chapter's evidence from one capture (see :class:`OffVcpuEvidence`)."""
    where = report.threads
    flow = where.request if where is not None else None
    notifiers = where.notifiers if where is not None else ()
    notifier = next((n for n in notifiers if n.run_thread), notifiers[0] if notifiers else None)
    adds = tuple(
        a
        for a in trace.asyncs
        if notifier is not None
        and (a.kind, a.op) == ("ioeventfd", "add")
        and a.notifier == notifier.notifier
    )
    fd_addr = next(
        (f.addr for f in trace.ioeventfds if f.op == "add" and adds and f.seq > adds[0].seq),
        None,
    )
    during = None
    if adds:
        handled = [a for a in trace.accesses if a.seq < adds[0].seq and a.thread == adds[0].thread]
        during = handled[-1] if handled else None
    targets = {(a.region, a.offset or 0) for a in adds}
    first = flow.chain.segments[0] if flow is not None else None
    kick = first.start if first is not None and isinstance(first.start, Access) else None
    dmas = [r for s in flow.chain.segments for r in s.records if isinstance(r, Dma)] if flow else []
    irq = flow.chain.irq if flow is not None else None
    placed = assign_threads(trace)
    off = [
        (r, t)
        for r, t in placed
        if isinstance(r, (Dma, Irq, Async)) and t.role is not ThreadRole.VCPU
    ]
    queued = sum(
        1
        for r, _ in placed
        if r.stack is not None
        and any(f.func.startswith(QUEUED_WORK_FRAMES) for f in trace.stacks[r.stack].frames)
    )
    irq_steps: tuple[FlowStep, ...] = ()
    if flow is not None and irq is not None:
        index = next((i for i, s in enumerate(flow.steps) if irq.seq in s.seqs), len(flow.steps))
        irq_steps = tuple(s for s in flow.steps[index + 1 :] if s.kernel)
    return OffVcpuEvidence(
        name=name,
        link=link,
        report=report,
        flow=flow,
        mermaid=to_mermaid(flow.sequence()) if flow is not None else "",
        notifier=notifier,
        ioeventfds=adds,
        ioeventfd_addr=fd_addr,
        added_during=during,
        notify_accesses=sum(1 for a in trace.accesses if (a.region, a.offset) in targets),
        kick_kernel=flow.steps[0] if flow is not None and flow.steps[0].kernel else None,
        kick=kick,
        kick_exit=next((e for e in trace.exits if kick and e.seq == kick.exit_seq), None),
        kick_stack=_stack(report, kick.stack) if kick is not None else None,
        handler_stack=_stack(report, dmas[0].stack) if dmas else None,
        handler_dma=dmas[0] if dmas else None,
        dmas=_dma_uses(trace, flow),
        irq=irq,
        irq_stack=_stack(report, irq.stack) if irq is not None else None,
        irq_kernel=irq_steps,
        irqfd_assigned=tuple(a.seq for a in trace.asyncs if (a.kind, a.op) == ("irqfd", "assign")),
        irqfd_signals=sum(1 for a in trace.asyncs if (a.kind, a.op) == ("irqfd", "signal")),
        records=len(placed),
        off_vcpu=len(off),
        off_vcpu_threads=tuple(dict.fromkeys(t.name for _, t in off)),
        queued_work=queued,
        timers=_timer_work(trace, where.armed if where is not None else ()),
        guest_lines=_guest_lines(capture),
        accesses=tuple(trace.accesses),
    )

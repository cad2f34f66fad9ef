"""The multi-thread sequence diagram of one request, from the guest's kick to its interrupt
(the "Where the work ran" section; drawn with :mod:`qtrace.report.sequence`).

The request is :func:`~qtrace.report.request_chain.request_chain`'s. Participants are the
host threads that ran it (vCPU, main loop, iothreads, the device's own threads) and, under
KVM, the host kernel, whose part comes from ``kernel.jsonl`` when the capture has it: the
guest's write as KVM saw it (``kvm_mmio``, with the exit it made or the ioeventfd that took
it), and the interrupt's delivery (``kvm_msi_set_irq`` / ``kvm_set_irq``,
``kvm_apic_accept_irq``). Every message carries its record's ``seq`` and ``t`` (kernel events
are put on the trace's clock through the ``kvm_vcpu`` record); a message the trace does not
prove is a :class:`FlowStep` with ``inferred`` set, and its text says so.

Pure: reads the trace and the kernel log it is given.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence as Seq
from dataclasses import dataclass

from qtrace.annotate import annotate_stack, decode_access
from qtrace.export.threads import HostThread, ThreadRole, TimelineRecord, assign_threads
from qtrace.report.request_chain import RequestChain, Segment, request_chain
from qtrace.report.sequence import Message, Participant, Sequence
from qtrace.trace import Access, Dma, Irq, Trace
from qtrace.trace.kernel import KernelEvent, KernelLog
from qtrace.trace.kernel_join import KernelAccess, KernelJoin
from qtrace.trace.layout import flatview_at
from qtrace.trace.schema import Async

__all__ = [
    "DMA_API_LAYERS",
    "DMA_WRAPPERS",
    "FlowStep",
    "RequestFlow",
    "dma_purpose",
    "layered_frames",
    "request_flow",
]

KERNEL = "K"
DMA_API_LAYERS = frozenset({"address-space", "dma", "memory-api"})
"""Layers of the functions a DMA goes through, not what it is for (``layers.toml``)."""
DMA_WRAPPERS = ("*_phys_cached",)
"""Accessor wrappers outside those layers (virtio's ``virtio_lduw_phys_cached``, ...)."""
DELIVERY_EVENTS = {"MSI": "kvm_msi_set_irq", "INTx": "kvm_set_irq"}
"""The kernel event that shows KVM taking an interrupt of each kind (by the line's prefix)."""
RUN_WORDS = {"fd-handler": "fd handler", "bh": "bottom half", "timer": "timer"}
SETUP_WORDS = {"schedule": "schedules bottom half", "arm": "arms timer"}
MAX_ADDRESSES = 3


@dataclass(frozen=True)
class FlowStep:
    """One message: from lane ``src`` to ``dst``, its ``text``, the record's ``seq`` and
    ``t`` (``seqs`` when it sums up several), or a kernel event's ``t`` (``kernel``).
    ``inferred``: the trace does not record it (the text says why it is drawn)."""

    src: str
    dst: str
    text: str
    seqs: tuple[int, ...] = ()
    t: float | None = None
    kernel: bool = False
    inferred: bool = False
    reply: bool = False
    event: str = ""  # a kernel step's event as kernel.jsonl has it ("kvm_mmio: mmio write ...")
    comm: str = ""  # and the thread it fired on

    @property
    def label(self) -> str:
        where = ", ".join(map(str, self.seqs))
        at = f"{self.t:.6f} s" if self.t is not None else ""
        if self.kernel:
            evidence = f"kernel.jsonl at {at}" if at else "kernel.jsonl"
        elif where:
            evidence = f"seq {where}" + (f" at {at}" if at else "")
        else:
            evidence = ""
        prefix = "(inferred) " if self.inferred else ""
        return f"{prefix}{self.text}" + (f" ({evidence})" if evidence else "")


@dataclass(frozen=True)
class RequestFlow:
    """The diagram's lanes and steps, and the chain it was drawn from. ``kernel``: where the
    kernel's lane comes from (``recorded``: kernel.jsonl; ``absent``: a KVM capture without
    it, so its steps are inferred; ``none``: TCG, no lane)."""

    lanes: tuple[Participant, ...]
    steps: tuple[FlowStep, ...]
    chain: RequestChain
    kernel: str

    @property
    def inferred(self) -> tuple[FlowStep, ...]:
        return tuple(s for s in self.steps if s.inferred)

    @property
    def first_seq(self) -> int:
        return self.chain.segments[0].start.seq

    def sequence(self) -> Sequence:
        """The diagram for :func:`~qtrace.report.sequence.to_mermaid` / ``to_svg``."""
        return Sequence(
            self.lanes,
            tuple(Message(s.src, s.dst, s.label, s.reply or s.inferred) for s in self.steps),
        )


def layered_frames(trace: Trace, record: TimelineRecord) -> list[tuple[str, str]]:
    """(function, layer id) of the record's stack, innermost first."""
    stack = trace.stacks.get(record.stack) if record.stack is not None else None
    if stack is None:
        return []
    h = trace.header
    annotated = annotate_stack(stack, qemu_version=h.qemu_version, accel=h.accel)
    return [(f.func, f.layer.id) for f in annotated.frames]


def dma_purpose(trace: Trace, dma: Dma) -> str:
    """What a DMA was for: the first function of its stack that is not the DMA API itself
    (``vring_split_desc_read``, ``nvme_addr_read``, ``txdesc_writeback``, ...)."""
    for func, layer in layered_frames(trace, dma):
        if layer in DMA_API_LAYERS or any(fnmatch.fnmatch(func, p) for p in DMA_WRAPPERS):
            continue
        return func
    return dma.api or "?"


def _lane(thread: HostThread) -> str:
    return {
        ThreadRole.VCPU: "V",
        ThreadRole.MAIN_LOOP: "M",
        ThreadRole.IOTHREAD: "I",
        ThreadRole.WORKER: "W",
    }.get(thread.role, "T") + str(thread.index)


class _Builder:
    def __init__(self, trace: Trace, log: KernelLog | None, join: KernelJoin | None) -> None:
        self.trace = trace
        self.kvm = trace.header.accel == "kvm"
        self.log = log if log is not None and log.recorded else None
        self.join = join if self.log is not None else None
        self.origin = next(
            (v.monotonic_origin_s for v in trace.vcpus if v.monotonic_origin_s is not None),
            None,
        )
        self.steps: list[FlowStep] = []
        self.threads: dict[str, HostThread] = {}

    # -- helpers -------------------------------------------------------------------------
    def kernel_t(self, ts: float) -> float | None:
        return ts - self.origin if self.origin is not None else None

    def frames(self, record: TimelineRecord) -> list[tuple[str, str]]:
        return layered_frames(self.trace, record)

    def device_path(self, segment: Segment) -> str:
        """From the segment's entry down to the outermost device-model frame on its records'
        stacks (``virtio_queue_notify_vq → virtio_blk_handle_output``); "" when the entry is
        the device's own code."""
        for record in segment.records:
            frames = self.frames(record)
            names = [f for f, _ in frames]
            if segment.entry not in names:
                continue
            inner = frames[: names.index(segment.entry)]
            device = [i for i, (_, layer) in enumerate(inner) if layer == "device"]
            if device:
                return " → ".join(f for f, _ in reversed(inner[device[-1] :]))
        return ""

    def caller(self, record: TimelineRecord, func: str) -> str | None:
        names = [f for f, _ in self.frames(record)]
        if func in names and names.index(func) + 1 < len(names):
            return names[names.index(func) + 1]
        return None

    def purpose(self, dma: Dma) -> str:
        return dma_purpose(self.trace, dma)

    def register(self, access: Access) -> str:
        decoded = decode_access(self.trace.header.device, access, self.trace.header.regions)
        where = f"{access.region}+{access.offset:#x}" if access.region else f"{access.offset:#x}"
        return decoded.name if decoded.known and decoded.name != where else where

    def kernel_events(self, name: str, after_t: float, before_t: float | None) -> list[KernelEvent]:
        if self.log is None or self.origin is None:
            return []
        start = self.origin + after_t
        end = self.origin + before_t if before_t is not None else None
        return [
            e
            for e in self.log.events
            if e.event == name and e.ts >= start and (end is None or e.ts < end)
        ]

    def add(self, step: FlowStep) -> None:
        self.steps.append(step)

    # -- the kick --------------------------------------------------------------------------
    def access_kick(self, segment: Segment, lane: str) -> None:
        access = segment.start
        assert isinstance(access, Access)
        verb = "writes" if access.op == "write" else "reads"
        what = f"guest {verb} {self.register(access)} ({access.size} B, {access.value:#x})"
        if not self.kvm:
            self.add(FlowStep(lane, lane, f"{what}: a softmmu store, no exit (TCG)"))
        else:
            exit_record = next((e for e in self.trace.exits if e.seq == access.exit_seq), None)
            joined = self.join.by_seq().get(exit_record.seq) if self.join and exit_record else None
            kexit = joined.kernel if joined is not None and joined.joined else None
            seen = kexit.access if kexit is not None else None
            if seen is not None:
                text = self.text_of(seen.tid, seen.ts) or f"{seen.op} at {seen.addr:#x}"
                self.add(FlowStep(lane, KERNEL, f"{what}: {text}", t=self.kernel_t(seen.ts),
                                  kernel=True, event=text))  # fmt: skip
            else:
                self.add(FlowStep(lane, KERNEL, what))
            if exit_record is not None:
                self.add(
                    FlowStep(
                        KERNEL,
                        lane,
                        f"KVM_RUN returns {exit_record.reason}",
                        (exit_record.seq,),
                        exit_record.t,
                        reply=True,
                    )
                )
        path = self.device_path(segment)
        via = "kvm_cpu_exec → " if self.kvm else ""
        text = f"{via}{access.handler}" + (f" → {path}" if path else "")
        self.add(FlowStep(lane, lane, text, (access.seq,), access.t))

    def text_of(self, tid: int, ts: float) -> str | None:
        if self.log is None:
            return None
        for event in self.log.events:
            if event.tid == tid and event.ts == ts:
                return f"{event.event}: {event.text}"
        return None

    def ioeventfd_kick(self, segment: Segment, lane: str, vcpu: str) -> None:
        run = segment.start
        assert isinstance(run, Async)
        notifier = next(
            (
                a.notifier
                for a in reversed(self.trace.asyncs)
                if a.kind == "fd-handler" and a.op == "register" and a.seq < run.seq
                and a.callback == run.callback
            ),
            None,
        )  # fmt: skip
        adds = [
            a
            for a in self.trace.asyncs
            if a.kind == "ioeventfd" and a.op == "add" and a.seq < run.seq
            and (notifier is None or a.notifier == notifier)
        ]  # fmt: skip
        placed = {self._absolute(a): a for a in adds}
        kick = self._kernel_kick(run, {k for k in placed if k is not None})
        fd = placed.get((kick.space, kick.addr)) if kick is not None else None
        fd = fd or (adds[0] if adds else None)
        where = f"{fd.region}+{fd.offset or 0:#x}" if fd is not None else "its notify address"
        if kick is not None:
            text = self.text_of(kick.tid, kick.ts) or "kvm_mmio write"
            self.add(
                FlowStep(
                    vcpu,
                    KERNEL,
                    f"guest writes {where}: {text}, no exit",
                    t=self.kernel_t(kick.ts),
                    kernel=True,
                    event=text,
                )
            )
        else:
            why = (
                "kernel.jsonl has no write there"
                if self.log is not None
                else "no kernel events"
                if self.kvm
                else "TCG"
            )
            self.add(
                FlowStep(
                    vcpu,
                    KERNEL if self.kvm else lane,
                    f"guest writes {where}: no access reached QEMU's handler while the "
                    f"ioeventfd was in effect ({why})",
                    (fd.seq,) if fd is not None else (),
                    fd.t if fd is not None else None,
                    inferred=True,
                )
            )
        src = KERNEL if self.kvm else vcpu
        added = f"added at seq {fd.seq}" if fd is not None else "registered"
        self.add(
            FlowStep(
                src,
                lane,
                f"{'KVM' if self.kvm else 'the memory core'} signals the ioeventfd's eventfd "
                f"({added}, notifier {notifier or '?'})",
                inferred=True,
            )
        )

    def _absolute(self, fd: Async) -> tuple[str, int] | None:
        for space, view in (("mmio", "memory"), ("pio", "io")):
            flat = flatview_at(self.trace.layout, view)
            for r in flat.ranges if flat is not None else ():
                if r.region == fd.region:
                    return (space, r.start - r.offset_in_region + (fd.offset or 0))
        return None

    def _kernel_kick(self, run: Async, addresses: set[tuple[str, int]]) -> KernelAccess | None:
        if self.join is None or self.origin is None or run.t is None:
            return None
        earlier = [
            a.t
            for a in self.trace.asyncs
            if a.op == "run" and a.callback == run.callback and a.seq < run.seq and a.t
        ]
        start = self.origin + (max(earlier) if earlier else 0.0)
        end = self.origin + run.t
        found = [
            k.access
            for k in self.join.kernel_only
            if k.handled_by == "ioeventfd"
            and start <= k.access.ts < end
            and (not addresses or (k.access.space, k.access.addr) in addresses)
        ]
        return found[-1] if found else None

    # -- segments --------------------------------------------------------------------------
    def enter(self, segment: Segment, before: Segment | None, lane: str) -> None:
        """The message that starts ``segment`` on ``lane``."""
        start = segment.start
        prev = _lane(before.thread) if before is not None else lane
        if segment.link == "setup" and segment.setup is not None:
            setup = segment.setup
            word = SETUP_WORDS.get(setup.op, setup.op)
            extra = f", expires at {setup.expire_ns} ns" if setup.expire_ns is not None else ""
            self.add(FlowStep(prev, lane, f"{word} {setup.callback}{extra}", (setup.seq,),
                              setup.t))  # fmt: skip
        if segment.kind == "run" and isinstance(start, Async):
            word = RUN_WORDS.get(start.kind, start.kind)
            caller = self.caller(start, start.callback or "")
            path = self.device_path(segment)
            text = f"{word} {start.callback} runs" + (f" (from {caller})" if caller else "")
            self.add(FlowStep(lane, lane, text + (f" → {path}" if path else ""), (start.seq,),
                              start.t))  # fmt: skip
            return
        what = {
            "coroutine": f"coroutine {segment.entry} runs",
            "thread": f"thread function {segment.entry} runs",
        }.get(segment.kind)
        if what is None:
            return
        if segment.link == "inferred" and before is not None:
            self.add(
                FlowStep(
                    prev,
                    lane,
                    f"the trace does not link {segment.entry} to what started it: "
                    f"the device work before it was {self.summary(before)}",
                    inferred=True,
                )
            )
        path = self.device_path(segment)
        self.add(FlowStep(lane, lane, what + (f" → {path}" if path else ""), (start.seq,),
                          start.t))  # fmt: skip

    def summary(self, segment: Segment) -> str:
        start = segment.start
        if isinstance(start, Access):
            verb = "write to" if start.op == "write" else "read of"
            return f"the guest's {verb} {self.register(start)} (access {start.seq})"
        if isinstance(start, Async):
            return f"{RUN_WORDS.get(start.kind, start.kind)} {start.callback} (seq {start.seq})"
        return f"seq {start.seq}"

    def members(self, segment: Segment, lane: str, after: Segment | None, vcpu: str) -> None:
        # A coroutine's or a thread's first record is one of its own (the access or the run
        # that starts the others was drawn by enter()).
        drawn = isinstance(segment.start, Access) or (
            isinstance(segment.start, Async) and segment.start.op == "run"
        )
        records = [r for r in segment.records if not (drawn and r is segment.start)]
        dmas: dict[tuple[str, str], list[Dma]] = {}
        order: list[tuple[str, str] | TimelineRecord] = []
        for record in records:
            if isinstance(record, Dma):
                key = (record.op, self.purpose(record))
                if key not in dmas:
                    order.append(key)
                dmas.setdefault(key, []).append(record)
            else:
                order.append(record)
        for item in order:
            if isinstance(item, tuple):
                self.add(self.dma_step(lane, item, dmas[item]))
            elif isinstance(item, Irq):
                self.irq(item, lane, vcpu)
            elif isinstance(item, Async):
                if after is not None and after.setup is item:
                    continue  # drawn as the next segment's first arrow
                word = SETUP_WORDS.get(item.op, f"{item.kind} {item.op}")
                self.add(FlowStep(lane, lane, f"{word} {item.callback or ''}".strip(),
                                  (item.seq,), item.t))  # fmt: skip

    def dma_step(self, lane: str, key: tuple[str, str], group: list[Dma]) -> FlowStep:
        op, purpose = key
        sizes = "/".join(dict.fromkeys(str(d.size) for d in group))
        count = f" x{len(group)}" if len(group) > 1 else ""
        distinct = list(dict.fromkeys(f"{d.addr:#x}" for d in group))
        addrs = distinct[:MAX_ADDRESSES]
        more = ", …" if len(distinct) > MAX_ADDRESSES else ""
        mapped = " mapped for the block layer" if all(d.mapped for d in group) else ""
        text = f"DMA {op} {sizes} B{count}{mapped} at {', '.join(addrs)}{more}: {purpose}"
        return FlowStep(lane, lane, text, tuple(d.seq for d in group), group[0].t)

    def irq(self, irq: Irq, lane: str, vcpu: str) -> None:
        kind = next((k for k in DELIVERY_EVENTS if irq.line.startswith(k)), "INTx")
        via = next((f for f, _ in self.frames(irq)), None)
        if kind == "MSI":
            message = f"{irq.line}: address {irq.address or 0:#x} data {irq.data or 0:#x}"
        else:
            message = f"{irq.line} {'raised' if irq.level else 'lowered'}"
        text = message + (f" ({via})" if via else "")
        self.add(FlowStep(lane, KERNEL if self.kvm else vcpu, text, (irq.seq,), irq.t))
        if not self.kvm or irq.t is None:
            return
        later = [i.t for i in self.trace.irqs if i.seq > irq.seq and i.t is not None]
        bound = min(later) if later else None
        taken = self.kernel_events(DELIVERY_EVENTS[kind], irq.t, bound)
        if not taken:
            why = "not in kernel.jsonl" if self.log is not None else "no kernel events"
            self.add(FlowStep(KERNEL, vcpu, f"KVM delivers it to the guest ({why})",
                              inferred=True))  # fmt: skip
            return
        first = taken[0]
        self.add(
            FlowStep(
                KERNEL,
                KERNEL,
                f"{first.event}: {first.text} (on {first.comm})",
                t=self.kernel_t(first.ts),
                kernel=True,
                event=f"{first.event}: {first.text}",
                comm=first.comm,
            )
        )
        after = self.kernel_t(first.ts)
        accepted = (
            self.kernel_events("kvm_apic_accept_irq", after, bound) if after is not None else []
        )
        if accepted:
            event = accepted[0]
            text = f"{event.event}: {event.text}"
            self.add(FlowStep(KERNEL, vcpu, text, t=self.kernel_t(event.ts), kernel=True,
                              event=text, comm=event.comm))  # fmt: skip

    # -- the whole ---------------------------------------------------------------------------
    def build(self, chain: RequestChain) -> RequestFlow:
        segments = chain.segments
        vcpu_thread = next(
            (s.thread for s in segments if s.thread.role is ThreadRole.VCPU),
            None,
        ) or next((t for _, t in assign_threads(self.trace) if t.role is ThreadRole.VCPU), None)
        vcpu = _lane(vcpu_thread) if vcpu_thread is not None else "V0"
        for index, segment in enumerate(segments):
            lane = _lane(segment.thread)
            before = segments[index - 1] if index else None
            after = segments[index + 1] if index + 1 < len(segments) else None
            if index == 0 and segment.kind == "access":
                self.access_kick(segment, lane)
            elif index == 0 and segment.link == "ioeventfd":
                self.ioeventfd_kick(segment, lane, vcpu)
                self.enter(segment, None, lane)
            else:
                self.enter(segment, before, lane)
            self.members(segment, lane, after, vcpu)
        return RequestFlow(
            self.lanes(segments, vcpu_thread), tuple(self.steps), chain, self.kernel_source()
        )

    def kernel_source(self) -> str:
        if not self.kvm:
            return "none"
        return "recorded" if self.log is not None else "absent"

    def lanes(self, segments: Seq[Segment], vcpu: HostThread | None) -> tuple[Participant, ...]:
        threads = {s.thread.name: s.thread for s in segments}
        if vcpu is not None:
            threads.setdefault(vcpu.name, vcpu)
        ordered = sorted(threads.values(), key=lambda t: t.sort_index)
        used = {s.src for s in self.steps} | {s.dst for s in self.steps}
        out: list[Participant] = []
        vcpus = [t for t in ordered if t.role is ThreadRole.VCPU]
        others = [t for t in ordered if t.role is not ThreadRole.VCPU]
        if not vcpus and "V0" in used:
            out.append(Participant("V0", "vCPU thread"))
        out += [Participant(_lane(t), f"{t.name} (vCPU thread)") for t in vcpus]
        if self.kvm:
            source = "kernel.jsonl" if self.log is not None else "not recorded"
            out.append(Participant(KERNEL, f"KVM, host kernel ({source})"))
        out += [Participant(_lane(t), t.name) for t in others]
        return tuple(p for p in out if p.id in used)


def request_flow(
    trace: Trace, log: KernelLog | None = None, join: KernelJoin | None = None
) -> RequestFlow | None:
    """The diagram of the first request :func:`request_chain` finds; ``None`` when there is
    none (no interrupt linked back to a kick, or a trace without threads)."""
    chain = request_chain(trace)
    if chain is None:
        return None
    return _Builder(trace, log, join).build(chain)

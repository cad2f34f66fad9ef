"""One access end to end, as a timeline: from the guest instruction that made it, through the
host kernel's events and QEMU's exit handling and handler, back to the guest (the report's
"One access, end to end" section; ``templates/timeline.j2`` says each step).

The steps come from three records of the capture and nothing else:

- **the guest end**: the access's guest PC (:func:`qtrace.guests.symbols.access_places`),
  named with the guest's own symbols;
- **the kernel's events** (``kernel.jsonl``): those of the access's kernel exit as
  :func:`qtrace.trace.kernel_join.join_kernel` paired them (the hardware exit where one fired,
  a page fault at the address, the ``kvm_mmio``/``kvm_pio`` event, ``kvm_userspace_exit``),
  then on re-entry the completion of a read with QEMU's value, or the vCPU thread's next
  event inside ``KVM_RUN``;
- **QEMU's records** (``trace.jsonl``): the exit record (the collector's breakpoint in
  ``kvm_cpu_exec``) and the access (a read recorded at its handler's return, a write at its
  entry; the fast collector's in the generic accessor around the handler, its exit at a fast
  tracepoint just before ``kvm_cpu_exec``'s switch, and it records no kernel event:
  ``recorded`` says so, :mod:`qtrace.report.recorded`).

Times are microseconds from the kernel's first event of the access, on CLOCK_MONOTONIC (the
kernel events' clock; a trace time ``t`` is moved onto it with the trace's ``kvm_vcpu``
records). Where a part is missing the timeline says why (``kernel``) instead of showing
an empty step: no ``kernel.jsonl`` (older captures), tracefs unusable, an exit not joined,
TCG; and ``hw_exits`` says whether ``kvm_exit`` fired at all on the host.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from qtrace.guests.symbols import GuestPlace
from qtrace.report.recorded import Recorded, recorded
from qtrace.trace import Access, Exit, Trace
from qtrace.trace.kernel import KernelEvent, KernelLog
from qtrace.trace.kernel_join import KernelExit, KernelJoin

__all__ = [
    "RUN_EVENTS",
    "GuestFunctions",
    "Step",
    "Timeline",
    "build_timeline",
    "guest_functions",
]

RUN_EVENTS = frozenset(
    {
        "kvm_entry",
        "kvm_exit",
        "kvm_mmio",
        "kvm_pio",
        "kvm_fast_mmio",
        "kvm_page_fault",
        "kvm_userspace_exit",
        "kvm_inj_virq",
    }
)
"""Events that fire only inside ``KVM_RUN`` on the vCPU's thread: one of them after an exit
shows QEMU had re-entered the guest (``kvm_set_irq`` and ``kvm_msi_set_irq`` do not: QEMU's
own ioctls raise them from the same thread while it handles the exit)."""

PAGE_BYTES = 0x1000

StepKind = Literal[
    "guest",
    "hw-exit",
    "page-fault",
    "kernel-access",
    "userspace-exit",
    "qemu-exit",
    "handler",
    "completion",
    "entry",
    "resumed",
    "tcg-continues",
]
KernelPart = Literal["joined", "not-joined", "unavailable", "absent", "tcg"]


@dataclass(frozen=True)
class Step:
    """One moment of the timeline. ``at_us``: microseconds from the first kernel event of the
    access (``None``: the record has no time, e.g. the guest instruction, which ran before);
    ``text``: the kernel's own text of a tracepoint, the guest place, or QEMU's function;
    ``event``: the tracepoint; ``seq``: the trace record; ``value``: what was read or
    written; ``agrees``: a completion's value is the one QEMU's handler returned."""

    kind: StepKind
    at_us: int | None = None
    thread: str | None = None
    text: str = ""
    event: str = ""
    seq: int | None = None
    value: int | None = None
    size: int = 0
    op: str = ""
    after_instruction: bool = False
    agrees: bool | None = None


@dataclass(frozen=True)
class GuestFunctions:
    """Which guest function made each of the capture's accesses: ``named`` (function, count),
    ``unnamed`` accesses whose PC no symbol holds, ``without_pc`` those with no guest PC (a
    coalesced write under KVM: no exit, so no registers; older traces), ``source`` the
    symbol file (``None``: the capture has none)."""

    named: tuple[tuple[str, int], ...]
    unnamed: int
    without_pc: int
    coalesced_without_pc: int
    source: str | None

    @property
    def total(self) -> int:
        return sum(n for _, n in self.named) + self.unnamed + self.without_pc


@dataclass(frozen=True)
class Timeline:
    """The section's model: the steps in time order and what the notes under them say."""

    accel: str
    access_seq: int
    steps: tuple[Step, ...]
    kernel: KernelPart
    why: str | None = None
    hw_exits: Literal["recorded", "not-fired", "not-enabled"] | None = None
    kvm_modules: tuple[str, ...] = ()
    started_t: float | None = None
    stopped_in_gdb: bool = False
    guest: GuestFunctions | None = None
    # What the capture recorded: a part its collector did not record is said to be so.
    recorded: Recorded = field(default_factory=Recorded)


def guest_functions(
    trace: Trace, places: dict[int, GuestPlace], source: str | None
) -> GuestFunctions:
    """Count the capture's accesses by the guest function that made them."""
    named: Counter[str] = Counter()
    unnamed = without = coalesced = 0
    for access in trace.accesses:
        place = places.get(access.seq)
        if place is None:
            without += 1
            coalesced += bool(access.coalesced)
        elif place.function is None:
            unnamed += 1
        else:
            named[place.function] += 1
    return GuestFunctions(
        tuple(sorted(named.items(), key=lambda kv: (-kv[1], kv[0]))),
        unnamed,
        without,
        coalesced,
        source,
    )


def _guest_step(access: Access, places: dict[int, GuestPlace]) -> Step | None:
    place = places.get(access.seq)
    if place is None:
        return None
    return Step(
        "guest",
        text=str(place.symbol or f"{place.pc:#x}"),
        value=place.pc,
        op=access.op,
        after_instruction=place.after_instruction,
    )


def _handler_step(access: Access, at_us: int | None) -> Step:
    return Step(
        "handler",
        at_us,
        access.thread,
        text=access.handler or "the device's handler",
        seq=access.seq,
        value=access.value,
        size=access.size,
        op=access.op,
    )


def build_timeline(
    trace: Trace,
    access: Access,
    exit_record: Exit | None,
    places: dict[int, GuestPlace],
    log: KernelLog | None,
    join: KernelJoin | None,
    symbols_source: str | None = None,
) -> Timeline:
    """The timeline of ``access`` (see the module docstring)."""
    timeline = _timeline(trace, access, exit_record, places, log, join, symbols_source)
    return replace(timeline, recorded=recorded(trace.header))


def _timeline(
    trace: Trace,
    access: Access,
    exit_record: Exit | None,
    places: dict[int, GuestPlace],
    log: KernelLog | None,
    join: KernelJoin | None,
    symbols_source: str | None,
) -> Timeline:
    accel = trace.header.accel
    guest = guest_functions(trace, places, symbols_source)
    first = _guest_step(access, places)
    head = (first,) if first is not None else ()
    if accel != "kvm":
        steps = (*head, _handler_step(access, 0), Step("tcg-continues"))
        return Timeline(accel, access.seq, steps, "tcg", started_t=access.t, guest=guest)
    modules = log.header.kvm_modules if log is not None else ()
    if log is None or not log.recorded:
        why = log.header.reason if log is not None else None
        part: KernelPart = "absent" if log is None else "unavailable"
        steps = (*head, *_qemu_steps(access, exit_record, None, None))
        return Timeline(accel, access.seq, steps, part, why, kvm_modules=modules, guest=guest)
    hw = _hw_exits(log)
    joined = join.by_seq().get(exit_record.seq) if join and exit_record else None
    if joined is None or not joined.joined or joined.kernel is None:
        why = (
            joined.why_not
            if joined is not None
            else "the access came with no exit of its own (a write KVM buffered)"
            if access.coalesced
            else "no exit record for this access"
        )
        steps = (*head, *_qemu_steps(access, exit_record, None, None))
        return Timeline(accel, access.seq, steps, "not-joined", why, hw, modules, guest=guest)
    kexit = joined.kernel
    before = _before_exit(log, kexit)
    zero = before[0].ts if before else kexit.ts
    origin = next(
        (v.monotonic_origin_s for v in trace.vcpus if v.monotonic_origin_s is not None), None
    )

    def us(ts: float) -> int:
        return round((ts - zero) * 1e6)

    def at_t(t: float | None) -> int | None:
        return us(origin + t) if origin is not None and t is not None else None

    kernel_before = [_kernel_step(e, us(e.ts), kexit) for e in before]
    exit_step = Step(
        "userspace-exit",
        us(kexit.ts),
        kexit.comm,
        text=_text(log, kexit.ts, kexit.tid, "kvm_userspace_exit") or kexit.reason,
        event="kvm_userspace_exit",
    )
    qemu = _qemu_steps(access, exit_record, at_t(exit_record.t if exit_record else None), at_t)
    after = _after_exit(log, kexit, access, us)
    steps = (*head, *kernel_before, exit_step, *qemu, *after)
    return Timeline(
        accel,
        access.seq,
        steps,
        "joined",
        None,
        hw,
        modules,
        started_t=(zero - origin) if origin is not None else None,
        stopped_in_gdb=True,
        guest=guest,
    )


def _qemu_steps(
    access: Access,
    exit_record: Exit | None,
    exit_us: int | None,
    at_t: Callable[[float | None], int | None] | None,
) -> tuple[Step, ...]:
    steps = []
    if exit_record is not None:
        steps.append(
            Step(
                "qemu-exit",
                exit_us,
                exit_record.thread,
                text=exit_record.reason,
                seq=exit_record.seq,
            )
        )
    handler_us = at_t(access.t) if at_t is not None else None
    steps.append(_handler_step(access, handler_us))
    return tuple(steps)


def _hw_exits(log: KernelLog) -> Literal["recorded", "not-fired", "not-enabled"]:
    if "kvm:kvm_exit" not in log.header.events:
        return "not-enabled"
    return "recorded" if any(e.event == "kvm_exit" for e in log.events) else "not-fired"


def _thread_events(log: KernelLog, tid: int) -> list[KernelEvent]:
    return [e for e in log.events if e.tid == tid]


def _before_exit(log: KernelLog, kexit: KernelExit) -> list[KernelEvent]:
    """The kernel's events of this exit before ``kvm_userspace_exit``: since the thread's
    previous exit, its hardware exit, the page faults on the access's page and the access."""
    events = _thread_events(log, kexit.tid)
    previous = max(
        (e.ts for e in events if e.event == "kvm_userspace_exit" and e.ts < kexit.ts),
        default=float("-inf"),
    )
    page = kexit.access.addr // PAGE_BYTES if kexit.access is not None else None
    out = []
    for event in events:
        if not previous < event.ts <= kexit.ts or event.event == "kvm_userspace_exit":
            continue
        if event.event == "kvm_exit" and kexit.hw_exit is not None and event == kexit.hw_exit:
            out.append(event)
        elif event.event == "kvm_page_fault" and page is not None:
            address = event.fields.get("address")
            if isinstance(address, int) and address // PAGE_BYTES == page:
                out.append(event)
        elif kexit.access is not None and event.ts == kexit.access.ts and _is_access(event):
            out.append(event)
    return out


def _is_access(event: KernelEvent) -> bool:
    return event.event in ("kvm_mmio", "kvm_pio", "kvm_fast_mmio")


def _kernel_step(event: KernelEvent, at_us: int, kexit: KernelExit) -> Step:
    kind: StepKind = (
        "hw-exit"
        if event.event == "kvm_exit"
        else "page-fault"
        if event.event == "kvm_page_fault"
        else "kernel-access"
    )
    op = kexit.access.op if kind == "kernel-access" and kexit.access is not None else ""
    return Step(kind, at_us, event.comm, text=event.text, event=event.event, op=op)


def _text(log: KernelLog, ts: float, tid: int, name: str) -> str:
    return next((e.text for e in log.events if e.tid == tid and e.ts == ts and e.event == name), "")


def _after_exit(
    log: KernelLog, kexit: KernelExit, access: Access, us: Callable[[float], int]
) -> tuple[Step, ...]:
    """Re-entry: the read's completion with QEMU's value, ``kvm_entry`` where it fires, else
    the thread's next event inside KVM_RUN."""
    later = [e for e in _thread_events(log, kexit.tid) if e.ts >= kexit.ts]
    later = [e for e in later if not (e.ts == kexit.ts and e.event == "kvm_userspace_exit")]
    following = next((e.ts for e in later if e.event == "kvm_userspace_exit"), float("inf"))
    steps: list[Step] = []
    done = kexit.completion
    if done is not None:
        text = next((e.text for e in later if e.ts == done.ts and e.event == done.event), done.op)
        agrees = done.value == access.value if access.op == "read" else None
        steps.append(
            Step(
                "completion",
                us(done.ts),
                kexit.comm,
                text=text,
                event=done.event,
                value=done.value,
                size=done.size,
                agrees=agrees,
            )
        )
    entry = next((e for e in later if e.event == "kvm_entry" and e.ts < following), None)
    if entry is not None:
        steps.append(Step("entry", us(entry.ts), entry.comm, text=entry.text, event=entry.event))
    elif done is None:
        resumed = next((e for e in later if e.event in RUN_EVENTS and e.ts < following), None)
        if resumed is not None:
            steps.append(
                Step(
                    "resumed", us(resumed.ts), resumed.comm, text=resumed.text, event=resumed.event
                )
            )
    return tuple(sorted(steps, key=lambda s: s.at_us if s.at_us is not None else 0))

"""Which host thread of QEMU each trace record happened on: one timeline track per thread.

A record is placed by the first rule that knows (:data:`_RULES`, in order):

1. its ``thread`` field, QEMU's own name for the thread (``CPU 0/KVM``, ``IO iothread0``,
   ``worker``, ``main`` for the first thread, which runs the main loop; captures run QEMU
   with ``-name debug-threads=on``), in traces that carry it;
2. its ``vcpu`` field: the vCPU's thread, named as QEMU names it, ``CPU <n>/KVM`` or
   ``CPU <n>/TCG`` after the header's accelerator;
3. its stack: the thread's entry function, innermost match first (``kvm_vcpu_thread_fn`` and
   the TCG ones: a vCPU thread, whose index is the one of the nearest earlier record that has
   one; ``qemu_main_loop``: the main loop; ``iothread_run``: an iothread; ...);
4. else one ``unknown thread`` track.

The same thread reached by different rules is one track: tracks are keyed by role and index
(a vCPU's index, or the order in which other threads of a role first appear).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from qtrace.trace import Access, Async, Dma, Exit, Irq, Trace

__all__ = ["SETUP_OPS", "ThreadRole", "HostThread", "TimelineRecord", "assign_threads"]

TimelineRecord = Exit | Access | Irq | Dma | Async
"""The records that happen at a moment on some thread (the others describe the capture)."""

SETUP_OPS: dict[str, str] = {"timer": "arm", "bh": "schedule"}
"""Async work that is set up on one thread and run, usually on another: kind -> the setup op
(a ``run`` of that kind follows the latest setup of the same callback)."""


class ThreadRole(StrEnum):
    """What a QEMU host thread does."""

    VCPU = "vcpu"
    MAIN_LOOP = "main-loop"
    IOTHREAD = "iothread"
    WORKER = "worker"
    OTHER = "other"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class HostThread:
    """One host thread: a track. ``tid`` is a stable id within the export (the trace holds no
    OS thread ids), ``sort_index`` orders tracks (vCPUs first, then the main loop, ...)."""

    role: ThreadRole
    index: int
    name: str
    tid: int
    sort_index: int


# Entry functions of QEMU's threads, by the role they give (QEMU 7.2 to 10.2).
_ENTRY_ROLES: dict[str, ThreadRole] = {
    "kvm_vcpu_thread_fn": ThreadRole.VCPU,
    "mttcg_cpu_thread_fn": ThreadRole.VCPU,
    "rr_cpu_thread_fn": ThreadRole.VCPU,
    "qemu_main_loop": ThreadRole.MAIN_LOOP,
    "iothread_run": ThreadRole.IOTHREAD,
    "worker_thread": ThreadRole.WORKER,
    "main": ThreadRole.MAIN_LOOP,
}

# tid and sort_index bases per role (a role's n-th thread adds n).
_BASES: dict[ThreadRole, tuple[int, int]] = {
    ThreadRole.MAIN_LOOP: (1, 1000),
    ThreadRole.VCPU: (100, 0),
    ThreadRole.IOTHREAD: (1100, 2000),
    ThreadRole.WORKER: (2100, 3000),
    ThreadRole.OTHER: (3100, 4000),
    ThreadRole.UNKNOWN: (9000, 9000),
}

_VCPU_NAME = re.compile(r"^CPU (?P<index>\d+)/\S+$")


@dataclass
class _Context:
    trace: Trace
    last_vcpu: int
    names: dict[tuple[ThreadRole, str], int] = field(default_factory=dict)

    def thread(self, role: ThreadRole, index: int | None = None, name: str = "") -> HostThread:
        """The track of ``role``'s thread ``index`` (or the one called ``name``)."""
        if index is None:
            index = self.names.setdefault((role, name), sum(r is role for r, _ in self.names))
        accel = self.trace.header.accel.upper()
        default = {
            ThreadRole.VCPU: f"CPU {index}/{accel}",
            ThreadRole.MAIN_LOOP: "main loop",
            ThreadRole.IOTHREAD: f"iothread {index}",
            ThreadRole.WORKER: "worker",
            ThreadRole.OTHER: f"thread {index}",
            ThreadRole.UNKNOWN: "unknown thread",
        }[role]
        tid, sort_index = _BASES[role]
        shown = name if name and role not in (ThreadRole.MAIN_LOOP, ThreadRole.VCPU) else default
        return HostThread(role, index, shown, tid + index, sort_index + index)


def _by_thread_field(record: TimelineRecord, ctx: _Context) -> HostThread | None:
    name = record.thread
    if not name:
        return None
    vcpu = _VCPU_NAME.match(name)
    if vcpu:
        return ctx.thread(ThreadRole.VCPU, int(vcpu["index"]))
    if name == "main":
        return ctx.thread(ThreadRole.MAIN_LOOP, 0)
    if name.startswith("IO "):
        return ctx.thread(ThreadRole.IOTHREAD, name=name)
    if name.startswith("worker"):
        return ctx.thread(ThreadRole.WORKER, name=name)
    return ctx.thread(ThreadRole.OTHER, name=name)


def _by_vcpu_field(record: TimelineRecord, ctx: _Context) -> HostThread | None:
    vcpu = record.vcpu if isinstance(record, (Exit, Access)) else None
    return None if vcpu is None else ctx.thread(ThreadRole.VCPU, vcpu)


def _by_stack(record: TimelineRecord, ctx: _Context) -> HostThread | None:
    stack = ctx.trace.stacks.get(record.stack) if record.stack is not None else None
    for frame in stack.frames if stack is not None else ():  # innermost first
        role = _ENTRY_ROLES.get(frame.func)
        if role is ThreadRole.VCPU:
            return ctx.thread(role, ctx.last_vcpu)
        if role is not None:  # one track per role: a stack cannot tell two iothreads apart
            return ctx.thread(role, 0)
    return None


_RULES: tuple[Callable[[TimelineRecord, _Context], HostThread | None], ...] = (
    _by_thread_field,
    _by_vcpu_field,
    _by_stack,
)


def assign_threads(trace: Trace) -> list[tuple[TimelineRecord, HostThread]]:
    """Every timeline record of ``trace`` in trace order, with the host thread it ran on."""
    records = [r for r in trace.records if isinstance(r, (Exit, Access, Irq, Dma, Async))]
    first_vcpu = next(
        (r.vcpu for r in records if isinstance(r, (Exit, Access)) and r.vcpu is not None), 0
    )
    ctx = _Context(trace, first_vcpu)
    out: list[tuple[TimelineRecord, HostThread]] = []
    for record in records:
        found = (rule(record, ctx) for rule in _RULES)
        thread = next((t for t in found if t is not None), None) or ctx.thread(
            ThreadRole.UNKNOWN, 0
        )
        if thread.role is ThreadRole.VCPU:
            ctx.last_vcpu = thread.index
        out.append((record, thread))
    return out

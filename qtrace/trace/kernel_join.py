"""The kernel's side of each exit: ``kernel.jsonl`` joined to ``trace.jsonl``.

The trace (written inside gdb) and the kernel's tracepoints (written by the host) are two
files; this is the one documented way to put them together (TRACE_FORMAT.md, "Kernel
events"). Neither file is rewritten.

1. **The kernel's exits.** Per thread, in time order, every ``kvm_userspace_exit`` (KVM_RUN
   returning to QEMU) is paired with the access that caused it: the ``kvm_mmio`` write or
   ``unsatisfied-read``, or ``kvm_pio`` write, seen on that thread since its previous exit;
   for a read, the ``kvm_mmio read`` / ``kvm_pio read`` after it completes the access with
   QEMU's value when the vCPU re-enters (a port read that exits has no event before the
   exit, only that completion). ``kvm_exit`` (the hardware exit reason, on VMX/SVM hosts)
   seen before the access is kept with it.
2. **Exit records to kernel exits.** With the trace's ``kvm_vcpu`` records (they give
   CLOCK_MONOTONIC at the trace's ``t`` = 0, the kernel events' clock), an exit record at
   ``t`` belongs to the last kernel exit of its vCPU's thread (``CPU <n>/KVM``) before that
   moment: the vCPU is stopped in gdb from the kernel's exit until QEMU runs it again.
   Without them (older traces) the exits are matched in order, by content. Either way a
   pair counts as joined only when port or address, size, direction and written value agree
   (and a read's completed value agrees with the access QEMU's handler returned).
3. **Kernel-only accesses.** Every MMIO/port event from the arming on that belongs to no
   exit was completed by KVM itself; each is classified by what KVM has at that address
   (:data:`IN_KERNEL_DEVICES`, the trace's ioeventfds and coalescing zones).

Pure: reads nothing but the two parsed files.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from qtrace.trace.codec import Trace
from qtrace.trace.kernel import KernelEvent, KernelLog
from qtrace.trace.layout import IoEventFd, flatview_at
from qtrace.trace.schema import Access, Exit

__all__ = [
    "IN_KERNEL_DEVICES",
    "KernelAccess",
    "KernelExit",
    "KernelOnly",
    "ExitJoin",
    "KernelJoin",
    "kernel_exits",
    "join_kernel",
    "exit_key",
]

Space = Literal["mmio", "pio"]

IN_KERNEL_DEVICES: tuple[tuple[Space, int, int, str], ...] = (
    ("mmio", 0xFEE00000, 0x1000, "lapic"),  # the local APIC page (arch/x86/kvm/lapic.c)
    ("mmio", 0xFEC00000, 0x100, "ioapic"),  # KVM's IOAPIC (arch/x86/kvm/ioapic.h)
    ("pio", 0x40, 4, "pit"),  # i8254 counters and control (arch/x86/kvm/i8254.c)
    ("pio", 0x61, 1, "pit-speaker"),
    ("pio", 0x20, 2, "pic"),  # i8259 master and slave (arch/x86/kvm/i8259.c)
    ("pio", 0xA0, 2, "pic"),
    ("pio", 0x4D0, 2, "pic-elcr"),
)
"""Where KVM's own device models answer (space, base, size, name), when QEMU runs with the
in-kernel irqchip (its default under KVM): accesses there never reach QEMU."""

_EXIT_SPACE: dict[str, Space] = {"KVM_EXIT_MMIO": "mmio", "KVM_EXIT_IO": "pio"}
"""The access space each exit reason belongs to."""
# How far (seconds) a record's time may lie before its kernel exit: both clocks are
# rounded to the microsecond.
CLOCK_SLACK_S = 5e-6
# Without clocks: how many kernel exits ahead an exit record's match is looked for.
ORDER_WINDOW = 256


@dataclass(frozen=True)
class KernelAccess:
    """An MMIO or port access as the kernel's tracepoint saw it. ``op`` is ``read``,
    ``write`` or ``unsatisfied-read`` (KVM could not complete the read and exits to QEMU)."""

    ts: float
    tid: int
    space: Space
    op: str
    addr: int
    size: int
    value: int | None
    count: int = 1
    event: str = ""

    @staticmethod
    def of(event: KernelEvent) -> KernelAccess | None:
        f = event.fields
        if event.event == "kvm_mmio" and isinstance(f.get("gpa"), int):
            op = str(f.get("op", ""))
            value = f.get("val") if op != "unsatisfied-read" else None
            return KernelAccess(
                event.ts,
                event.tid,
                "mmio",
                op,
                int(f["gpa"]),
                int(f.get("len", 0)),
                int(value) if isinstance(value, int) else None,
                event=event.event,
            )
        if event.event == "kvm_pio" and isinstance(f.get("port"), int):
            value = f.get("val")
            return KernelAccess(
                event.ts,
                event.tid,
                "pio",
                str(f.get("op", "")),
                int(f["port"]),
                int(f.get("size", 0)),
                int(value) if isinstance(value, int) else None,
                int(f.get("count", 1)),
                event=event.event,
            )
        if event.event == "kvm_fast_mmio" and isinstance(f.get("gpa"), int):
            return KernelAccess(
                event.ts, event.tid, "mmio", "write", int(f["gpa"]), 0, None, event=event.event
            )
        return None

    @property
    def is_write(self) -> bool:
        return self.op == "write"


@dataclass(frozen=True)
class KernelExit:
    """One return of KVM_RUN to QEMU on a thread: ``reason`` as the kernel names it
    (``KVM_EXIT_MMIO``, ``KVM_EXIT_IO``, ``restart`` for a signal, ...), the access that
    caused it (``access``), the completion of a read on re-entry (``completion``, with QEMU's
    value), the hardware exit before it (``hw_exit``, VMX/SVM hosts) and when the thread's
    next kernel event came (``resumed_ts``)."""

    ts: float
    tid: int
    comm: str
    reason: str
    access: KernelAccess | None = None
    completion: KernelAccess | None = None
    hw_exit: KernelEvent | None = None
    resumed_ts: float | None = None

    @property
    def described(self) -> KernelAccess | None:
        """The access as far as the kernel knows it: the completion (it has the value) for
        reads, else the access before the exit."""
        return self.completion or self.access


def _exit_reason(event: KernelEvent) -> str:
    reason = event.fields.get("reason")
    return str(reason) if reason is not None else event.text


def kernel_exits(log: KernelLog) -> tuple[list[KernelExit], list[KernelAccess]]:
    """The kernel's exits (step 1 of the module docstring) and every access event that
    belongs to none (kernel-only candidates), both in time order."""
    by_tid: dict[int, list[KernelEvent]] = defaultdict(list)
    for event in log.events:
        by_tid[event.tid].append(event)
    exits: list[KernelExit] = []
    alone: list[KernelAccess] = []
    for tid, events in by_tid.items():
        events.sort(key=lambda e: e.ts)
        pending: KernelAccess | None = None
        hw_exit: KernelEvent | None = None
        awaiting: int | None = None  # index in ``exits`` of a read exit awaiting completion
        last_exit: int | None = None
        for event in events:
            if last_exit is not None and exits[last_exit].resumed_ts is None:
                if event.event != "kvm_userspace_exit":
                    exits[last_exit] = _replace(exits[last_exit], resumed_ts=event.ts)
            if event.event == "kvm_exit":
                hw_exit = event
                continue
            if event.event == "kvm_userspace_exit":
                if pending is not None and pending.op == "read":
                    alone.append(pending)  # a read the kernel completed before exiting
                    pending = None
                if pending is not None and _EXIT_SPACE.get(_exit_reason(event)) not in (
                    None,
                    pending.space,
                ):
                    # An MMIO access never causes an I/O exit (nor the reverse): a port read
                    # that exits logs nothing before it, and the access before it was one
                    # KVM completed itself.
                    alone.append(pending)
                    pending = None
                exits.append(
                    KernelExit(
                        event.ts, tid, event.comm, _exit_reason(event), pending, None, hw_exit
                    )
                )
                last_exit = len(exits) - 1
                reason = exits[last_exit].reason
                wants_read = reason in ("KVM_EXIT_IO", "KVM_EXIT_MMIO") and (
                    pending is None or pending.op == "unsatisfied-read"
                )
                awaiting = last_exit if wants_read else None
                pending, hw_exit = None, None
                continue
            access = KernelAccess.of(event)
            if access is None:
                continue
            if awaiting is not None and access.op == "read":
                waiting = exits[awaiting]
                before = waiting.access
                same = before is None or (before.addr, before.size) == (access.addr, access.size)
                if same and (before is not None or access.space == "pio"):
                    exits[awaiting] = _replace(waiting, completion=access)
                    awaiting = None
                    continue
            awaiting = None
            if pending is not None:
                alone.append(pending)
            pending = access
        if pending is not None:
            alone.append(pending)
    exits.sort(key=lambda e: e.ts)
    alone.sort(key=lambda a: a.ts)
    return exits, alone


def _replace(exit_: KernelExit, **changes: object) -> KernelExit:
    values = {
        "ts": exit_.ts,
        "tid": exit_.tid,
        "comm": exit_.comm,
        "reason": exit_.reason,
        "access": exit_.access,
        "completion": exit_.completion,
        "hw_exit": exit_.hw_exit,
        "resumed_ts": exit_.resumed_ts,
    }
    values.update(changes)
    return KernelExit(**values)  # type: ignore[arg-type]


def exit_key(record: Exit) -> tuple[Space, int, int, bool, int | None] | None:
    """(space, address or port, size, is_write, value written) of an MMIO/IO exit record."""
    value = None
    if record.data:
        try:
            value = int.from_bytes(
                bytes.fromhex(record.data)[: record.size or record.len or 8], "little"
            )
        except ValueError:
            value = None
    if record.reason == "KVM_EXIT_MMIO" and record.phys_addr is not None:
        return ("mmio", record.phys_addr, record.len or 0, bool(record.is_write), value)
    if record.reason == "KVM_EXIT_IO" and record.port is not None:
        return ("pio", record.port, record.size or 0, record.direction == "out", value)
    return None


def _matches(key: tuple[Space, int, int, bool, int | None], kexit: KernelExit) -> str | None:
    """``None`` when the kernel exit is that access, else what differs."""
    seen = kexit.described
    if seen is None:
        return "the kernel saw no access for this exit"
    space, addr, size, is_write, value = key
    if (seen.space, seen.addr, seen.size) != (space, addr, size):
        return f"the kernel's access is {seen.space} 0x{seen.addr:x} size {seen.size}"
    if seen.is_write != is_write:
        return f"the kernel's access is a {seen.op}"
    if is_write and value is not None and seen.value is not None:
        mask = (1 << (8 * size)) - 1 if size else -1
        if seen.value & mask != value & mask:
            return f"the kernel saw value 0x{seen.value:x}"
    return None


@dataclass(frozen=True)
class ExitJoin:
    """An exit record with its kernel exit; ``why_not`` says why none was accepted."""

    exit: Exit
    kernel: KernelExit | None
    why_not: str | None = None
    value_checked: bool = False

    @property
    def joined(self) -> bool:
        return self.kernel is not None and self.why_not is None


@dataclass(frozen=True)
class KernelOnly:
    """An access KVM completed itself: ``handled_by`` names what answered (``lapic``,
    ``ioapic``, ``pit``, ``pic``, ``ioeventfd``, ``coalesced-mmio``, ``coalesced-pio`` or
    ``kernel`` when none of those is known at that address); ``access_seq`` links a
    coalesced write to the trace's access QEMU replayed later."""

    access: KernelAccess
    handled_by: str
    access_seq: int | None = None
    before_arming: bool = False


@dataclass
class KernelJoin:
    """The result of :func:`join_kernel`."""

    method: Literal["clock", "order"]
    exits: list[ExitJoin] = field(default_factory=list)
    kernel_only: list[KernelOnly] = field(default_factory=list)
    window: tuple[float, float] | None = None

    def by_seq(self) -> dict[int, ExitJoin]:
        return {j.exit.seq: j for j in self.exits}

    def coverage(self, reason: str | None = None) -> tuple[int, int]:
        """(joined, total) over the MMIO and IO exit records (or those of ``reason``)."""
        chosen = [j for j in self.exits if reason is None or j.exit.reason == reason]
        return sum(j.joined for j in chosen), len(chosen)

    def handled_by(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for item in self.kernel_only:
            counts[item.handled_by] += 1
        return dict(counts)


def _vcpu_of_comm(comm: str) -> int | None:
    """QEMU's vCPU thread names (``-name debug-threads=on``): ``CPU <n>/KVM``."""
    if comm.startswith("CPU ") and comm.endswith("/KVM"):
        try:
            return int(comm[4:-4])
        except ValueError:
            return None
    return None


def join_kernel(trace: Trace, log: KernelLog) -> KernelJoin:
    """Join ``log`` to ``trace`` (see the module docstring)."""
    kexits, alone = kernel_exits(log)
    origin = next(
        (v.monotonic_origin_s for v in trace.vcpus if v.monotonic_origin_s is not None), None
    )
    wanted = [r for r in trace.exits if r.reason in ("KVM_EXIT_MMIO", "KVM_EXIT_IO")]
    result = KernelJoin("clock" if origin is not None else "order")
    per_thread: dict[int | None, list[KernelExit]] = defaultdict(list)
    for kexit in kexits:
        per_thread[_vcpu_of_comm(kexit.comm)].append(kexit)
    if origin is not None:
        result.exits = [_join_by_clock(r, per_thread, origin) for r in wanted]
    else:
        result.exits = _join_by_order(wanted, per_thread)
    result.exits = _check_values(trace, result.exits)
    start = _window_start(trace, origin, result)
    end = max((j.kernel.ts for j in result.exits if j.kernel is not None), default=None)
    if start is not None:
        last = log.events[-1].ts if log.events else start
        result.window = (start, max(end or last, last))
        result.kernel_only = _kernel_only(trace, alone, origin, start)
    return result


def _window_start(trace: Trace, origin: float | None, result: KernelJoin) -> float | None:
    """From when kernel-only accesses are listed: the arming (the first kvm_vcpu record),
    else the first joined exit."""
    if origin is not None:
        times = [v.monotonic_s for v in trace.vcpus if v.monotonic_s is not None]
        if times:
            return min(times)
    joined = [j.kernel.ts for j in result.exits if j.kernel is not None and j.joined]
    return min(joined) if joined else None


def _check_values(trace: Trace, joins: list[ExitJoin]) -> list[ExitJoin]:
    """A joined read whose exit led to exactly one handler call of the same size: the value
    the kernel completed the read with must be the one the handler returned."""
    by_exit: dict[int, list[Access]] = defaultdict(list)
    for access in trace.accesses:
        if access.exit_seq is not None:
            by_exit[access.exit_seq].append(access)
    out = []
    for join in joins:
        done = join.kernel.completion if join.kernel is not None else None
        accesses = by_exit.get(join.exit.seq, [])
        if not join.joined or done is None or done.value is None or len(accesses) != 1:
            out.append(join)
            continue
        access = accesses[0]
        if access.op != "read" or access.size != done.size:
            out.append(join)
        elif access.value == done.value:
            out.append(ExitJoin(join.exit, join.kernel, None, True))
        else:
            why = f"QEMU's handler returned 0x{access.value:x}, KVM completed 0x{done.value:x}"
            out.append(ExitJoin(join.exit, join.kernel, why))
    return out


def _join_by_clock(
    record: Exit, per_thread: dict[int | None, list[KernelExit]], origin: float
) -> ExitJoin:
    key = exit_key(record)
    if key is None or record.t is None:
        return ExitJoin(record, None, "the exit record has no time or no access")
    moment = origin + record.t + CLOCK_SLACK_S
    threads = [per_thread.get(record.vcpu, [])] if record.vcpu in per_thread else []
    threads += [v for k, v in per_thread.items() if k not in (record.vcpu,)]
    best: ExitJoin | None = None
    for kexits in threads:
        index = bisect.bisect_right([k.ts for k in kexits], moment) - 1
        if index < 0:
            continue
        candidate = kexits[index]
        why = _matches(key, candidate)
        if why is None:
            return ExitJoin(record, candidate)
        if best is None:
            best = ExitJoin(record, candidate, why)
    return best or ExitJoin(record, None, "no kernel exit before it on any thread")


def _join_by_order(
    records: list[Exit], per_thread: dict[int | None, list[KernelExit]]
) -> list[ExitJoin]:
    out: list[ExitJoin] = []
    cursor: dict[int | None, int] = defaultdict(int)
    for record in records:
        key = exit_key(record)
        if key is None:
            out.append(ExitJoin(record, None, "the exit record has no access"))
            continue
        thread = record.vcpu if record.vcpu in per_thread else None
        kexits = per_thread.get(thread, [])
        start = cursor[thread]
        found = None
        for index in range(start, min(len(kexits), start + ORDER_WINDOW)):
            if _matches(key, kexits[index]) is None:
                found = index
                break
        if found is None:
            out.append(ExitJoin(record, None, "no kernel exit with this access in order"))
            continue
        cursor[thread] = found + 1
        out.append(ExitJoin(record, kexits[found]))
    return out


def _in_kernel_device(space: str, addr: int) -> str | None:
    for dev_space, base, size, name in IN_KERNEL_DEVICES:
        if space == dev_space and base <= addr < base + size:
            return name
    return None


def _coalesced(trace: Trace, space: str, addr: int, size: int) -> bool:
    if trace.end is None or trace.end.kvm is None:
        return False
    for zone in trace.end.kvm.zones_in_effect(space):
        if zone.start <= addr and addr + size <= zone.start + zone.size:
            return True
    return False


def _ioeventfd(
    fds: list[IoEventFd], space: str, addr: int, size: int, at_t: float | None = None
) -> bool:
    """Does an ioeventfd in effect at trace time ``at_t`` (``None``: at the trace's end) take
    that write? QEMU removes its ioeventfds when the VM stops, so the end alone says nothing
    about a write made while they were in effect."""
    live: list[IoEventFd] = []
    for fd in fds:
        if at_t is not None and fd.t is not None and fd.t > at_t:
            break
        if fd.op == "add":
            live.append(fd)
        else:
            live = [f for f in live if (f.space, f.addr, f.size) != (fd.space, fd.addr, fd.size)]
    return any(f.covers(space, addr, size) for f in live)


def _kernel_only(
    trace: Trace, accesses: list[KernelAccess], origin: float | None, start: float
) -> list[KernelOnly]:
    """From ``start`` (the arming) every unpaired access; before it only those at an
    in-kernel device's address (the exits of that time were not kept, so anything else
    there may well have exited)."""
    fds = trace.ioeventfds
    coalesced_writes = _coalesced_accesses(trace)
    out: list[KernelOnly] = []
    for access in accesses:
        if access.ts < start:
            device = _in_kernel_device(access.space, access.addr)
            if device is not None:
                out.append(KernelOnly(access, device, before_arming=True))
            continue
        if access.event == "kvm_fast_mmio":
            out.append(KernelOnly(access, "ioeventfd"))
            continue
        name = _in_kernel_device(access.space, access.addr)
        if (
            name is None
            and access.is_write
            and _ioeventfd(
                fds,
                access.space,
                access.addr,
                access.size,
                access.ts - origin if origin is not None else None,
            )
        ):
            name = "ioeventfd"
        seq = None
        if (
            name is None
            and access.is_write
            and _coalesced(trace, access.space, access.addr, access.size)
        ):
            name = f"coalesced-{access.space}"
            seq = _take_coalesced(coalesced_writes, access, origin)
        out.append(KernelOnly(access, name or "kernel", seq))
    return out


def _coalesced_accesses(trace: Trace) -> list[tuple[int, int, int, float | None, int]]:
    """(address, size, value, t, seq) of the trace's coalesced writes, the address found from
    the FlatView serving the access's region."""
    view = flatview_at(trace.layout, "memory")
    out = []
    for access in trace.accesses:
        if not access.coalesced or view is None:
            continue
        base = _region_base(view.ranges, access)
        if base is not None:
            out.append((base + access.offset, access.size, access.value, access.t, access.seq))
    return out


def _region_base(ranges: tuple[object, ...], access: Access) -> int | None:
    for flat in ranges:
        region = getattr(flat, "region", None)
        if region == access.region:
            return int(getattr(flat, "start")) - int(getattr(flat, "offset_in_region"))
    return None


def _take_coalesced(
    pending: list[tuple[int, int, int, float | None, int]],
    access: KernelAccess,
    origin: float | None,
) -> int | None:
    for index, (addr, size, value, t, seq) in enumerate(pending):
        if (addr, size) != (access.addr, access.size):
            continue
        if access.value is not None and access.value != value:
            continue
        if origin is not None and t is not None and origin + t + CLOCK_SLACK_S < access.ts:
            continue  # replayed before this write happened: another write
        del pending[index]
        return seq
    return None

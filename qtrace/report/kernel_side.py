"""How KVM knew to return, from one KVM capture's own records: the memory map that decides
(KVM's memory slots, where the device's MMIO BAR lies in the FlatView, the coalesced-MMIO
zones over it), the host kernel's events joined to the exits, and the accesses KVM completed
alone (a report section, ``templates/kernel_side.j2``; the guide's chapter "How does KVM
know to return?" is told with the same model).

Numbers come from ``trace.jsonl`` (memory-slot, FlatView and ``end.kvm`` records) and
``kernel.jsonl`` through :func:`qtrace.trace.kernel_join.join_kernel`; a part the capture
does not have is ``None`` or empty, and ``status`` says why the kernel's part is missing.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from qtrace.annotate import decode_access
from qtrace.report.recorded import Recorded, recorded
from qtrace.trace import Access, Trace
from qtrace.trace.kernel import KernelLog
from qtrace.trace.kernel_join import KernelAccess, KernelJoin
from qtrace.trace.layout import FlatRange, Memslot, flatview_at, memslot_table
from qtrace.trace.schema import CoalescingZone, Region

__all__ = [
    "KVM_MEM_READONLY",
    "AloneRow",
    "CoalescedRow",
    "ExitCoverage",
    "KernelRead",
    "KernelSide",
    "MemoryMap",
    "kernel_side",
    "memory_map",
    "registers_between",
]

KVM_MEM_READONLY = 0x2
"""Memory-slot flag (include/uapi/linux/kvm.h): reads come from the slot, writes exit (ROM)."""
ALONE_ROWS = 20
"""How many groups of kernel-only accesses a view lists (the rest are counted)."""


@dataclass(frozen=True)
class ExitCoverage:
    """Of the trace's exit records of ``reason``, how many the kernel's events joined."""

    reason: str
    joined: int
    total: int


@dataclass(frozen=True)
class KernelRead:
    """A device read that exited, as the kernel logged it: ``before`` the event before the
    exit (``mmio unsatisfied-read ...``; empty for a port read, which logs none), ``after``
    the completion on re-entry with QEMU's value, which is ``value``."""

    access_seq: int
    exit_seq: int
    register: str
    handler: str
    value: int
    size: int
    before: str
    after: str


@dataclass(frozen=True)
class AloneRow:
    """Accesses KVM completed itself at one address, grouped: what answered (``handled_by``,
    as :class:`~qtrace.trace.kernel_join.KernelOnly` names it), the first event's text, how
    many there were and how many came before the collectors were armed (the firmware)."""

    handled_by: str
    space: str
    addr: int
    op: str
    count: int
    before_arming: int
    text: str


@dataclass(frozen=True)
class CoalescedRow:
    """Writes to one register that KVM buffered in its coalesced ring (no exit): how many the
    trace has (QEMU replayed them later) and how many of them the kernel's events show as a
    ``kvm_mmio write`` that no exit followed."""

    register: str
    offset: int
    writes: int
    seen_by_kernel: int


@dataclass(frozen=True)
class MemoryMap:
    """What decided whether an access exits, at the end of the capture: KVM's memory slots,
    the FlatView range of the device's MMIO BAR (``None`` without one or without FlatView
    records) and the slots overlapping it (none: an access there has no RAM behind it), the
    coalesced-MMIO zones QEMU registered over it, the registers between them, and the
    writes KVM buffered."""

    memslots: tuple[Memslot, ...] = ()
    bar: FlatRange | None = None
    bar_slots: tuple[Memslot, ...] = ()
    zones: tuple[CoalescingZone, ...] = ()
    zone_gaps: tuple[str, ...] = ()
    coalesced: tuple[CoalescedRow, ...] = ()

    @property
    def coalesced_writes(self) -> int:
        return sum(row.writes for row in self.coalesced)


@dataclass(frozen=True)
class KernelSide:
    """One KVM capture's evidence for the section (see the module docstring)."""

    status: Literal["recorded", "unavailable", "absent"]
    memory: MemoryMap
    reason: str | None = None
    fix: str | None = None
    kvm_modules: tuple[str, ...] = ()
    events: int = 0
    lost: int = 0
    quiet: int = 0
    quiet_ports: tuple[tuple[int, int], ...] = ()
    quiet_gsis: tuple[int, ...] = ()
    coverage: tuple[ExitCoverage, ...] = ()
    read: KernelRead | None = None
    port_read: KernelRead | None = None
    alone: tuple[AloneRow, ...] = ()
    alone_counts: tuple[tuple[str, int], ...] = ()
    hw_exits: int = 0
    hw_exit_enabled: bool = False
    # What the capture recorded: without the memory map or the kernel's events the section
    # says the collector did not record them (not that the capture predates them).
    recorded: Recorded = field(default_factory=Recorded)

    @property
    def alone_total(self) -> int:
        return sum(n for _, n in self.alone_counts)

    @property
    def alone_listed(self) -> int:
        return sum(row.count for row in self.alone)


def _register(trace: Trace, access: Access) -> str:
    return decode_access(trace.header.device, access, trace.header.regions).name


def _bar(trace: Trace) -> FlatRange | None:
    """The FlatView range (system memory, the newest view) of the device's first MMIO region
    the guest reached."""
    view = flatview_at(trace.layout, "memory")
    first = next((a for a in trace.accesses if a.space == "mmio" and a.region), None)
    if view is None or first is None:
        return None
    return next((r for r in view.ranges if r.region == first.region), None)


def _zones_and_gaps(
    trace: Trace, bar: FlatRange | None
) -> tuple[tuple[CoalescingZone, ...], tuple[str, ...]]:
    kvm = trace.end.kvm if trace.end is not None else None
    if kvm is None or bar is None:
        return (), ()
    base = bar.start - bar.offset_in_region
    zones = tuple(
        sorted(
            (
                z
                for z in kvm.zones_in_effect("mmio")
                if bar.start <= z.start and z.start + z.size <= bar.start + bar.size
            ),
            key=lambda z: z.start,
        )
    )
    return zones, registers_between(
        trace.header.device, zones, base, bar.region, trace.header.regions
    )


def registers_between(
    device: str,
    zones: Sequence[CoalescingZone],
    base: int,
    region: str | None = None,
    regions: Sequence[Region] = (),
) -> tuple[str, ...]:
    """The registers (4-byte steps) in the gaps between consecutive coalescing zones, sorted
    by start, of a BAR at ``base``: the writes that always exit."""
    gaps = []
    for before, after in itertools.pairwise(zones):
        offset = before.start + before.size - base
        while offset < after.start - base:
            probe = Access(0, "write", "mmio", offset, 4, 0, region=region)
            gaps.append(decode_access(device, probe, regions).name)
            offset += 4
    return tuple(gaps)


def _coalesced(trace: Trace, join: KernelJoin | None) -> tuple[CoalescedRow, ...]:
    seen = {
        k.access_seq
        for k in (join.kernel_only if join is not None else ())
        if k.access_seq is not None
    }
    writes: dict[tuple[str, int], list[int]] = {}
    for access in trace.accesses:
        if access.coalesced:
            key = (_register(trace, access), access.offset)
            writes.setdefault(key, []).append(access.seq)
    return tuple(
        CoalescedRow(name, offset, len(seqs), sum(s in seen for s in seqs))
        for (name, offset), seqs in sorted(writes.items(), key=lambda kv: kv[0][1])
    )


Texts = dict[tuple[int, float, str], list[tuple[KernelAccess | None, str]]]


def _texts(log: KernelLog) -> Texts:
    """Each event's own text, by (thread, time, event); several events of one name can share
    a timestamp (a read and a write of the LAPIC within one microsecond), so each keeps the
    access it describes and :func:`_said` picks the one that matches."""
    texts: Texts = {}
    for e in log.events:
        texts.setdefault((e.tid, e.ts, e.event), []).append((KernelAccess.of(e), e.text))
    return texts


def _said(texts: Texts, access: KernelAccess | None) -> str:
    """The text of the event that recorded ``access``: same thread, time and event, and the
    same operation, address and space (never another access's text)."""
    if access is None:
        return ""
    for seen, text in texts.get((access.tid, access.ts, access.event), ()):
        if seen is not None and (seen.op, seen.addr, seen.space) == (
            access.op,
            access.addr,
            access.space,
        ):
            return text
    return ""


def _read(trace: Trace, join: KernelJoin, texts: Texts, reason: str) -> KernelRead | None:
    """The first read of ``reason`` whose kernel exit was joined and whose completion carried
    the value QEMU's handler returned."""
    by_exit = {a.exit_seq: a for a in trace.accesses if a.exit_seq is not None}
    for item in join.exits:
        access = by_exit.get(item.exit.seq)
        if item.exit.reason != reason or access is None or access.op != "read":
            continue
        if not item.value_checked or item.kernel is None or item.kernel.completion is None:
            continue
        return KernelRead(
            access.seq,
            item.exit.seq,
            _register(trace, access),
            access.handler or "",
            access.value,
            access.size,
            _said(texts, item.kernel.access),
            _said(texts, item.kernel.completion),
        )
    return None


def _alone(
    join: KernelJoin, texts: Texts
) -> tuple[tuple[AloneRow, ...], tuple[tuple[str, int], ...]]:
    groups: dict[tuple[str, str, int, str], list[tuple[bool, str]]] = {}
    for item in join.kernel_only:
        a = item.access
        text = _said(texts, a)
        groups.setdefault((item.handled_by, a.space, a.addr, a.op), []).append(
            (item.before_arming, text)
        )
    rows = [
        AloneRow(by, space, addr, op, len(items), sum(b for b, _ in items), items[0][1])
        for (by, space, addr, op), items in groups.items()
    ]
    rows.sort(key=lambda r: (r.handled_by, r.space, r.addr, r.op))
    counts = Counter(item.handled_by for item in join.kernel_only)
    return tuple(rows[:ALONE_ROWS]), tuple(sorted(counts.items()))


def memory_map(trace: Trace, join: KernelJoin | None) -> MemoryMap:
    """The memory-map part (from ``trace.jsonl`` alone; ``join`` links the buffered writes
    to the kernel's events)."""
    bar = _bar(trace)
    slots = tuple(memslot_table(trace.layout))
    zones, gaps = _zones_and_gaps(trace, bar)
    overlapping = tuple(
        s
        for s in slots
        if bar is not None and s.start < bar.start + bar.size and bar.start < s.start + s.size
    )
    return MemoryMap(slots, bar, overlapping, zones, gaps, _coalesced(trace, join))


def kernel_side(trace: Trace, log: KernelLog | None, join: KernelJoin | None) -> KernelSide | None:
    """The section's model for a KVM capture (``None`` under TCG)."""
    if trace.header.accel != "kvm":
        return None
    memory = memory_map(trace, join)
    kinds = recorded(trace.header)
    if log is None:
        return KernelSide("absent", memory, recorded=kinds)
    if not log.recorded or join is None:
        h = log.header
        return KernelSide("unavailable", memory, h.reason, h.fix, h.kvm_modules, recorded=kinds)
    texts = _texts(log)
    alone, counts = _alone(join, texts)
    reasons = sorted({j.exit.reason for j in join.exits})
    return KernelSide(
        "recorded",
        memory,
        kvm_modules=log.header.kvm_modules,
        events=len(log.events),
        lost=log.end.lost if log.end is not None else 0,
        quiet=log.end.quiet_total if log.end is not None else 0,
        quiet_ports=log.end.quiet_ports if log.end is not None else (),
        quiet_gsis=log.end.quiet_gsis if log.end is not None else (),
        coverage=tuple(ExitCoverage(r, *join.coverage(r)) for r in reasons),
        read=_read(trace, join, texts, "KVM_EXIT_MMIO"),
        port_read=_read(trace, join, texts, "KVM_EXIT_IO"),
        alone=alone,
        alone_counts=counts,
        hw_exits=sum(1 for e in log.events if e.event == "kvm_exit"),
        hw_exit_enabled="kvm:kvm_exit" in log.header.events,
        recorded=kinds,
    )

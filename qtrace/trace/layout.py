"""The memory-map records of ``qtrace-trace/1``: what decided whether a guest access exits.

Written by the collector's ``gdbscripts/qtrace_gdb/memory_map.py`` and documented in
TRACE_FORMAT.md ("The memory map"): the KVM memory slots QEMU set (:class:`Memslot`), the
FlatViews of system memory and I/O space (:class:`FlatView`), the ioeventfds QEMU gave KVM
(:class:`IoEventFd`) and the vCPUs at arming (:class:`KvmVcpu`, which also ties the trace's
clock to the host's CLOCK_MONOTONIC for the kernel events of ``kernel.jsonl``). Readers find
them in :attr:`qtrace.trace.codec.Trace.layout`, apart from the events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

__all__ = [
    "Memslot",
    "FlatRange",
    "FlatView",
    "IoEventFd",
    "KvmVcpu",
    "LayoutRecord",
    "LAYOUT_TYPES",
    "memslot_table",
    "flatview_at",
]


@dataclass(frozen=True)
class Memslot:
    """One call of QEMU's ``kvm_set_user_memory_region``: KVM memory slot ``slot`` (in address
    space ``as_id``) now maps guest-physical ``start`` .. ``start + size`` to QEMU's memory at
    ``host_addr``; ``size`` 0 (``op`` ``del``) removes the slot. Guest accesses inside a slot
    never leave KVM; an address in no slot is MMIO (``flags`` bit 1, KVM_MEM_READONLY: reads
    are RAM, writes exit). Changes made before the header are written right after it."""

    seq: int
    op: Literal["add", "set", "del"]
    slot: int
    start: int
    size: int
    flags: int = 0
    as_id: int = 0
    host_addr: str | None = None
    t: float | None = None
    type: Literal["memslot"] = "memslot"

    def contains(self, address: int) -> bool:
        return self.start <= address < self.start + self.size


@dataclass(frozen=True)
class FlatRange:
    """One range of a FlatView: ``start`` .. ``start + size`` is served by ``region`` (from
    ``offset_in_region`` in it). ``kind``: ``ram``, ``rom``, ``ram-device``, ``romd`` (a ROM
    device in ROM mode) or ``io`` (MemoryRegionOps: an access reaches QEMU's handlers)."""

    start: int
    size: int
    region: str | None
    kind: str
    offset_in_region: int = 0
    readonly: bool = False

    def contains(self, address: int) -> bool:
        return self.start <= address < self.start + self.size


@dataclass(frozen=True)
class FlatView:
    """QEMU's flattened view of ``space`` (``memory``: system memory, ``io``: port I/O) at a
    moment: ``cause`` is ``discovery`` (when the header was written), ``armed`` or ``update``
    (a change QEMU made, such as a BAR being programmed)."""

    seq: int
    space: Literal["memory", "io"]
    cause: str
    ranges: tuple[FlatRange, ...] = ()
    t: float | None = None
    type: Literal["flatview"] = "flatview"

    def lookup(self, address: int) -> FlatRange | None:
        """The range serving ``address``, or ``None`` (unassigned)."""
        return next((r for r in self.ranges if r.contains(address)), None)


@dataclass(frozen=True)
class IoEventFd:
    """An ioeventfd QEMU registered with KVM (``add``) or removed (``del``): a guest write of
    ``size`` bytes at ``addr`` (with ``match_data``: of value ``data`` only) is completed by KVM
    signalling an eventfd, without an exit."""

    seq: int
    op: Literal["add", "del"]
    space: Literal["mmio", "pio"]
    addr: int
    size: int
    match_data: bool = False
    data: int = 0
    region: str | None = None
    t: float | None = None
    type: Literal["ioeventfd"] = "ioeventfd"

    def covers(self, space: str, address: int, size: int) -> bool:
        """Does a ``size``-byte write at ``address`` of ``space`` hit this ioeventfd?"""
        if space != self.space or not self.addr <= address < self.addr + max(self.size, 1):
            return False
        return self.size == 0 or self.size == size


@dataclass(frozen=True)
class KvmVcpu:
    """A vCPU at arming (KVM): its index, its thread id (inside the container), whether KVM
    was asked to sync its registers into ``kvm_run`` (then exits carry ``guest_pc``), and the
    moment in both clocks: ``t`` (the trace's) and ``monotonic_s`` (CLOCK_MONOTONIC, the
    clock of the kernel events in ``kernel.jsonl``)."""

    seq: int
    index: int
    thread_id: int | None = None
    sync_regs: bool = False
    sync_regs_error: str | None = None
    t: float | None = None
    monotonic_s: float | None = None
    type: Literal["kvm_vcpu"] = "kvm_vcpu"

    @property
    def monotonic_origin_s(self) -> float | None:
        """CLOCK_MONOTONIC at the trace's ``t`` = 0."""
        if self.t is None or self.monotonic_s is None:
            return None
        return self.monotonic_s - self.t


LayoutRecord = Union[Memslot, FlatView, IoEventFd, KvmVcpu]
"""The memory-map records (TRACE_FORMAT.md, "The memory map")."""

LAYOUT_TYPES: dict[str, type[LayoutRecord]] = {
    "memslot": Memslot,
    "flatview": FlatView,
    "ioeventfd": IoEventFd,
    "kvm_vcpu": KvmVcpu,
}


def memslot_table(records: list[LayoutRecord], until_seq: int | None = None) -> list[Memslot]:
    """The KVM memory slots in effect after every memslot record up to ``until_seq`` (all by
    default), by (address space, slot): the last non-empty setting of each, by start."""
    slots: dict[tuple[int, int], Memslot] = {}
    for record in records:
        if not isinstance(record, Memslot):
            continue
        if until_seq is not None and record.seq > until_seq:
            break
        key = (record.as_id, record.slot)
        if record.size == 0:
            slots.pop(key, None)
        else:
            slots[key] = record
    return sorted(slots.values(), key=lambda s: (s.as_id, s.start))


def flatview_at(
    records: list[LayoutRecord], space: str, until_seq: int | None = None
) -> FlatView | None:
    """The last FlatView of ``space`` written up to ``until_seq`` (the newest by default)."""
    found: FlatView | None = None
    for record in records:
        if until_seq is not None and record.seq > until_seq:
            break
        if isinstance(record, FlatView) and record.space == space:
            found = record
    return found

"""What a replay found: counts, mismatches with their context, unimplemented registers.

Why a separate module: the CLI renders these (table or JSON) and a later live
differential runner will produce the same shapes, so they carry no replay internals.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["EventMismatch", "Mismatch", "PriorAccess", "UnimplementedUse", "VerifyResult"]


@dataclass(frozen=True)
class PriorAccess:
    """An earlier access to the same register, for context."""

    seq: int
    op: str
    size: int
    value: int


@dataclass(frozen=True)
class Mismatch:
    """A read where the model's value differs from QEMU's.

    Attributes:
        seq: The read's ``seq`` in the trace.
        space: ``mmio``, ``pio`` or ``pci-config``.
        offset: Offset in that space, as recorded.
        size: Access size in bytes.
        register: Register name (``IODATA[STATUS]`` for indirect I/O access).
        expected: QEMU's value.
        actual: The model's value.
        fields: Differing bit fields, ``"NAME: qemu -> model"``.
        previous: The latest accesses to the same register before this read.
        rule: The volatile rule that applied to the read, if any (it did not hide this).
    """

    seq: int
    space: str
    offset: int
    size: int
    register: str
    expected: int
    actual: int
    fields: tuple[str, ...]
    previous: tuple[PriorAccess, ...]
    rule: str | None = None


@dataclass(frozen=True)
class EventMismatch:
    """An access after which QEMU's DMA or interrupt line differs from the model's.

    Attributes:
        seq: The access's ``seq`` in the trace.
        kind: ``dma`` (transfers the handler made), ``irq`` (line level after it) or
            ``msi`` (the MSI/MSI-X messages sent).
        register: The accessed register.
        expected: What QEMU did, rendered (``"1"``; ``"write 0x2b5000c 01000000"``).
        actual: What the model did, rendered the same way.
    """

    seq: int
    kind: str
    register: str
    expected: str
    actual: str


@dataclass
class UnimplementedUse:
    """A register the model does not model, and how often the trace touched it."""

    space: str
    offset: int
    register: str
    reason: str
    reads: int = 0
    writes: int = 0


@dataclass
class VerifyResult:
    """The outcome of replaying one trace against the model.

    ``reads_compared`` counts reads that were compared (``matches`` + ``mismatches``);
    ``masked`` of the matches agreed only under a volatile rule; ``synced`` reads adopted
    firmware state instead of being compared; unimplemented reads are in neither.

    Events (only when the capture recorded them, ``irq_recorded``/``dma_recorded``):
    ``irq_compared`` accesses after which both lines were compared; ``irq_async`` QEMU
    line changes no access caused (timers); ``irq_unsynced`` accesses after which the
    line was not compared because such a change had set the two apart; ``dma_*``
    transfers compared (reads by address and size, writes also by content) and DMA reads
    recorded only in part (``dma_truncated``); ``async_work_replayed`` times the model did
    work off the vCPU where QEMU's trace showed it (thread, timer, bottom half);
    ``msi_compared`` MSI/MSI-X messages compared.

    ``dma_unrecorded``: DMA reads the model made in a trace that records no DMA (a fast
    capture): it read its own RAM there, not what QEMU's device fetched, so what follows
    such a read proves less.

    ``host_inputs_replayed``: what the host delivered (frames a network backend sent) and
    the replay gave the model, its DMA and line compared like an access's.
    """

    device: str
    accesses_replayed: int = 0
    writes: int = 0
    reads_compared: int = 0
    matches: int = 0
    masked: int = 0
    synced: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    unimplemented: list[UnimplementedUse] = field(default_factory=list)
    rules_applied: Counter[str] = field(default_factory=Counter)
    dma_preloaded: int = 0
    dma_truncated: int = 0
    dma_recorded: bool = False
    dma_reads_compared: int = 0
    dma_writes_compared: int = 0
    dma_bytes_compared: int = 0
    dma_async: int = 0
    dma_unrecorded: int = 0
    irq_recorded: bool = False
    irq_compared: int = 0
    irq_async: int = 0
    irq_unsynced: int = 0
    async_work_replayed: int = 0
    msi_compared: int = 0
    event_mismatches: list[EventMismatch] = field(default_factory=list)
    unmodelled_features: Counter[str] = field(default_factory=Counter)
    host_inputs_replayed: int = 0

    @property
    def ok(self) -> bool:
        """True when no read, DMA transfer or interrupt level disagreed."""
        return not self.mismatches and not self.event_mismatches

    @property
    def unimplemented_accesses(self) -> int:
        return sum(u.reads + u.writes for u in self.unimplemented)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (integers stay integers)."""
        out = asdict(self)
        out["mismatch_count"] = len(self.mismatches)
        out["event_mismatch_count"] = len(self.event_mismatches)
        out["unimplemented_accesses"] = self.unimplemented_accesses
        out["rules_applied"] = dict(self.rules_applied)
        out["unmodelled_features"] = dict(self.unmodelled_features)
        out["ok"] = self.ok
        return out

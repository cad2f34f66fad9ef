"""What a capture recorded, read from its trace header: the one place the report asks.

A kind of record that was not looked for says nothing by its absence: a trace of the fast
collector has no async record (nor, under TCG, an exit; nor, before its DMA tracepoints,
a DMA record) because that collector records the device's register and configuration-space
accesses, its interrupts (INTx, MSI, MSI-X), its DMA copies and, under KVM, the exits only,
not because there were none. Every view
that counts a kind, or draws a conclusion from its absence, asks :func:`recorded` first and
says "not recorded" instead of "0" or "none".

The header says it in ``arming`` (TRACE_FORMAT.md), whose keys are the kinds
(:data:`KINDS`):

- a header whose ``arming`` has ``not_recorded`` (the fast collector's), or whose
  ``extra.collector`` is ``fast``, names each kind it recorded by its own key: a kind without
  one, or named before the colon of ``not_recorded``, was not recorded;
- ``arming.async`` beginning with "not recorded" (a guest plan that records no async work):
  async work was not recorded;
- ``extra.record_async`` (a list): only those kinds of async work were looked for;
- an older header says none of this, and every kind is taken as recorded, as reports always
  took it.

The fast collector also records no memory map (KVM's memory slots, FlatViews, coalescing
zones), no host kernel events (``kernel.jsonl``), no guest PC under TCG (under KVM its exits
carry one, from the registers KVM syncs into ``kvm_run``), and its stacks' first frame, the
handler, has its name only (its tracepoints sit in the generic accessor, one call outside
the handler).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from qtrace.trace import Header

__all__ = ["KINDS", "KIND_WORDS", "Recorded", "and_join", "recorded"]

KINDS = ("kvm_exits", "irq", "dma", "async", "pci_config")
"""The kinds of record ``arming`` names by key, besides the device's handlers."""

KIND_WORDS = {
    "pci_config": "configuration-space accesses",
    "irq": "interrupts",
    "dma": "DMA",
    "async": "asynchronous work",
    "kvm_exits": "KVM exits",
}
"""How a sentence names each kind."""

FAST = "fast"


def and_join(words: Iterable[str], conjunction: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c`` (or another ``conjunction``: ``a, b or c``)."""
    items = list(words)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


@dataclass(frozen=True)
class Recorded:
    """Which kinds a capture recorded.

    ``collector``: ``breakpoint`` or ``fast`` (``header.extra.collector``); ``missing``: the
    kinds of :data:`KINDS` not recorded at all, in that order; ``async_kinds``: the only
    kinds of async work looked for, when the guest plan chose some (``None``: all, unless
    ``async`` is missing).
    """

    collector: str = "breakpoint"
    missing: tuple[str, ...] = ()
    async_kinds: tuple[str, ...] | None = None

    @property
    def fast(self) -> bool:
        return self.collector == FAST

    def has(self, kind: str) -> bool:
        """Whether records of ``kind`` (one of :data:`KINDS`) were looked for at all."""
        return kind not in self.missing

    @property
    def by(self) -> str:
        """Who left the missing kinds out, as a sentence names it."""
        return "the fast collector" if self.fast else "the collector"

    @property
    def layout(self) -> bool:
        """Whether the memory map was recorded (memory slots, FlatViews, coalescing zones)."""
        return not self.fast

    @property
    def kernel(self) -> bool:
        """Whether the capture records the host kernel's kvm: events (``kernel.jsonl``)."""
        return not self.fast

    @property
    def guest_pcs(self) -> bool:
        """Whether accesses (TCG) or their exits (KVM) carry the guest's PC: the fast
        collector's exits do (KVM), its accesses do not (TCG)."""
        return not self.fast or self.has("kvm_exits")

    @property
    def in_accessor(self) -> bool:
        """Whether each access was recorded in the generic accessor (memory_region_read_accessor,
        memory_region_write_accessor), one call outside the handler, instead of in the handler:
        a read's value is taken there once the handler returned, a write's before the accessor
        calls the handler, and a stack's handler frame has its name only (no file, line or
        address)."""
        return self.fast

    def words(self, *kinds: str) -> str:
        """The missing ones of ``kinds`` (all of :data:`KINDS` when none are given), named
        and joined as a sentence that says they were not recorded names them: ``interrupts,
        DMA or asynchronous work``; "" when all were recorded."""
        wanted = kinds or KINDS
        return and_join((KIND_WORDS[k] for k in KINDS if k in wanted and k in self.missing), "or")

    def missing_of(self, *kinds: str) -> tuple[str, ...]:
        """The missing ones of ``kinds``, in :data:`KINDS` order."""
        return tuple(k for k in KINDS if k in kinds and k in self.missing)


def _named(text: str) -> set[str]:
    """The kinds ``arming.not_recorded`` lists before its colon."""
    names = text.split(":", 1)[0]
    return {name.strip() for name in names.split(",")} & set(KINDS)


def recorded(header: Header) -> Recorded:
    """What ``header``'s capture recorded (see the module docstring)."""
    arming = header.arming or {}
    collector = str(header.extra.get("collector") or "breakpoint")
    missing: set[str] = set()
    if "not_recorded" in arming or collector == FAST:
        missing |= {k for k in KINDS if k not in arming}
        missing |= _named(str(arming.get("not_recorded", "")))
    if str(arming.get("async", "")).startswith("not recorded"):
        missing.add("async")
    kinds = header.extra.get("record_async")
    async_kinds = tuple(str(k) for k in kinds) if isinstance(kinds, list) else None
    return Recorded(collector, tuple(k for k in KINDS if k in missing), async_kinds)

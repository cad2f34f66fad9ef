"""Decoded fast-run accesses as ``qtrace-trace/1`` records, so ``show``, ``report``,
``diff`` and ``verify`` read a fast capture like any other.

Stacks are deduplicated by the handler and the exact list of return addresses, and each
distinct one is symbolized once (``symbolize``: gdb on the image's binary, or a table in
tests). The fast collector's tracepoints sit in the generic accessor, one call outside the
handler, so a stack's first frame is the handler the region's ops name (function only: no
line or address, the agent did not stop inside it) and the second is the accessor at its
call, followed by the unwound callers, as the breakpoint collector's stacks go on. A
configuration-space access (its tracepoint is in ``pci_host_config_*_common``) is written as
the breakpoint collector writes it: space and region ``pci-config``, the device's config hook
as its handler, its stack from that function on; it takes its place in the one ``seq``
sequence in hit order. An INTx level change is an ``irq`` record as the breakpoint
collector writes it, kept only when ``pci_set_irq`` made it (the tracepoint is in
``pci_irq_handler``, and its caller must be ``pci_set_irq``; gdbscripts/qtrace_gdb/irq.py
says why), its stack from ``pci_set_irq`` on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from qtrace.launch.fast.decode import Access as Decoded
from qtrace.trace.schema import Access, AccessSpace, Frame, Irq, Stack

__all__ = ["ConfigDevice", "RecordMaker", "RegionOf", "fast_records"]


@dataclass(frozen=True)
class RegionOf:
    """A MemoryRegion of the device, as the header's ``regions`` name it, with the
    functions of its ops (``read``/``write`` -> function)."""

    name: str
    space: str
    handlers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConfigDevice:
    """A PCI device whose configuration-space accesses are recorded, with the functions its
    config hooks name (``read``/``write`` -> function) and ``device``: ``None`` for the
    captured device, a bridge's QOM type for a bridge above it (as the breakpoint
    collector names them)."""

    handlers: Mapping[str, str | None] = field(default_factory=dict)
    device: str | None = None


class RecordMaker:
    """Turns a run's decoded accesses into records, one segment after another (a long run
    drains its buffer several times, :mod:`.run`): the stack ids, the sequence numbers and
    the run's first timestamp carry from one segment to the next.

    ``thread_of`` names the thread whose stack holds an access's stack pointer."""

    IRQ_PATH = ("pci_set_irq",)
    """Who called ``pci_irq_handler`` (the INTx tracepoint's function) for a change an
    ``irq`` record is made of."""
    IRQ_SKIPPED = 1  # pci_irq_handler: PCI's core, not the device

    def __init__(
        self,
        regions: Mapping[int, RegionOf],
        first_seq: int = 1,
        devices: Mapping[int, ConfigDevice] | None = None,
    ) -> None:
        self.regions = regions
        self.devices = devices or {}  # PCIDevice pointer -> its config hooks
        self.irq_other_paths = 0  # INTx changes not made by pci_set_irq (not recorded)
        self.stack_ids: dict[tuple[str, tuple[int, ...]], str] = {}
        self.next_seq = first_seq
        self.start_us: int | None = None  # ``t`` counts from the first hit the agent stamped

    def new_stacks(self, accesses: Iterable[Decoded]) -> list[tuple[int, ...]]:
        """The return-address lists among ``accesses`` that :meth:`records` will make a
        new stack record of (a new handler and path), each once: what it will ask
        ``symbolize`` for."""
        out: dict[tuple[int, ...], None] = {}
        for access in accesses:
            handler = self._handler(access)
            if handler is not None and (handler, self._path(access)) not in self.stack_ids:
                out[access.pcs] = None
        return list(out)

    def _path(self, access: Decoded) -> tuple[int, ...]:
        """The return addresses its stack record is made of."""
        return access.pcs[self.IRQ_SKIPPED:] if access.op == "irq" else access.pcs

    def _handler(self, access: Decoded) -> str | None:
        """The function that handled ``access`` (``"??"`` unknown); ``None`` when it is of
        no region or device of the run."""
        if access.op == "irq":
            device = self.devices.get(access.region)
            return "irq" if device is not None and device.device is None else None
        if access.space == "pci-config":
            device = self.devices.get(access.region)
            return None if device is None else device.handlers.get(access.op) or "??"
        region = self.regions.get(access.region)
        return None if region is None else region.handlers.get(access.op, "??")

    def records(
        self,
        accesses: Iterable[Decoded],
        symbolize: Callable[[tuple[int, ...]], tuple[Frame, ...]],
        thread_of: Callable[[int], str | None] = lambda sp: None,
    ) -> Iterator[Access | Irq | Stack]:
        """Stack records (each before its first use), access and irq records, in hit order;
        an access to a region not in ``regions`` is left out (the decoder kept only those),
        and so is an INTx change another path than ``pci_set_irq`` made."""
        stack_ids = self.stack_ids
        for access in accesses:
            handler = self._handler(access)
            if handler is None:
                continue
            irq = access.op == "irq"
            if irq:
                frames = symbolize(access.pcs)
                callers = tuple(f.func for f in frames[1 : 1 + len(self.IRQ_PATH)])
                if callers != self.IRQ_PATH:
                    self.irq_other_paths += 1
                    continue
            if self.start_us is None and access.us is not None:
                self.start_us = access.us
            config = access.space == "pci-config"
            key = (handler, self._path(access))
            sid = stack_ids.get(key)
            if sid is None:
                sid = f"s{len(stack_ids) + 1}"
                stack_ids[key] = sid
                if irq:
                    yield Stack(sid, frames[self.IRQ_SKIPPED:])
                else:
                    # A config tracepoint sits in pci_host_config_*_common itself: its own
                    # frame comes first, as the breakpoint collector's config stacks begin.
                    head = () if config else (Frame(handler),)
                    yield Stack(sid, (*head, *symbolize(access.pcs)))
            start_us = self.start_us
            t = None if access.us is None or start_us is None else (access.us - start_us) / 1e6
            if irq:
                yield Irq(seq=self.next_seq, level=access.value, line="INTx", stack=sid,
                          t=t, thread=thread_of(access.sp))  # fmt: skip
                self.next_seq += 1
                continue
            space: AccessSpace
            if config:
                space, name = "pci-config", "pci-config"
                device = self.devices[access.region].device
            else:
                region = self.regions[access.region]
                space = "pio" if region.space == "pio" else "mmio"
                name, device = region.name, None
            yield Access(
                seq=self.next_seq,
                op="read" if access.op == "read" else "write",
                space=space,
                offset=access.offset,
                size=access.size,
                value=access.value,
                region=name,
                handler=handler,
                stack=sid,
                thread=thread_of(access.sp),
                device=device,
                t=t,
            )
            self.next_seq += 1


def fast_records(
    accesses: list[Decoded],
    regions: Mapping[int, RegionOf],
    symbolize: Callable[[tuple[int, ...]], tuple[Frame, ...]],
    thread_of: Callable[[int], str | None] = lambda sp: None,
    first_seq: int = 1,
) -> Iterator[Access | Irq | Stack]:
    """The records of a whole run's accesses at once (:class:`RecordMaker`)."""
    return RecordMaker(regions, first_seq).records(accesses, symbolize, thread_of)

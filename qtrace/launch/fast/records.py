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

Under KVM each exit the switch of ``kvm_cpu_exec`` has a case for is an ``exit`` record as
the breakpoint collector writes it (:mod:`.kvm_run` decodes ``kvm_run``), its stack from
``kvm_cpu_exec`` on (at the call of ``trace_kvm_run_exit``, just before the switch, where
the breakpoint collector's stacks begin at the case's line); a port I/O exit on a quiet
port (the serial console's) is counted, not written. An access made under ``kvm_cpu_exec``
carries the exit its thread last had (``exit_seq``), the space that exit says, and its
address; one QEMU replays from the coalesced-MMIO ring carries none (``coalesced``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from qtrace.launch.fast.decode import DmaHit, ExitHit, Hit, MessageHit
from qtrace.launch.fast.kvm_run import exit_fields
from qtrace.trace.schema import Access, AccessSpace, Dma, Exit, Frame, Irq, Stack

__all__ = ["ConfigDevice", "ExitsRecorded", "RecordMaker", "RegionOf", "fast_records"]

DMA_API = "dma_memory_rw_relaxed"  # the function the DMA tracepoints sit in (locate.py)
MSIX_VECTOR_MASKED = 0x1  # an MSI-X table entry's vector control bit (PCI spec)
MSI_FLAGS_64BIT = 0x80  # the MSI capability's message control: 64-bit address
KVM_EXEC = "kvm_cpu_exec"
COALESCED_FLUSH = "kvm_flush_coalesced_mmio_buffer"


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


@dataclass(frozen=True)
class ExitsRecorded:
    """Which KVM exits become ``exit`` records, as the breakpoint collector chooses them:
    the reasons ``kvm_cpu_exec``'s switch has a case for in this QEMU (``labels``), less the
    port I/O exits on ``quiet_ports`` (``(first, count)`` ranges), which are counted."""

    labels: frozenset[str]
    quiet_ports: tuple[tuple[int, int], ...] = ()

    def quiet(self, port: int | None) -> bool:
        return port is not None and any(a <= port < a + n for a, n in self.quiet_ports)


@dataclass
class _StackFacts:
    """What an access's stack says about it (computed once per stack record)."""

    under_kvm: bool
    coalesced: bool


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
        exits: ExitsRecorded | None = None,
    ) -> None:
        self.regions = regions
        self.devices = devices or {}  # PCIDevice pointer -> its config hooks
        self.exits = exits  # None: no exit is traced (TCG)
        self.irq_other_paths = 0  # INTx changes not made by pci_set_irq (not recorded)
        self.quiet_exits = 0  # port I/O exits on a quiet port (counted, not recorded)
        self.exits_other_reasons = 0  # exits the switch has no case for (not recorded)
        self.exits_without_data = 0  # string I/O writes longer than the collected data
        self.last_exit: dict[str | None, Exit | None] = {}  # thread -> its last exit record
        self.vcpu_of: dict[str | None, int] = {}  # thread -> the vCPU its exits name
        self.facts: dict[str, _StackFacts] = {}  # stack id -> what it says
        self.stack_ids: dict[tuple[str, tuple[int, ...]], str] = {}
        self.next_seq = first_seq
        self.start_us: int | None = None  # ``t`` counts from the first hit the agent stamped

    def new_stacks(self, accesses: Iterable[Hit]) -> list[tuple[int, ...]]:
        """The return-address lists among ``accesses`` that :meth:`records` will make a
        new stack record of (a new handler and path), each once: what it will ask
        ``symbolize`` for."""
        out: dict[tuple[int, ...], None] = {}
        for access in accesses:
            handler = self._handler(access)
            if handler is not None and (handler, self._path(access)) not in self.stack_ids:
                out[access.pcs] = None
        return list(out)

    def _path(self, access: Hit) -> tuple[int, ...]:
        """The return addresses its stack record is made of."""
        return access.pcs[self.IRQ_SKIPPED:] if access.op == "irq" else access.pcs

    def _handler(self, access: Hit) -> str | None:
        """The function that handled ``access`` (``"??"`` unknown); ``None`` when it is of
        no region or device of the run."""
        if isinstance(access, ExitHit):
            return "exit" if self.exits is not None else None
        if isinstance(access, DmaHit):
            return "dma"
        if access.op == "irq" or isinstance(access, MessageHit):
            device = self.devices.get(access.region)
            return "irq" if device is not None and device.device is None else None
        if access.space == "pci-config":
            device = self.devices.get(access.region)
            return None if device is None else device.handlers.get(access.op) or "??"
        region = self.regions.get(access.region)
        return None if region is None else region.handlers.get(access.op, "??")

    def records(
        self,
        accesses: Iterable[Hit],
        symbolize: Callable[[tuple[int, ...]], tuple[Frame, ...]],
        thread_of: Callable[[int], str | None] = lambda sp: None,
    ) -> Iterator[Access | Dma | Exit | Irq | Stack]:
        """Stack records (each before its first use), access, exit and irq records, in hit
        order; an access to a region not in ``regions`` is left out (the decoder kept only
        those), and so is an INTx change another path than ``pci_set_irq`` made, and an
        exit :attr:`exits` does not record."""
        for access in accesses:
            handler = self._handler(access)
            if handler is None:
                continue
            if isinstance(access, ExitHit):
                yield from self._exit(access, symbolize, thread_of)
                continue
            if isinstance(access, MessageHit):
                yield from self._message(access, symbolize, thread_of)
                continue
            if isinstance(access, DmaHit):
                yield from self._dma(access, symbolize, thread_of)
                continue
            irq = access.op == "irq"
            if irq:
                frames = symbolize(access.pcs)
                callers = tuple(f.func for f in frames[1 : 1 + len(self.IRQ_PATH)])
                if callers != self.IRQ_PATH:
                    self.irq_other_paths += 1
                    continue
            t = self._t(access.us)
            config = access.space == "pci-config"
            sid, new = self._stack_id((handler, self._path(access)))
            if new:
                if irq:
                    yield Stack(sid, frames[self.IRQ_SKIPPED:])
                else:
                    # A config tracepoint sits in pci_host_config_*_common itself: its own
                    # frame comes first, as the breakpoint collector's config stacks begin.
                    head = () if config else (Frame(handler),)
                    frames = symbolize(access.pcs)
                    self.facts[sid] = _facts(frames)
                    yield Stack(sid, (*head, *frames))
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
            thread = thread_of(access.sp)
            exit_record, coalesced = self._exit_of(sid, thread)
            addr = None
            if exit_record is not None and not config:
                # The same handler can serve a port I/O BAR and a memory BAR (an alias):
                # the exit says which one this access came through, as in the breakpoint
                # collector's records.
                space = "pio" if exit_record.reason == "KVM_EXIT_IO" else "mmio"
                addr = exit_record.phys_addr if space == "mmio" else exit_record.port
            yield Access(
                seq=self.next_seq,
                op="read" if access.op == "read" else "write",
                space=space,
                offset=access.offset,
                size=access.size,
                value=access.value,
                region=name,
                handler=handler,
                exit_seq=None if exit_record is None else exit_record.seq,
                addr=addr,
                stack=sid,
                thread=thread,
                vcpu=self.vcpu_of.get(thread),
                coalesced=True if coalesced else None,
                device=device,
                t=t,
            )
            self.next_seq += 1

    def _exit_of(self, sid: str, thread: str | None) -> tuple[Exit | None, bool]:
        """The exit an access on stack ``sid`` came from (its thread's last, when the
        access ran under ``kvm_cpu_exec``), and whether QEMU replayed it from the
        coalesced-MMIO ring (then it came from no exit of its own)."""
        facts = self.facts.get(sid)
        if self.exits is None or facts is None:
            return None, False
        if facts.coalesced:  # on whichever thread flushed the ring
            return None, True
        return (self.last_exit.get(thread) if facts.under_kvm else None), False

    def _message(
        self,
        hit: MessageHit,
        symbolize: Callable[[tuple[int, ...]], tuple[Frame, ...]],
        thread_of: Callable[[int], str | None],
    ) -> Iterator[Irq | Stack]:
        """One MSI or MSI-X interrupt's records (its stack first, if new), as the breakpoint
        collector writes them: the stack from ``msi_notify``/``msix_notify`` on."""
        t = self._t(hit.us)
        sid = yield from self._stack("irq", hit.pcs, symbolize)  # as new_stacks keys it
        yield Irq(seq=self.next_seq, level=1, stack=sid, t=t, thread=thread_of(hit.sp),
                  **_message_fields(hit))  # fmt: skip
        self.next_seq += 1

    def _dma(
        self,
        hit: DmaHit,
        symbolize: Callable[[tuple[int, ...]], tuple[Frame, ...]],
        thread_of: Callable[[int], str | None],
    ) -> Iterator[Dma | Stack]:
        """One DMA copy's records (its stack first, if new), as the breakpoint collector
        writes them: the bytes capped (``truncated`` past the cap), the stack from
        ``dma_memory_rw_relaxed`` on (at its call of ``address_space_rw``, where the
        breakpoint collector's begins at its return)."""
        t = self._t(hit.us)
        sid = yield from self._stack("dma", hit.pcs, symbolize)
        data = None if hit.data is None else hit.data.hex()
        yield Dma(seq=self.next_seq, op="write" if hit.op == "write" else "read",
                  addr=hit.addr, size=hit.size, data=data,
                  truncated=hit.data is not None and hit.size > len(hit.data),
                  api=DMA_API, stack=sid, t=t, thread=thread_of(hit.sp))  # fmt: skip
        self.next_seq += 1

    def _t(self, us: int | None) -> float | None:
        """A hit's ``t``: seconds from the run's first stamped hit (this one, if first)."""
        if self.start_us is None and us is not None:
            self.start_us = us
        start_us = self.start_us
        return None if us is None or start_us is None else (us - start_us) / 1e6

    def _stack_id(self, key: tuple[str, tuple[int, ...]]) -> tuple[str, bool]:
        """The stack id of ``key`` (a handler and a path), and whether it is new."""
        sid = self.stack_ids.get(key)
        if sid is not None:
            return sid, False
        sid = self.stack_ids[key] = f"s{len(self.stack_ids) + 1}"
        return sid, True

    def _stack(
        self,
        handler: str,
        pcs: tuple[int, ...],
        symbolize: Callable[[tuple[int, ...]], tuple[Frame, ...]],
    ) -> Generator[Stack, None, str]:
        """The stack id of ``pcs`` under ``handler``; yields its stack record (the frames
        ``symbolize`` gives, as they are) first when it is new."""
        sid, new = self._stack_id((handler, pcs))
        if new:
            yield Stack(sid, symbolize(pcs))
        return sid

    def _exit(
        self,
        hit: ExitHit,
        symbolize: Callable[[tuple[int, ...]], tuple[Frame, ...]],
        thread_of: Callable[[int], str | None],
    ) -> Iterator[Exit | Stack]:
        """One exit's records (its stack first, if new), as the breakpoint collector
        chooses and writes them."""
        assert self.exits is not None
        thread = thread_of(hit.sp)
        self.vcpu_of[thread] = hit.vcpu
        fields, truncated = exit_fields(hit.run, hit.io_data)
        if fields["reason"] not in self.exits.labels:
            self.exits_other_reasons += 1
            return
        if self.exits.quiet(fields.get("port")):
            self.quiet_exits += 1
            self.last_exit[thread] = None
            return
        self.exits_without_data += truncated
        t = self._t(hit.us)
        sid = yield from self._stack("exit", hit.pcs, symbolize)
        record = Exit(seq=self.next_seq, vcpu=hit.vcpu, stack=sid, t=t, thread=thread, **fields)
        self.next_seq += 1
        self.last_exit[thread] = record
        yield record


def _message_fields(hit: MessageHit) -> dict[str, Any]:
    """An MSI or MSI-X ``irq`` record's line and message, read from the bytes collected as
    the breakpoint collector reads them (gdbscripts/qtrace_gdb/irq.py): MSI-X from the
    vector's table entry (masked by its control bit or the function mask; its pending bit),
    MSI from the capability (a 64-bit address moves the data; the vector is added to it)."""
    if hit.kind == "msix":
        lo, hi, data, control = struct.unpack_from("<IIII", hit.message)
        pending = hit.pending_byte or 0
        return {
            "line": f"MSI-X:{hit.vector}",
            "address": (hi << 32) | lo,
            "data": data,
            "masked": bool(control & MSIX_VECTOR_MASKED) or hit.function_masked,
            "pending": bool(pending & (1 << (hit.vector % 8))),
        }
    flags, lo = struct.unpack_from("<HI", hit.message, 2)
    is_64 = bool(flags & MSI_FLAGS_64BIT)
    hi = struct.unpack_from("<I", hit.message, 8)[0] if is_64 else 0
    (data,) = struct.unpack_from("<H", hit.message, 12 if is_64 else 8)
    return {"line": f"MSI:{hit.vector}", "address": (hi << 32) | lo, "data": data + hit.vector}


def _facts(frames: tuple[Frame, ...]) -> _StackFacts:
    functions = {f.func for f in frames}
    return _StackFacts(KVM_EXEC in functions, COALESCED_FLUSH in functions)


def fast_records(
    accesses: list[Hit],
    regions: Mapping[int, RegionOf],
    symbolize: Callable[[tuple[int, ...]], tuple[Frame, ...]],
    thread_of: Callable[[int], str | None] = lambda sp: None,
    first_seq: int = 1,
) -> Iterator[Access | Dma | Exit | Irq | Stack]:
    """The records of a whole run's accesses at once (:class:`RecordMaker`)."""
    return RecordMaker(regions, first_seq).records(accesses, symbolize, thread_of)

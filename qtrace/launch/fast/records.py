"""Decoded fast-run accesses as ``qtrace-trace/1`` records, so ``show``, ``report``,
``diff`` and ``verify`` read a fast capture like any other.

Stacks are deduplicated by the handler and the exact list of return addresses, and each
distinct one is symbolized once (``symbolize``: gdb on the image's binary, or a table in
tests). The fast collector's tracepoints sit in the generic accessor, one call outside the
handler, so a stack's first frame is the handler the region's ops name (function only: no
line or address, the agent did not stop inside it) and the second is the accessor at its
call, followed by the unwound callers, as the breakpoint collector's stacks go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from qtrace.launch.fast.decode import Access as Decoded
from qtrace.trace.schema import Access, Frame, Stack

__all__ = ["RecordMaker", "RegionOf", "fast_records"]


@dataclass(frozen=True)
class RegionOf:
    """A MemoryRegion of the device, as the header's ``regions`` name it, with the
    functions of its ops (``read``/``write`` -> function)."""

    name: str
    space: str
    handlers: Mapping[str, str] = field(default_factory=dict)


class RecordMaker:
    """Turns a run's decoded accesses into records, one segment after another (a long run
    drains its buffer several times, :mod:`.run`): the stack ids, the sequence numbers and
    the run's first timestamp carry from one segment to the next.

    ``thread_of`` names the thread whose stack holds an access's stack pointer."""

    def __init__(self, regions: Mapping[int, RegionOf], first_seq: int = 1) -> None:
        self.regions = regions
        self.stack_ids: dict[tuple[str, tuple[int, ...]], str] = {}
        self.next_seq = first_seq
        self.start_us: int | None = None  # ``t`` counts from the first hit the agent stamped

    def new_stacks(self, accesses: Iterable[Decoded]) -> list[tuple[int, ...]]:
        """The return-address lists among ``accesses`` that :meth:`records` will make a
        new stack record of (a new handler and path), each once: what it will ask
        ``symbolize`` for."""
        out: dict[tuple[int, ...], None] = {}
        for access in accesses:
            region = self.regions.get(access.region)
            if region is None:
                continue
            if (region.handlers.get(access.op, "??"), access.pcs) not in self.stack_ids:
                out[access.pcs] = None
        return list(out)

    def records(
        self,
        accesses: Iterable[Decoded],
        symbolize: Callable[[tuple[int, ...]], tuple[Frame, ...]],
        thread_of: Callable[[int], str | None] = lambda sp: None,
    ) -> Iterator[Access | Stack]:
        """Stack records (each before its first use) and access records, in hit order; an
        access to a region not in ``regions`` is left out (the decoder kept only those)."""
        stack_ids = self.stack_ids
        for access in accesses:
            region = self.regions.get(access.region)
            if region is None:
                continue
            if self.start_us is None and access.us is not None:
                self.start_us = access.us
            handler = region.handlers.get(access.op, "??")
            key = (handler, access.pcs)
            sid = stack_ids.get(key)
            if sid is None:
                sid = f"s{len(stack_ids) + 1}"
                stack_ids[key] = sid
                yield Stack(sid, (Frame(handler), *symbolize(access.pcs)))
            start_us = self.start_us
            yield Access(
                seq=self.next_seq,
                op="read" if access.op == "read" else "write",
                space="pio" if region.space == "pio" else "mmio",
                offset=access.offset,
                size=access.size,
                value=access.value,
                region=region.name,
                handler=handler,
                stack=sid,
                thread=thread_of(access.sp),
                t=None if access.us is None or start_us is None else (access.us - start_us) / 1e6,
            )
            self.next_seq += 1


def fast_records(
    accesses: list[Decoded],
    regions: Mapping[int, RegionOf],
    symbolize: Callable[[tuple[int, ...]], tuple[Frame, ...]],
    thread_of: Callable[[int], str | None] = lambda sp: None,
    first_seq: int = 1,
) -> Iterator[Access | Stack]:
    """The records of a whole run's accesses at once (:class:`RecordMaker`)."""
    return RecordMaker(regions, first_seq).records(accesses, symbolize, thread_of)

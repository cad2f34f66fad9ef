"""Decoded fast-run accesses as ``qtrace-trace/1`` records, so ``show``, ``report``,
``diff`` and ``verify`` read a fast capture like any other.

Stacks are deduplicated by their exact list of return addresses, as the breakpoint
collector does, and each distinct one is symbolized once (``symbolize``: gdb on the image's
binary, or a table in tests). The innermost frame of a read is its handler's entry
tracepoint, not the ``ret`` the breakpoint collector stops at: same function, another line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from qtrace.launch.fast.decode import Access as Decoded
from qtrace.trace.schema import Access, Frame, Stack

__all__ = ["RegionOf", "fast_records"]


@dataclass(frozen=True)
class RegionOf:
    """The region a handler's opaque belongs to, as the header's ``regions`` name it."""

    name: str
    space: str


def fast_records(
    accesses: list[Decoded],
    regions: dict[tuple[int, str], RegionOf],
    symbolize: Callable[[tuple[int, ...]], tuple[Frame, ...]],
    first_seq: int = 1,
) -> Iterator[Access | Stack]:
    """Stack records (each before its first use) and access records, in hit order.

    ``regions`` maps (opaque, handler) to its region; an access without one is left out
    (the caller counts what it left out). A read whose value frame was lost is left out
    too: it has no value to record, and the self-checks count it.
    """
    stack_ids: dict[tuple[int, ...], str] = {}
    seq = first_seq
    for access in accesses:
        region = regions.get((access.opaque, access.handler))
        if region is None or access.value is None:
            continue
        sid = stack_ids.get(access.pcs)
        if sid is None:
            sid = f"s{len(stack_ids) + 1}"
            stack_ids[access.pcs] = sid
            yield Stack(sid, symbolize(access.pcs))
        yield Access(
            seq=seq,
            op="read" if access.op == "read" else "write",
            space="pio" if region.space == "pio" else "mmio",
            offset=access.offset,
            size=access.size,
            value=access.value,
            region=region.name,
            handler=access.handler,
            stack=sid,
        )
        seq += 1

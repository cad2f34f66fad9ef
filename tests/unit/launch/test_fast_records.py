"""Fast-run accesses written as trace records: stacks once per distinct stack."""

from __future__ import annotations

from qtrace.launch.fast.decode import Access as Decoded
from qtrace.launch.fast.records import RegionOf, fast_records
from qtrace.trace.schema import Access, Frame, Stack


def test_stacks_are_emitted_once_and_lost_values_are_left_out() -> None:
    pcs_a, pcs_b = (1, 2, 3), (1, 2, 4)
    decoded = [
        Decoded("read", "dev_read", 7, 8, 4, 0x80080783, pcs_a, 0),
        Decoded("write", "dev_write", 7, 0xD0, 4, 0x1F, pcs_b, 1),
        Decoded("read", "dev_read", 7, 8, 4, 5, pcs_a, 2),
        Decoded("read", "dev_read", 7, 0xC0, 4, None, pcs_a, 3),
        Decoded("read", "dev_read", 9, 0, 4, 1, pcs_a, 4),
    ]
    regions = {(7, "dev_read"): RegionOf("dev-mmio", "mmio"),
               (7, "dev_write"): RegionOf("dev-mmio", "mmio")}
    calls: list[tuple[int, ...]] = []

    def symbolize(pcs: tuple[int, ...]) -> tuple[Frame, ...]:
        calls.append(pcs)
        return tuple(Frame(func=f"f{pc}", pc=hex(pc)) for pc in pcs)

    out = list(fast_records(decoded, regions, symbolize))
    kinds = [(type(r).__name__, r.id if isinstance(r, Stack) else r.stack) for r in out]
    assert kinds == [("Stack", "s1"), ("Access", "s1"), ("Stack", "s2"), ("Access", "s2"),
                     ("Access", "s1")]
    assert calls == [pcs_a, pcs_b]
    accesses = [r for r in out if isinstance(r, Access)]
    assert [a.seq for a in accesses] == [1, 2, 3] and accesses[0].value == 0x80080783

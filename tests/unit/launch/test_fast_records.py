"""Fast-run accesses written as trace records: stacks once per handler and distinct stack,
each starting at the handler the region's ops name."""

from __future__ import annotations

from qtrace.launch.fast.decode import Access as Decoded
from qtrace.launch.fast.records import RegionOf, fast_records
from qtrace.trace.schema import Access, Frame, Stack

MMIO, IO = 0x100, 0x200
REGIONS = {
    MMIO: RegionOf("dev-mmio", "mmio", {"read": "dev_read", "write": "dev_write"}),
    IO: RegionOf("dev-io", "pio", {"read": "dev_io_read", "write": "dev_io_write"}),
}


def test_stacks_are_emitted_once_per_handler_and_return_addresses() -> None:
    pcs_a, pcs_b = (1, 2, 3), (1, 2, 4)
    decoded = [
        Decoded("read", MMIO, 8, 4, 0x80080783, pcs_a, 0),
        Decoded("write", MMIO, 0xD0, 4, 0x1F, pcs_b, 1),
        Decoded("read", MMIO, 8, 4, 5, pcs_a, 2),
        Decoded("read", IO, 0, 4, 1, pcs_a, 3),  # same path, another handler
        Decoded("read", 0x999, 0, 4, 1, pcs_a, 4),  # not the device's
    ]
    calls: list[tuple[int, ...]] = []

    def symbolize(pcs: tuple[int, ...]) -> tuple[Frame, ...]:
        calls.append(pcs)
        return tuple(Frame(func=f"f{pc}", pc=hex(pc)) for pc in pcs)

    out = list(fast_records(decoded, REGIONS, symbolize))
    kinds = [(type(r).__name__, r.id if isinstance(r, Stack) else r.stack) for r in out]
    assert kinds == [("Stack", "s1"), ("Access", "s1"), ("Stack", "s2"), ("Access", "s2"),
                     ("Access", "s1"), ("Stack", "s3"), ("Access", "s3")]  # fmt: skip
    stacks = [r for r in out if isinstance(r, Stack)]
    assert [s.frames[0].func for s in stacks] == ["dev_read", "dev_write", "dev_io_read"]
    assert stacks[0].frames[0].pc is None and stacks[0].frames[1].func == "f1"
    accesses = [r for r in out if isinstance(r, Access)]
    assert [a.seq for a in accesses] == [1, 2, 3, 4]
    assert (accesses[3].space, accesses[3].region, accesses[3].handler) == ("pio", "dev-io",
                                                                           "dev_io_read")

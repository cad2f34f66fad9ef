"""Which access each irq/DMA record belongs to (qtrace.verify.events)."""

from __future__ import annotations

from pathlib import Path

from verify_traces import TraceBuilder

from qtrace.trace import Access, Dma, Irq, read_trace
from qtrace.verify.events import Step, attribute, handler_ops


def _shape(steps: list[Step]) -> list[tuple[int | None, list[int]]]:
    return [(s.access.seq if s.access else None, [e.seq for e in s.events]) for s in steps]


def test_handler_ops_come_from_the_header_and_the_accesses(tmp_path: Path) -> None:
    trace = read_trace(TraceBuilder(events=True).read(0x8, 0).save(tmp_path / "t.jsonl"))
    assert handler_ops(trace) == {"e1000_mmio_read": "read", "e1000_mmio_write": "write"}


def test_events_go_to_the_handler_they_ran_in(tmp_path: Path) -> None:
    t = TraceBuilder(events=True)
    t.write(0x3818, 1)  # 1
    t.dma_read(0x1000, b"\0" * 16, stack="s-write").irq(1, "s-write")  # 2, 3: in the TDT write
    t.irq(1, "s-timer")  # 4: no handler on the stack
    t.irq(0, "s-read").read(0x00C0, 3)  # 5 in the read recorded as 6
    t.irq(1, "s-write")  # 7: in a write handler, but the last access was a read
    steps = list(attribute(read_trace(t.save(tmp_path / "t.jsonl"))))
    assert _shape(steps) == [(1, [2, 3]), (None, [4]), (6, [5]), (None, [7])]


def test_events_without_stacks_dma_to_the_access_before_irq_asynchronous(
    tmp_path: Path,
) -> None:
    t = TraceBuilder(events=True).write(0x3818, 1).dma_write(0x100C, b"\1\0\0\0").irq(1)
    t.read(0x00C0, 1)
    steps = list(attribute(read_trace(t.save(tmp_path / "t.jsonl"))))
    assert _shape(steps) == [(1, [2]), (None, [3]), (4, [])]
    assert isinstance(steps[0].events[0], Dma) and isinstance(steps[1].events[0], Irq)
    assert isinstance(steps[2].access, Access)

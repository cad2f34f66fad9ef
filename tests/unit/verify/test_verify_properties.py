"""Properties of the replay: a trace the model itself produced always matches, and a
single altered read value is caught exactly once, at that read."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from verify_traces import TraceBuilder

from qtrace.devices.e1000.model import E1000, MAC_REGISTERS
from qtrace.trace import Access
from qtrace.devices.e1000.verify import VOLATILE
from qtrace.verify import verify_file

# Registers to draw from; bits a volatile mask sets aside (ICR's LSC and RX causes) are
# never flipped, so any flipped bit must be reported.
_OFFSETS = st.sampled_from(
    [0x00C0, 0x00C8, 0x00D0, 0x00D8, 0x0100, 0x5200, 0x5404, 0x0014, 0x3810, 0x40D4]
)
_OPS = st.lists(
    st.tuples(st.booleans(), _OFFSETS, st.integers(0, 0xFFFFFFFF)), min_size=1, max_size=25
)


def _record(ops: list[tuple[bool, int, int]]) -> tuple[TraceBuilder, list[int]]:
    """Run ``ops`` on a model and record what it answered, as QEMU would have."""
    dev = E1000()
    trace, read_seqs = TraceBuilder(), []
    for is_write, offset, value in ops:
        if is_write:
            dev.mmio_write(offset, 4, value)
            trace.write(offset, value)
        else:
            trace.read(offset, dev.mmio_read(offset, 4))
            read_seqs.append(trace.seq)
    return trace, read_seqs


@settings(max_examples=40)
@given(_OPS)
def test_a_trace_of_the_model_replays_without_mismatch(ops: list[tuple[bool, int, int]]) -> None:
    trace, reads = _record(ops)
    with tempfile.TemporaryDirectory() as tmp:
        result = verify_file(trace.save(Path(tmp) / "t.jsonl"), "e1000")
    assert result.ok
    assert result.reads_compared == result.matches == len(reads)


@settings(max_examples=40)
@given(_OPS, st.data())
def test_one_altered_read_is_one_mismatch(
    ops: list[tuple[bool, int, int]], data: st.DataObject
) -> None:
    trace, reads = _record(ops + [(False, 0x00D0, 0)])
    seq = data.draw(st.sampled_from(reads))
    index, original = next(
        (i, r) for i, r in enumerate(trace.records) if isinstance(r, Access) and r.seq == seq
    )
    ignore = 0
    for rule in VOLATILE:
        if rule.kind == "mask" and rule.register == MAC_REGISTERS.name_at(original.offset):
            ignore |= rule.ignore
    flip = data.draw(st.integers(1, 0xFFFFFFFF).map(lambda f: f & ~ignore).filter(bool))
    index, original = next(
        (i, r) for i, r in enumerate(trace.records) if isinstance(r, Access) and r.seq == seq
    )
    trace.records[index] = dataclasses.replace(original, value=original.value ^ flip)
    with tempfile.TemporaryDirectory() as tmp:
        result = verify_file(trace.save(Path(tmp) / "t.jsonl"), "e1000")
    [m] = result.mismatches
    assert (m.seq, m.expected, m.actual) == (seq, original.value ^ flip, original.value)
    assert m.fields

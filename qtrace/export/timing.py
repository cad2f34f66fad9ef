"""When each record happened, in microseconds, for the timeline exports.

Records carry ``t`` (seconds since the collector opened the trace; TRACE_FORMAT.md). Traces
made before that field have none: their records are placed in ``seq`` order
:data:`SYNTHETIC_STEP_US` apart, and the export says so in its metadata
(:attr:`Timing.note`). A trace in which some records lack ``t`` is treated as having none,
so one timeline never mixes measured and made-up times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qtrace.trace import Access, Dma, Exit, Irq

__all__ = ["SYNTHETIC_STEP_US", "Timing", "timing_of"]

SYNTHETIC_STEP_US = 100.0
"""Spacing of consecutive ``seq`` numbers in a trace without ``t``."""


@dataclass(frozen=True)
class Timing:
    """How a trace's records are placed in time."""

    measured: bool
    note: str

    def ts_us(self, record: Exit | Access | Irq | Dma) -> float:
        """The record's time in microseconds (nanosecond resolution)."""
        if self.measured and record.t is not None:
            return round(record.t * 1e6, 3)
        return record.seq * SYNTHETIC_STEP_US


def timing_of(records: Sequence[Exit | Access | Irq | Dma]) -> Timing:
    """Measured times when every record has ``t``, else synthetic ones (and why)."""
    if records and all(r.t is not None for r in records):
        return Timing(
            True,
            "measured: each record's t (seconds since the collector opened the trace, "
            "microsecond resolution); gdb's own stop time is in it, so it orders and spaces "
            "events, it does not time QEMU",
        )
    missing = sum(r.t is None for r in records)
    return Timing(
        False,
        f"synthetic: {missing} of {len(records)} records have no t (a trace made before the "
        f"field existed); records are placed in seq order, {SYNTHETIC_STEP_US:g} us apart",
    )

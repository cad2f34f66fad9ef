"""When each record happened, in microseconds, for the timeline exports.

Records carry ``t`` (seconds since the collector opened the trace; TRACE_FORMAT.md). Traces
made before that field have none: their records are placed in ``seq`` order
:data:`SYNTHETIC_STEP_US` apart, and the export says so in its metadata
(:attr:`Timing.note`). A trace is measured when every exit, access, irq and dma record has
``t``; otherwise all of it is synthetic, so one timeline never mixes measured and made-up
times. ``async`` records (the device's work off the register path) are written without
``t`` by collectors that do not time them: in a measured trace each is placed 1 ns after
the record before it in ``seq`` order, and the note says how many were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qtrace.trace import Access, Async, Dma, Exit, Irq

__all__ = ["SYNTHETIC_STEP_US", "Timing", "timing_of"]

SYNTHETIC_STEP_US = 100.0
"""Spacing of consecutive ``seq`` numbers in a trace without ``t``."""

_AFTER_US = 0.001

Timed = Exit | Access | Irq | Dma | Async


@dataclass(frozen=True)
class Timing:
    """How a trace's records are placed in time: ``times_us[i]`` is the time of the i-th
    record given to :func:`timing_of`, in microseconds (nanosecond resolution)."""

    measured: bool
    note: str
    times_us: tuple[float, ...]


def timing_of(records: Sequence[Timed]) -> Timing:
    """Measured times when every exit, access, irq and dma record has ``t``, else synthetic
    ones (and why). ``records`` are in trace (``seq``) order."""
    core = [r for r in records if not isinstance(r, Async)]
    if not core or any(r.t is None for r in core):
        missing = sum(r.t is None for r in core)
        return Timing(
            False,
            f"synthetic: {missing} of {len(core)} exit, access, irq and dma records have no t "
            f"(a trace made before the field existed); records are placed in seq order, "
            f"{SYNTHETIC_STEP_US:g} us apart",
            tuple(r.seq * SYNTHETIC_STEP_US for r in records),
        )
    times: list[float] = []
    placed = 0
    for record in records:
        if record.t is not None:
            times.append(round(record.t * 1e6, 3))
        else:
            placed += 1
            times.append(round((times[-1] if times else 0.0) + _AFTER_US, 3))
    note = (
        "measured: each record's t (seconds since the collector opened the trace, "
        "microsecond resolution); gdb's own stop time is in it, so it orders and spaces "
        "events, it does not time QEMU"
    )
    if placed:
        note += f"; {placed} async records without t are placed 1 ns after the record before them"
    return Timing(True, note, tuple(times))

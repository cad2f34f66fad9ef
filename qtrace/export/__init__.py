"""Exports of a capture for the viewers people already use.

Three formats, one module each, all pure functions from a :class:`~qtrace.trace.Trace` (the
``qtrace-trace/1`` reader's result) to the text of a file:

* :mod:`~qtrace.export.perfetto`: the Chrome JSON trace event format, which Perfetto UI and
  Chromium's DevTools Performance panel open: one track per host thread, exits and accesses as
  slices, interrupts and DMA as instants, flow arrows from an exit to the accesses it caused.
* :mod:`~qtrace.export.folded`: Brendan Gregg's folded stacks (``flamegraph.pl``, speedscope's
  import): one line per distinct access stack, weighted by its number of accesses.
* :mod:`~qtrace.export.speedscope`: speedscope's own JSON file format, one ``sampled`` profile
  of the accesses in capture order.

What they share sits beside them: :mod:`~qtrace.export.threads` (which host thread a record
ran on, so which track), :mod:`~qtrace.export.timing` (the records' timestamps, or a
synthetic spacing for traces made before the ``t`` field) and :mod:`~qtrace.export.stacks`
(frames as ``function (file:line)``).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from qtrace.export import folded, perfetto, speedscope
from qtrace.export.timing import timing_of
from qtrace.trace import Access, Async, Dma, Exit, Irq, Trace

__all__ = ["ExportFormat", "export_trace", "default_file_name", "timestamps_note"]


class ExportFormat(StrEnum):
    """The formats ``qtrace export --format`` writes."""

    PERFETTO = "perfetto"
    FOLDED = "folded"
    SPEEDSCOPE = "speedscope"


_RENDERERS: dict[ExportFormat, Callable[[Trace], str]] = {
    ExportFormat.PERFETTO: perfetto.render,
    ExportFormat.FOLDED: folded.render,
    ExportFormat.SPEEDSCOPE: speedscope.render,
}

_FILE_NAMES: dict[ExportFormat, str] = {
    ExportFormat.PERFETTO: "trace.perfetto.json",
    ExportFormat.FOLDED: "trace.folded",
    ExportFormat.SPEEDSCOPE: "trace.speedscope.json",
}


def export_trace(trace: Trace, fmt: ExportFormat) -> str:
    """The text of ``trace`` in ``fmt`` (JSON or folded lines, ending with a newline)."""
    return _RENDERERS[fmt](trace)


def default_file_name(fmt: ExportFormat) -> str:
    """Where ``qtrace export`` writes ``fmt`` in the capture directory without ``--out``."""
    return _FILE_NAMES[fmt]


def timestamps_note(trace: Trace) -> str:
    """Whether a timeline of ``trace`` has measured or synthetic times, and why (the
    ``otherData.timestamps`` of its perfetto export)."""
    records = [r for r in trace.records if isinstance(r, (Exit, Access, Irq, Dma, Async))]
    return timing_of(records).note

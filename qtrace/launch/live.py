"""Following a trace (and QEMU's log) while they are written: the capture's one reader.

:class:`TraceTail` reads only complete lines, each once, validated by the trace codec's
:func:`~qtrace.trace.decode_line`; it keeps what the capture needs afterwards (counters for
the live display and the summary, the stacks for the source snippets, the end record), so
the finished trace is never read again. A line being written is picked up on the next
poll. :class:`TextTail` does the same for a text log.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from qtrace.errors import TraceFormatError
from qtrace.launch.kvm_error import KvmInternalError, from_exit_record
from qtrace.trace import Access, Dma, End, Exit, Irq, Stack, decode_line

__all__ = ["LiveStats", "TraceTail", "TextTail", "INTERNAL_ERROR_EXIT"]

logger = logging.getLogger(__name__)

INTERNAL_ERROR_EXIT = "KVM_EXIT_INTERNAL_ERROR"


@dataclass
class LiveStats:
    """What the capture has recorded so far."""

    records: int = 0
    accesses: int = 0
    exits: int = 0
    stacks: int = 0
    irqs: int = 0
    dmas: int = 0
    per_register: Counter[tuple[str, int]] = field(default_factory=Counter)
    exit_reasons: Counter[str] = field(default_factory=Counter)
    ended: End | None = None
    kvm_error: KvmInternalError | None = None
    first_bad_line: TraceFormatError | None = None


class TraceTail:
    """Incrementally reads a growing trace.jsonl (each line once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stats = LiveStats()
        self.stack_records: list[Stack] = []
        self._offset = 0
        self._line = 0

    def update(self) -> LiveStats:
        """Read the lines completed since the last call; returns the running counters."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return self.stats
        end = data.rfind(b"\n") + 1
        self._offset += end
        for raw in data[:end].split(b"\n")[:-1]:
            self._line += 1
            if raw.strip():
                self._take(raw.decode("utf-8", errors="replace") + "\n")
        return self.stats

    def _take(self, line: str) -> None:
        stats = self.stats
        try:
            record = decode_line(self.path, self._line, line)
        except TraceFormatError as exc:
            # A collector bug, not a reason to stop capturing: counted out and reported.
            if stats.first_bad_line is None:
                stats.first_bad_line = exc
                logger.warning("%s", exc)
            return
        stats.records += 1
        if isinstance(record, Access):
            stats.accesses += 1
            stats.per_register[(record.space, record.offset)] += 1
        elif isinstance(record, Exit):
            stats.exits += 1
            stats.exit_reasons[record.reason] += 1
            if record.reason == INTERNAL_ERROR_EXIT and stats.kvm_error is None:
                # The typed record keeps only the schema's fields; the collector adds
                # run->internal's words to this one (kvm_exit.py).
                stats.kvm_error = from_exit_record(json.loads(line))
        elif isinstance(record, Stack):
            stats.stacks += 1
            self.stack_records.append(record)
        elif isinstance(record, Irq):
            stats.irqs += 1
        elif isinstance(record, Dma):
            stats.dmas += 1
        elif isinstance(record, End):
            stats.ended = record


class TextTail:
    """Incrementally reads a growing text file (QEMU's log), keeping its last ``keep_chars``."""

    def __init__(self, path: Path, keep_chars: int = 65536) -> None:
        self.path = path
        self.text = ""
        self._offset = 0
        self._keep = keep_chars

    def update(self) -> str:
        """Append what was written since the last call; returns the text kept."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return self.text
        self._offset += len(data)
        if data:
            self.text = (self.text + data.decode("utf-8", errors="replace"))[-self._keep :]
        return self.text

"""Following a trace while it is written: counters for the live display and the summary.

Reads only complete lines, so a line being written is picked up on the next poll.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LiveStats", "TraceTail"]


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
    ended: dict[str, object] | None = None


class TraceTail:
    """Incrementally reads a growing trace.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stats = LiveStats()
        self._offset = 0

    def update(self) -> LiveStats:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return self.stats
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            if line.strip():
                self._count(json.loads(line))
        return self.stats

    def _count(self, record: dict[str, object]) -> None:
        stats = self.stats
        stats.records += 1
        kind = record.get("type")
        if kind == "access":
            stats.accesses += 1
            stats.per_register[(str(record.get("space")), int(record.get("offset", 0)))] += 1  # type: ignore[call-overload]
        elif kind == "exit":
            stats.exits += 1
            stats.exit_reasons[str(record.get("reason"))] += 1
        elif kind == "stack":
            stats.stacks += 1
        elif kind == "irq":
            stats.irqs += 1
        elif kind == "dma":
            stats.dmas += 1
        elif kind == "end":
            stats.ended = dict(record)

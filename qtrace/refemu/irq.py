"""An observable interrupt line: a level plus listeners told of every change.

A PCI function's INTx line is a level (a NIC's: ``(ICR & IMS) != 0``). Tests and the
replay want to see both the current level and each edge, and a later differential runner
wants to compare edges with QEMU's ``irq`` trace records, so the line is a small object
rather than a bool.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["IrqLine"]


class IrqLine:
    """A level-triggered line; ``subscribe`` to hear of every level change."""

    def __init__(self, name: str = "INTx") -> None:
        self.name = name
        self._level = False
        self._listeners: list[Callable[[bool], None]] = []
        self.edges = 0

    @property
    def level(self) -> bool:
        """True while the line is asserted."""
        return self._level

    def set(self, level: bool) -> None:
        """Drive the line; listeners run only when the level changes."""
        if level == self._level:
            return
        self._level = level
        self.edges += 1
        for listener in list(self._listeners):
            listener(level)

    def subscribe(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``listener(level)`` on each change; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def __repr__(self) -> str:
        return f"IrqLine({self.name!r}, level={int(self._level)})"

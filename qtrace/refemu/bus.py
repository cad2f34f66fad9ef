"""Address-space dispatch: which device window owns an address.

A PC has two CPU-visible spaces, memory and port I/O. PCI devices claim windows in them
when their BARs are programmed and decoding is enabled, and give them up again when the
BAR moves or decoding is switched off. :class:`AddressSpace` keeps those windows and
routes an access to the owner with the offset inside the window, which is exactly the
``offset`` a trace records. What happens to an access nobody owns is the caller's rule
(RAM for memory, all-ones for port I/O), so it is returned as ``None`` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["AddressSpace", "CallRegion", "Region", "Window"]


class Region(Protocol):
    """Something that answers reads and writes at offsets inside its window."""

    def read(self, offset: int, size: int) -> int:
        """Value of a ``size``-byte read at ``offset``."""
        ...

    def write(self, offset: int, size: int, value: int) -> None:
        """Handle a ``size``-byte write of ``value`` at ``offset``."""
        ...


class CallRegion:
    """A :class:`Region` made of two callables (a device's read and write methods)."""

    def __init__(
        self, read: Callable[[int, int], int], write: Callable[[int, int, int], None]
    ) -> None:
        self.read = read
        self.write = write


@dataclass(frozen=True)
class Window:
    """A claimed range ``[base, base + size_bytes)``, served by ``region``."""

    owner: str
    base: int
    size_bytes: int
    region: Region

    def contains(self, addr: int, size: int) -> bool:
        return self.base <= addr and addr + size <= self.base + self.size_bytes


class AddressSpace:
    """A named space (``memory`` or ``io``) and the device windows mapped into it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._windows: dict[str, Window] = {}

    def map(self, owner: str, base: int, size_bytes: int, region: Region) -> None:
        """Give ``owner`` the window ``[base, base+size_bytes)``, replacing its old one."""
        self._windows[owner] = Window(owner, base, size_bytes, region)

    def unmap(self, owner: str) -> None:
        """Drop ``owner``'s window, if it has one."""
        self._windows.pop(owner, None)

    def window_of(self, owner: str) -> Window | None:
        """The window ``owner`` holds now, or ``None``."""
        return self._windows.get(owner)

    def find(self, addr: int, size: int) -> Window | None:
        """The window that holds the whole access, or ``None`` when nobody does.

        Overlapping windows are a firmware bug; like a real bus the answer is then one of
        them (the one mapped first), not an error.
        """
        for window in self._windows.values():
            if window.contains(addr, size):
                return window
        return None

    def read(self, addr: int, size: int) -> int | None:
        """Route a read; ``None`` when no window holds ``addr``."""
        window = self.find(addr, size)
        return None if window is None else window.region.read(addr - window.base, size)

    def write(self, addr: int, size: int, value: int) -> bool:
        """Route a write; False when no window holds ``addr``."""
        window = self.find(addr, size)
        if window is None:
            return False
        window.region.write(addr - window.base, size, value)
        return True

    @property
    def windows(self) -> list[Window]:
        """All windows, in mapping order."""
        return list(self._windows.values())

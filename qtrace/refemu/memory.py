"""Sparse guest memory: byte-addressable, allocated a page at a time.

Devices reach guest RAM only through DMA, and tests need to plant descriptor rings and
read back what the device wrote, anywhere in a 64-bit address space, without allocating
it. Unwritten bytes read as zero, as freshly booted RAM does in QEMU.
"""

from __future__ import annotations

__all__ = ["PAGE_SIZE_BYTES", "SparseMemory"]

PAGE_SIZE_BYTES = 4096
_ADDR_LIMIT = 1 << 64


class SparseMemory:
    """Guest physical memory, stored as a dict of 4 KiB pages."""

    def __init__(self) -> None:
        self._pages: dict[int, bytearray] = {}

    def read(self, addr: int, size_bytes: int) -> bytes:
        """Return ``size_bytes`` bytes starting at guest physical ``addr``."""
        self._check(addr, size_bytes)
        out = bytearray()
        while size_bytes:
            page, off = divmod(addr, PAGE_SIZE_BYTES)
            chunk = min(size_bytes, PAGE_SIZE_BYTES - off)
            data = self._pages.get(page)
            out += data[off : off + chunk] if data is not None else bytes(chunk)
            addr += chunk
            size_bytes -= chunk
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at guest physical ``addr``."""
        self._check(addr, len(data))
        pos = 0
        while pos < len(data):
            page, off = divmod(addr + pos, PAGE_SIZE_BYTES)
            chunk = min(len(data) - pos, PAGE_SIZE_BYTES - off)
            buf = self._pages.setdefault(page, bytearray(PAGE_SIZE_BYTES))
            buf[off : off + chunk] = data[pos : pos + chunk]
            pos += chunk

    def read_int(self, addr: int, size_bytes: int) -> int:
        """A little-endian integer of ``size_bytes`` bytes at ``addr``."""
        return int.from_bytes(self.read(addr, size_bytes), "little")

    def write_int(self, addr: int, size_bytes: int, value: int) -> None:
        """Store ``value`` little-endian in ``size_bytes`` bytes at ``addr``."""
        self.write(addr, (value & ((1 << (8 * size_bytes)) - 1)).to_bytes(size_bytes, "little"))

    def clear(self) -> None:
        """Forget every page (all memory reads zero again)."""
        self._pages.clear()

    @staticmethod
    def _check(addr: int, size_bytes: int) -> None:
        if addr < 0 or size_bytes < 0 or addr + size_bytes > _ADDR_LIMIT:
            raise ValueError(f"guest range {addr:#x}+{size_bytes} is outside the 64-bit space")

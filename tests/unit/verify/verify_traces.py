"""Test helper: build small synthetic e1000 traces with the real TraceWriter."""

from __future__ import annotations

from pathlib import Path

from qtrace.trace import Access, Dma, End, Header, Record, TraceWriter
from qtrace.trace.schema import AccessOp, AccessSpace

_REGIONS = {"mmio": "e1000-mmio", "pio": "e1000-io", "pci-config": "pci-config"}


class TraceBuilder:
    """Accumulates access/DMA records with increasing ``seq`` and writes a trace file."""

    def __init__(self, device: str = "e1000") -> None:
        self.header = Header(device=device, qemu_version="10.2.2", accel="tcg")
        self.records: list[Record] = []
        self.seq = 0

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def read(
        self, offset: int, value: int, space: AccessSpace = "mmio", size: int = 4
    ) -> TraceBuilder:
        return self._access("read", offset, value, space, size)

    def write(
        self, offset: int, value: int, space: AccessSpace = "mmio", size: int = 4
    ) -> TraceBuilder:
        return self._access("write", offset, value, space, size)

    def _access(
        self, op: AccessOp, offset: int, value: int, space: AccessSpace, size: int
    ) -> TraceBuilder:
        region = _REGIONS[space]
        self.records.append(Access(self._next(), op, space, offset, size, value, region=region))
        return self

    def dma_read(self, addr: int, data: bytes) -> TraceBuilder:
        self.records.append(Dma(self._next(), "read", addr, len(data), data.hex()))
        return self

    def save(self, path: Path) -> Path:
        with TraceWriter(path.open("w", encoding="utf-8")) as writer:
            writer.write(self.header)
            writer.write_all(self.records)
            writer.write(End(status="ok", accesses=len(self.records)))
        return path


def probe_guest_trace() -> TraceBuilder:
    """What the bare-metal probe guest saw in QEMU 10.2.2 (ENVIRONMENT.md), as a trace."""
    t = TraceBuilder()
    t.read(0x00, 0x100E8086, "pci-config")
    t.read(0x10, 0xFEBC0000, "pci-config")  # SeaBIOS assigned BAR0 before the capture
    t.read(0x0008, 0x80080783)  # STATUS
    t.read(0x0000, 0x00140240)  # CTRL
    for word, data in enumerate((0x5452, 0x1200, 0x5634)):
        t.write(0x0014, word << 8 | 1)  # EERD start
        t.read(0x0014, data << 16 | word << 8 | 0x10)  # DONE, START clear, on the first poll
    t.write(0x00D0, 0x1F)
    t.read(0x00D0, 0x1F)
    t.read(0x00C0, 0)
    return t

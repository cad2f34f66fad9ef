"""Test helper: build small synthetic e1000 traces with the real TraceWriter."""

from __future__ import annotations

from pathlib import Path

from qtrace.trace import Access, Dma, End, Header, Irq, Record, TraceWriter
from qtrace.trace.schema import AccessOp, AccessSpace, Frame, Stack

_REGIONS = {"mmio": "e1000-mmio", "pio": "e1000-io", "pci-config": "pci-config"}


# Stacks as the collector records them: an event inside a register handler names it.
HANDLERS = [
    {"func": "e1000_mmio_read", "op": "read", "space": "mmio"},
    {"func": "e1000_mmio_write", "op": "write", "space": "mmio"},
]
IN_READ = Stack("s-read", (Frame("pci_set_irq"), Frame("mac_icr_read"), Frame("e1000_mmio_read")))
IN_WRITE = Stack("s-write", (Frame("pci_dma_rw"), Frame("start_xmit"), Frame("e1000_mmio_write")))
IN_TIMER = Stack("s-timer", (Frame("pci_set_irq"), Frame("e1000_autoneg_timer"), Frame("main")))


class TraceBuilder:
    """Accumulates access/DMA/irq records with increasing ``seq`` and writes a trace file.

    ``events=True`` makes the header say the irq and DMA collectors were armed and lists
    the register handlers, as a real capture's header does.
    """

    def __init__(
        self, device: str = "e1000", *, events: bool = False, argv: tuple[str, ...] = ()
    ) -> None:
        arming = {"irq": "from QEMU start", "dma": "from QEMU start"} if events else {}
        extra: dict[str, object] = {"handlers": HANDLERS} if events else {}
        self.header = Header(
            device=device, qemu_version="10.2.2", accel="tcg", argv=argv, arming=arming, extra=extra
        )
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

    def dma_read(
        self, addr: int, data: bytes, size: int | None = None, stack: str | None = None
    ) -> TraceBuilder:
        """A DMA read; ``size`` larger than ``data`` makes a truncated record."""
        size = len(data) if size is None else size
        self.records.append(
            Dma(
                self._next(),
                "read",
                addr,
                size,
                data.hex(),
                truncated=size > len(data),
                stack=stack,
            )
        )
        return self

    def dma_write(self, addr: int, data: bytes, stack: str | None = None) -> TraceBuilder:
        self.records.append(Dma(self._next(), "write", addr, len(data), data.hex(), stack=stack))
        return self

    def irq(self, level: int, stack: str | None = None) -> TraceBuilder:
        self.records.append(Irq(self._next(), level, stack=stack))
        return self

    def save(self, path: Path) -> Path:
        with TraceWriter(path.open("w", encoding="utf-8")) as writer:
            writer.write(self.header)
            if any(getattr(r, "stack", None) for r in self.records):
                writer.write_all([IN_READ, IN_WRITE, IN_TIMER])
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

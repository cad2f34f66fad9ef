"""edu's DMA engine: four 64-bit registers, a 4 KiB buffer, and a timer.

From the edu document: the driver sets source, destination and count, then writes the
command with START (bit 0); direction bit 1 (0: RAM to the device's buffer, 1: buffer to
RAM); bit 2 raises interrupt 0x100 when done; the buffer is 4096 bytes at device address
0x40000; the device works with DMA addresses of ``dma_mask`` (28 bits by default).

What the document leaves open, as QEMU 10.2.2 was seen to do it under qtest:

* The transfer does not happen at the command write: it runs from a timer on QEMU's
  virtual clock, due 100 ms after the write counted in whole milliseconds (a command at
  virtual time t runs when the clock reaches ``(floor(t / 1 ms) + 100) ms``); until then
  DMA_CMD reads START set, and writes to any DMA register are ignored.
* A command written without START is ignored (DMA_CMD keeps its value); one with START
  stores all 64 bits written, and START alone is cleared when the transfer is done.
* A 4-byte write to a DMA register replaces the whole register with the value
  zero-extended; a 4-byte read returns its low half.
* The RAM-side address is masked with ``dma_mask``; the device-side address is not: it
  must lie in the buffer. QEMU 10.2.2 stops (out of range) or crashes (a device address
  with bits above 31 set reached the buffer index: segfault, observed) otherwise; the model
  counts such a transfer as not modelled and moves nothing.
* A transfer while bus mastering is off moves no RAM: a write to RAM is dropped, a read
  from RAM fills the buffer with zeros. It still completes and raises its interrupt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from qtrace.devices.edu.model.edu_regs import DMA_CMD_START, DMA_CMD_TO_RAM, offset_of
from qtrace.refemu.provenance import Origin, Provenance

__all__ = [
    "BUFFER_BYTES",
    "BUFFER_START",
    "DEFAULT_DMA_MASK",
    "DMA_DELAY_MS",
    "DmaEngine",
    "in_buffer",
]

BUFFER_START = 0x40000
BUFFER_BYTES = 4096
DEFAULT_DMA_MASK = (1 << 28) - 1
DMA_DELAY_MS = 100
_MS = 1_000_000
_MASK64 = (1 << 64) - 1


def in_buffer(address: int, count: int) -> bool:
    """Whether ``count`` bytes from device address ``address`` lie in the buffer."""
    return BUFFER_START <= address and address + count <= BUFFER_START + BUFFER_BYTES


class Bus(Protocol):
    """What the engine needs of its PCI function: bus-master reads and writes."""

    def dma_read(self, addr: int, size_bytes: int) -> bytes: ...

    def dma_write(self, addr: int, data: bytes, *, random: bool = False) -> None: ...


class DmaEngine:
    """The registers (``src``, ``dst``, ``count``, ``cmd``), the buffer and the timer.

    ``done`` is called with the command when a transfer completes (the device raises its
    interrupt from it); ``fault`` with a description when a transfer cannot be modelled.
    """

    def __init__(
        self,
        bus: Bus,
        dma_mask: int,
        done: Callable[[int], None],
        fault: Callable[[str], None],
    ) -> None:
        self.bus = bus
        self.dma_mask = dma_mask
        self._done = done
        self._fault = fault
        self.buffer = bytearray(BUFFER_BYTES)
        self.src = self.dst = self.count = self.cmd = 0
        self.deadline_ns: int | None = None
        self.provenance: Provenance | None = None  # narrates while explaining
        self._armed_by: Origin | None = None  # the command write that armed the timer

    def reset(self) -> None:
        """Registers 0, buffer zeros, no transfer pending."""
        self.buffer[:] = bytes(BUFFER_BYTES)
        self.src = self.dst = self.count = self.cmd = 0
        self.deadline_ns = None

    @property
    def running(self) -> bool:
        return bool(self.cmd & DMA_CMD_START)

    def write(self, name: str, value: int, now_ns: int) -> None:
        """A guest write to DMA register ``name`` (value already zero-extended)."""
        if self.running:
            if self.provenance is not None:
                self.provenance.note("ignored: a transfer is running (START is set)")
            return
        value &= _MASK64
        if name == "DMA_SRC":
            self.src = value
        elif name == "DMA_DST":
            self.dst = value
        elif name == "DMA_COUNT":
            self.count = value
        elif value & DMA_CMD_START:
            self.cmd = value
            self.deadline_ns = (now_ns // _MS + DMA_DELAY_MS) * _MS
        elif self.provenance is not None:
            self.provenance.note("ignored: a command without START")
            return
        if self.provenance is not None:
            self._narrate_write(name, now_ns)

    def _narrate_write(self, name: str, now_ns: int) -> None:
        """The write determined the whole register; a command armed the timer."""
        prov = self.provenance
        assert prov is not None
        prov.sync()
        prov.set_origin("mmio", offset_of(name), _MASK64, prov.origin)
        if name == "DMA_CMD" and self.deadline_ns is not None:
            self._armed_by = prov.origin
            prov.note(
                f"DMA started: {self._transfer()}; the timer is due at "
                f"{self.deadline_ns / _MS:g} ms of virtual time (now {now_ns / _MS:g} ms)"
            )

    def _transfer(self) -> str:
        """What the command asks for, in words."""
        if self.cmd & DMA_CMD_TO_RAM:
            where = f"buffer {self.src:#x} to RAM {self.dst & self.dma_mask:#x}"
        else:
            where = f"RAM {self.src & self.dma_mask:#x} to buffer {self.dst:#x}"
        return f"{self.count} bytes from {where}"

    def describe(self) -> str:
        """The pending transfer and the write that armed it (the timer's origin detail)."""
        if self._armed_by is None:
            return "the transfer DMA_CMD holds"
        return f"the transfer armed by {self._armed_by}"

    def due(self, now_ns: int) -> bool:
        """Whether the timer has expired at ``now_ns``."""
        return self.deadline_ns is not None and now_ns >= self.deadline_ns

    def run(self) -> None:
        """The timer fired: move the bytes, clear START, signal completion."""
        self.deadline_ns = None
        if not self.running:
            return
        to_ram = bool(self.cmd & DMA_CMD_TO_RAM)
        device_side = self.src if to_ram else self.dst
        inside = in_buffer(device_side, self.count)
        if inside and self.provenance is not None:
            self.provenance.note(f"DMA transferred {self._transfer()}")
        if not inside:
            self._fault("DMA outside the device's 4 KiB buffer (QEMU 10.2.2 stops or crashes)")
        elif self.count and to_ram:
            start = device_side - BUFFER_START
            data = bytes(self.buffer[start : start + self.count])
            self.bus.dma_write(self.dst & self.dma_mask, data)
        elif self.count:
            start = device_side - BUFFER_START
            self.buffer[start : start + self.count] = self.bus.dma_read(
                self.src & self.dma_mask, self.count
            )
        self.cmd &= ~DMA_CMD_START
        self._done(self.cmd)

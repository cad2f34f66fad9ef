"""Deliberately broken edu and virtio-rng-pci models, one rule wrong in each.

Shared by the unit tests (the model as QEMU, the committed captures) and the integration
tests (QEMU 10.2.2 over qtest): each must be caught, which is what shows the comparison
looks at the rule at all.
"""

from __future__ import annotations

from qtrace.devices.edu.model import Edu, factorial32, offset_of
from qtrace.devices.virtio.layout import VirtioPciLayout
from qtrace.devices.virtio.rng import VirtioRngPci
from qtrace.devices.virtio.virtqueue import Chain, Memory, VirtQueue


class LivenessNotInverted(Edu):
    """Returns the liveness value as written, twice inverted."""

    def mmio_read(self, offset: int, size: int) -> int:
        if offset == offset_of("LIVENESS"):
            return ~self.liveness & 0xFFFF_FFFF
        return super().mmio_read(offset, size)


class DmaOneMillisecondLate(Edu):
    """Completes a transfer a millisecond after its timer's deadline."""

    def advance(self, ns: int) -> None:
        self.now_ns += ns
        if self.dma.deadline_ns is not None and self.now_ns >= self.dma.deadline_ns + 1_000_000:
            self.dma.run()


class DmaWithoutInterrupt(Edu):
    """Completes a transfer but never raises its interrupt."""

    def _dma_done(self, cmd: int) -> None:
        return None


class NoFactorialInterrupt(Edu):
    """Computes the factorial but forgets the interrupt IRQFACT asks for."""

    def _finish_factorial(self) -> None:
        self.factorial_pending = False
        self.factorial = factorial32(self.factorial)
        self.status &= ~0x1


class IsrNotClearedByRead(VirtioRngPci):
    """Reads the ISR status without clearing it."""

    def _read_isr(self) -> int:
        return self.isr


class UsedLengthOffByOne(VirtioRngPci):
    """Writes one byte more than it filled into queue 0's used element."""

    def __init__(self, name: str = "virtio-rng-pci", layout: VirtioPciLayout | None = None) -> None:
        super().__init__(name, layout)
        original = VirtQueue.push

        def push(queue: VirtQueue, memory: Memory, chain: Chain, length: int) -> None:
            original(queue, memory, chain, length + 1)

        self.queues[0].push = push.__get__(self.queues[0])  # type: ignore[method-assign]

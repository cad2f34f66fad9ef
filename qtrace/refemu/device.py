"""The small protocol a device model implements to sit in the :class:`RefMachine`.

Why a protocol: the machine, the trace replay and the live differential test are the same
for every PCI device; only the model differs, and models live in their device's pack
(``qtrace/devices/<name>/``, named by ``pack.toml``'s ``[model] class``). Generic code is
typed on :class:`PciDevice` and builds a model through :class:`PciDeviceModel`, so it
never names a device.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from qtrace.refemu.irq import IrqLine
from qtrace.refemu.pci import PciFunction
from qtrace.refemu.regmap import RegisterMap

__all__ = ["AsyncDevice", "PciDevice", "PciDeviceModel"]


@runtime_checkable
class PciDevice(Protocol):
    """One PCI function's model: configuration space, its BARs' registers, one INTx line.

    Attributes:
        pci: The PCI function (configuration space, BAR windows, DMA through the machine).
        irq: The INTx line.
        mmio_registers: The memory BAR's register map (names reads and mismatches).
        io_registers: The I/O BAR's register map.
        unimplemented_features: Features the guest used that the model skips, counted.
    """

    pci: PciFunction
    irq: IrqLine
    mmio_registers: RegisterMap
    io_registers: RegisterMap
    unimplemented_features: Counter[str]

    def reset(self) -> None:
        """Power-on reset of the whole function."""
        ...

    def mmio_read(self, offset: int, size: int) -> int:
        """A guest read at ``offset`` in the memory BAR."""
        ...

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        """A guest write at ``offset`` in the memory BAR."""
        ...

    def io_read(self, offset: int, size: int) -> int:
        """A guest read at ``offset`` in the I/O BAR."""
        ...

    def io_write(self, offset: int, size: int, value: int) -> None:
        """A guest write at ``offset`` in the I/O BAR."""
        ...

    @property
    def irq_level(self) -> bool:
        """True while the INTx line is asserted."""
        ...


@runtime_checkable
class AsyncDevice(Protocol):
    """A model of a device that does part of its work off the vCPU thread.

    QEMU runs such work on a thread of the device's, in a bottom half or from a timer, so
    it happens after the register access that started it. The model keeps it pending until
    its host says it may happen: the live test, at a sync step (after QEMU was seen to be
    done) and at clock steps; the trace replay, where QEMU's trace shows the work done.
    """

    def settle(self, *, timers: bool = False) -> bool:
        """Finish pending thread and bottom-half work now; with ``timers``, also fire every
        armed timer (a host without a virtual clock). True if anything ran."""
        ...

    def advance(self, ns: int) -> None:
        """The virtual clock moved ``ns`` forward: fire the timers that came due."""
        ...


class PciDeviceModel(Protocol):
    """A model class (or factory): builds a device from QEMU's ``-device`` properties.

    ``properties`` are the ``key=value`` pairs QEMU was given (the trace header's
    ``device_properties``), e.g. ``mac`` or an empty ``romfile``; ``None`` when they are
    unknown, and the model assumes QEMU's defaults.
    """

    def __call__(self) -> PciDevice: ...

    def from_properties(
        self, properties: Mapping[str, str] | None, name: str = ...
    ) -> PciDevice: ...

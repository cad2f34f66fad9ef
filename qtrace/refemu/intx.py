"""A PCI function's INTx pin: what the device asserts, and what the line does with it.

Why apart from :class:`~qtrace.refemu.irq.IrqLine`: PCI puts two switches between a
device's wish to interrupt and the wire (PCI 3.0, 6.2.2-6.2.3). COMMAND.INTX_DISABLE
(bit 10) keeps the line deasserted whatever the device wants, and STATUS.INTERRUPT (bit 3)
shows the device's wish whatever COMMAND says. A device model only says "asserted" or
"not"; the pin keeps both registers and the line consistent, also when the guest flips
INTX_DISABLE later.
"""

from __future__ import annotations

from qtrace.refemu.irq import IrqLine
from qtrace.refemu.pci import COMMAND_INTX_DISABLE, STATUS_INTERRUPT, PciFunction

__all__ = ["IntxPin"]

_COMMAND = 0x04


class IntxPin:
    """The INTx pin of ``function``, driving ``line``."""

    def __init__(self, function: PciFunction, line: IrqLine) -> None:
        self.function = function
        self.line = line
        self._asserted = False
        function.config_listeners.append(self._config_written)

    @property
    def asserted(self) -> bool:
        """Whether the device asserts its INTx (STATUS.INTERRUPT)."""
        return self._asserted

    def set(self, asserted: bool) -> None:
        """The device asserts (True) or deasserts its INTx."""
        self._asserted = asserted
        self._update()

    def reset(self) -> None:
        """Deasserted, after the function's configuration space was reset."""
        self.set(False)

    def _config_written(self, offset: int, size: int) -> None:
        if offset <= _COMMAND + 1 and offset + size > _COMMAND:
            self._update()

    def _update(self) -> None:
        self.function.set_status(STATUS_INTERRUPT, self._asserted)
        disabled = bool(self.function.command & COMMAND_INTX_DISABLE)
        self.line.set(self._asserted and not disabled)

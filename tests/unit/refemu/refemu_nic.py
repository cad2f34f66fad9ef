"""Test helper: a reference machine with an e1000 at 00:02.0 and BARs where SeaBIOS puts them."""

from __future__ import annotations

from qtrace.devices.e1000.model import E1000
from qtrace.refemu import RefMachine

BAR0_BASE = 0xFEBC0000  # where SeaBIOS put BAR0 in the probe guest (ENVIRONMENT.md)
IO_BASE = 0xC000
SLOT = 2


class Nic:
    """A machine plus its e1000, with register access by offset through BAR0."""

    def __init__(self) -> None:
        self.machine = RefMachine()
        self.dev: E1000 = self.machine.plug(SLOT, E1000())
        self.machine.assign_bars(self.dev.pci, {0: BAR0_BASE, 1: IO_BASE})

    def rd(self, offset: int) -> int:
        return self.machine.read(BAR0_BASE + offset, 4)

    def wr(self, offset: int, value: int) -> None:
        self.machine.write(BAR0_BASE + offset, 4, value)

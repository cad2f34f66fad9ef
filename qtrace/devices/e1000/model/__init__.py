"""The e1000 pack's reference model: an Intel 82540EM written from the 8254x manual.

Why it lives in the pack: everything qtrace knows about one device is in that device's
folder; :mod:`qtrace.refemu` is only the machine (memory, PCI, bus, interrupt lines) that
hosts models implementing :class:`qtrace.refemu.PciDevice`. ``pack.toml``'s
``[model] class`` names :class:`E1000` here, and ``qtrace verify`` finds it through the
device registry (:func:`qtrace.devices.model_class`)::

    m = RefMachine()
    nic = m.plug(2, E1000())
    m.assign_bars(nic.pci, {0: 0xFEBC0000, 1: 0xC000})
    m.read(0xFEBC0008, 4)        # STATUS
"""

from qtrace.devices.e1000.model.e1000 import (
    BAR0,
    BAR1,
    DEFAULT_MAC,
    E1000,
    E1000_IDENTITY,
    parse_mac,
)
from qtrace.devices.e1000.model.e1000_regs import IO_REGISTERS, MAC_REGISTERS, UNIMPLEMENTED

__all__ = [
    "BAR0",
    "BAR1",
    "DEFAULT_MAC",
    "E1000",
    "E1000_IDENTITY",
    "IO_REGISTERS",
    "MAC_REGISTERS",
    "UNIMPLEMENTED",
    "parse_mac",
]

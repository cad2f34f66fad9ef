"""The reference machine: a pure-Python PC-like host for device models.

It exists to check QEMU against independent readings of the datasheets: ``qtrace verify``
replays captured traces through a model, or drives a model and QEMU side by side. This
package is the generic part (RAM, the PCI configuration mechanism and functions, address
spaces, interrupt lines, and the :class:`PciDevice` protocol a model implements); the
models themselves live in their device packs (``qtrace/devices/<name>/``), found through
:func:`qtrace.devices.model_class`::

    m = RefMachine()
    nic = m.plug(2, model_class("e1000")())
    m.assign_bars(nic.pci, {0: 0xFEBC0000, 1: 0xC000})
    m.read(0xFEBC0008, 4)        # STATUS
    nic.irq.subscribe(print)     # watch the INTx line

No Docker, no gdb, no QEMU. See docs/refemu.md for the rules it follows.
"""

from qtrace.refemu.bus import AddressSpace
from qtrace.refemu.device import AsyncDevice, PciDevice, PciDeviceModel
from qtrace.refemu.irq import IrqLine
from qtrace.refemu.machine import RefMachine
from qtrace.refemu.memory import SparseMemory
from qtrace.refemu.pci import CONFIG_HEADER, PciFunction, PciHost
from qtrace.refemu.regmap import Field, Kind, Reg, RegisterMap, Unimplemented, decode_bits

__all__ = [
    "CONFIG_HEADER",
    "AddressSpace",
    "AsyncDevice",
    "Field",
    "IrqLine",
    "Kind",
    "PciDevice",
    "PciDeviceModel",
    "PciFunction",
    "PciHost",
    "RefMachine",
    "Reg",
    "RegisterMap",
    "SparseMemory",
    "Unimplemented",
    "decode_bits",
]

"""The reference emulator: a pure-Python machine and e1000 written from the datasheets.

It exists to check QEMU against an independent reading of Intel's 8254x manual and the
PCI specification: ``qtrace verify`` replays captured traces through it, and scripts can
drive it directly::

    m = RefMachine()
    nic = m.add_e1000(slot=2)
    m.assign_bars(nic.pci, {0: 0xFEBC0000, 1: 0xC000})
    m.read(0xFEBC0008, 4)        # STATUS
    nic.irq.subscribe(print)     # watch the INTx line

No Docker, no gdb, no QEMU. See docs/refemu.md for the rules it follows.
"""

from qtrace.refemu.bus import AddressSpace
from qtrace.refemu.e1000 import BAR0, BAR1, DEFAULT_MAC, E1000, parse_mac
from qtrace.refemu.e1000_regs import IO_REGISTERS, MAC_REGISTERS, UNIMPLEMENTED
from qtrace.refemu.irq import IrqLine
from qtrace.refemu.machine import RefMachine
from qtrace.refemu.memory import SparseMemory
from qtrace.refemu.pci import CONFIG_HEADER, PciFunction, PciHost
from qtrace.refemu.regmap import Field, Kind, Reg, RegisterMap, Unimplemented, decode_bits

__all__ = [
    "BAR0",
    "BAR1",
    "CONFIG_HEADER",
    "DEFAULT_MAC",
    "E1000",
    "IO_REGISTERS",
    "MAC_REGISTERS",
    "UNIMPLEMENTED",
    "AddressSpace",
    "Field",
    "IrqLine",
    "Kind",
    "PciFunction",
    "PciHost",
    "RefMachine",
    "Reg",
    "RegisterMap",
    "SparseMemory",
    "Unimplemented",
    "decode_bits",
    "parse_mac",
]

"""The edu pack's reference model: QEMU's educational PCI device, from its document.

``pack.toml``'s ``[model] class`` names :class:`Edu`; :mod:`qtrace.refemu` hosts it::

    m = RefMachine()
    edu = m.plug(5, Edu())
    m.assign_bars(edu.pci, {0: 0xFEA00000})
    m.read(0xFEA00000, 4)        # 0x010000ed
    m.write(0xFEA00008, 4, 10)   # factorial of 10 ...
    edu.settle()                 # ... computed (QEMU's thread finished)
"""

from qtrace.devices.edu.model.edu import BAR0, EDU_IDENTITY, MSI_OFFSET, Edu, factorial32
from qtrace.devices.edu.model.edu_dma import BUFFER_BYTES, BUFFER_START, DEFAULT_DMA_MASK
from qtrace.devices.edu.model.edu_regs import EDU_REGISTERS, offset_of

__all__ = [
    "BAR0",
    "BUFFER_BYTES",
    "BUFFER_START",
    "DEFAULT_DMA_MASK",
    "EDU_IDENTITY",
    "EDU_REGISTERS",
    "MSI_OFFSET",
    "Edu",
    "factorial32",
    "offset_of",
]

"""edu's register rows and the constants its model needs, read from the pack's one map.

Why: the registers are defined once, in ``qtrace/devices/edu/registers.toml`` (names, bit
fields, access kinds, notes), for reports and the model alike; this module only turns that
map into the model's offset-indexed rows and names the bits the code uses.
"""

from __future__ import annotations

from qtrace.devices import register_map
from qtrace.refemu.regmap import RegisterMap, field_mask, rows_from_pack

__all__ = [
    "DMA_CMD_IRQ",
    "DMA_CMD_START",
    "DMA_CMD_TO_RAM",
    "EDU_REGISTERS",
    "INTR_DMA",
    "INTR_FACTORIAL",
    "STATUS_COMPUTING",
    "STATUS_IRQFACT",
    "offset_of",
]


def _pack_map() -> RegisterMap:
    found = register_map("edu")
    if found is None:  # the pack ships with qtrace; its absence is a broken installation
        raise RuntimeError("the edu device pack has no register map")
    return rows_from_pack(found.registers("mmio"), "edu")


EDU_REGISTERS = _pack_map()
"""BAR 0's registers, one row per register of the pack's map."""


def offset_of(name: str) -> int:
    """The BAR 0 offset of register ``name``."""
    return EDU_REGISTERS.named(name).offset


def _bit(register: str, field: str) -> int:
    return field_mask(EDU_REGISTERS.named(register), field)


STATUS_COMPUTING = _bit("STATUS", "COMPUTING")
STATUS_IRQFACT = _bit("STATUS", "IRQFACT")
INTR_FACTORIAL = _bit("INTR_STATUS", "FACTORIAL")
INTR_DMA = _bit("INTR_STATUS", "DMA")
DMA_CMD_START = _bit("DMA_CMD", "START")
DMA_CMD_TO_RAM = _bit("DMA_CMD", "TO_RAM")
DMA_CMD_IRQ = _bit("DMA_CMD", "IRQ")

"""The 82540EM register map as the model sees it, built from the e1000 device pack.

Why: the e1000's registers are defined once, in ``qtrace/devices/e1000/registers.toml``
(names, fields, and for the model the ``access``/``reset``/``wmask``/``note`` keys), so a
report, ``show`` and a ``verify`` mismatch name every bit the same way. This module only
turns that map into the model's offset-indexed :class:`~qtrace.refemu.regmap.Reg` rows and
reads the constants the model's code needs (bit positions) out of the map's fields; it
holds no register table of its own.

:data:`UNIMPLEMENTED` is the one list of what the model knows exists but does not model,
over both BAR0 and configuration space; everything there raises
:class:`~qtrace.refemu.regmap.Unimplemented` when touched. Offsets inside BAR0 that have
no row at all are reported the same way (as reserved), never as a silent 0.
"""

from __future__ import annotations

from qtrace.devices import Register, pci_config_map, register_map
from qtrace.devices import RegisterMap as PackMap
from qtrace.refemu.regmap import Field, Kind, Reg, rows_from_pack

__all__ = [
    "CAUSE_FIELDS",
    "CONFIG_ROM_BAR",
    "CTRL_PHY_RST",
    "CTRL_RST",
    "EERD_DONE",
    "EERD_START",
    "ICR_BITS",
    "IMS_VALID",
    "IO_REGISTERS",
    "MAC_REGISTERS",
    "MDIC_ERROR",
    "MDIC_IE",
    "MDIC_READY",
    "PACK_MAP",
    "RAH_AV",
    "RCTL_EN",
    "TCTL_EN",
    "UNIMPLEMENTED",
    "bit",
]

CONFIG_ROM_BAR = 0x30
_ROM_BAR_REASON = "the option ROM's size comes from the host's romfile; not modelled"


def _pack_map() -> PackMap:
    found = register_map("e1000")
    if found is None:  # the pack ships with qtrace; its absence is a broken installation
        raise RuntimeError("the e1000 device pack has no register map")
    return found


PACK_MAP = _pack_map()
"""The e1000 pack's register map: the one definition the tables below are derived from."""


def _field(register: Register, name: str) -> Field:
    for bit_field in register.fields:
        if bit_field.name == name:
            return Field(bit_field.name, bit_field.lo, bit_field.hi)
    raise KeyError(f"{register.name} has no field {name}")


MAC_REGISTERS = rows_from_pack(PACK_MAP.registers("mmio"), "e1000")
"""BAR0 (memory-mapped) registers, one row per register of the pack's ``mmio`` space."""

IO_REGISTERS = rows_from_pack(PACK_MAP.registers("pio"), "e1000")
"""The I/O BAR (IOADDR/IODATA), the pack's ``pio`` space."""


def bit(register: str, field: str) -> int:
    """The mask of ``register``'s ``field`` in the pack's map, e.g. ``bit("CTRL", "RST")``."""
    return _field_mask(MAC_REGISTERS.named(register), field)


def _field_mask(reg: Reg, name: str) -> int:
    for f in reg.fields:
        if f.name == name:
            return f.mask
    raise KeyError(f"{reg.name} has no field {name}")


# Interrupt cause bits, shared by ICR, ICS, IMS and IMC (ICS/IMS/IMC take ICR's fields).
CAUSE_FIELDS = MAC_REGISTERS.named("ICR").fields
ICR_BITS: dict[str, int] = {f.name: f.lo for f in CAUSE_FIELDS}
IMS_VALID = sum(f.mask for f in CAUSE_FIELDS)

CTRL_RST = bit("CTRL", "RST")
CTRL_PHY_RST = bit("CTRL", "PHY_RST")
EERD_START = bit("EERD", "START")
EERD_DONE = bit("EERD", "DONE")
MDIC_READY = bit("MDIC", "R")
MDIC_IE = bit("MDIC", "I")
MDIC_ERROR = bit("MDIC", "E")
RCTL_EN = bit("RCTL", "EN")
TCTL_EN = bit("TCTL", "EN")
RAH_AV = bit("RAH[0]", "AV")


def _config_name(offset: int) -> str:
    register = pci_config_map().find("pci-config", offset)
    return register.name if register is not None else f"config_{offset:#04x}"


# The one list of registers the model deliberately does not model: (space, offset, name, reason).
UNIMPLEMENTED: tuple[tuple[str, int, str, str], ...] = (
    *(("mmio", r.offset, r.name, r.note) for r in MAC_REGISTERS if r.kind is Kind.UNIMPL),
    ("pci-config", CONFIG_ROM_BAR, _config_name(CONFIG_ROM_BAR), _ROM_BAR_REASON),
)

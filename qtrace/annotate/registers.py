"""Register decoding for reports: a trace access -> the register it touched and its fields.

The maps belong to the device packs (:mod:`qtrace.devices`); this module only applies the
right one to an access. An offset no map lists decodes as unknown; nothing is guessed.

A trace whose header carries the device's region map (``Header.regions``, found in the
running QEMU) is decoded per region: a pack's map describes, for each space it lists
registers in (``mmio``, ``pio``), one region, the one registered as the device's first
BAR of that space (e1000: ``e1000-mmio`` on BAR 0 and ``e1000-io`` on BAR 1). Every other
region (an MSI-X table inside the device's BARs, a flash window, any region of a device
without a pack) is shown by region and offset, ``virtio-pci-common-virtio-net+0x14``.
Traces without a region map are decoded by space alone, as they always were.

A configuration access to another device on the captured one's path (``Access.device``: the
PCI Express root port above it) is decoded with the type 1 (bridge) header,
``rules/pci-bridge-config.toml``, and named after that device (``pcie-root-port:SECONDARY_BUS``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cache
from importlib import resources

from qtrace.devices import Decoded, RegisterMap, pci_config_map, register_map_for
from qtrace.devices.registers import parse_register_map
from qtrace.errors import ReportError
from qtrace.trace import Access
from qtrace.trace.schema import Region

__all__ = ["bridge_config_map", "decode_access", "map_regions", "region_label", "region_of"]


def _base_map(name: str) -> RegisterMap:
    if name != "pci-config":
        raise ReportError(f"pci-bridge-config.toml: unknown base map {name!r}")
    return pci_config_map()


@cache
def bridge_config_map() -> RegisterMap:
    """The type 1 configuration header of PCI-to-PCI bridges and PCI Express ports."""
    path = resources.files("qtrace.annotate").joinpath("rules/pci-bridge-config.toml")
    return parse_register_map(path, "pci-bridge-config", _base_map)


def region_label(region: str | None, offset: int) -> str:
    """An offset in a region no map describes: ``<region>+<offset>``."""
    return f"{region or '?'}+{offset:#x}"


def region_of(access: Access, regions: Sequence[Region]) -> Region | None:
    """The header region an access went to: same name and space, an I/O region first (names
    repeat: virtio's legacy I/O BAR and its modern BAR's container are both ``virtio-pci``)."""
    same = [r for r in regions if r.name == access.region and r.space == access.space]
    return next((r for r in same if r.kind == "io"), same[0] if same else None)


def map_regions(device: str, regions: Sequence[Region]) -> dict[str, Region]:
    """The region the pack's map describes in each space it has registers in.

    It is the I/O region registered as the device's lowest-numbered BAR of that space
    (depth 0); a space whose first BAR is not an I/O region (a container, RAM) has none.
    """
    out: dict[str, Region] = {}
    for space in ("mmio", "pio"):
        register_map = register_map_for(device, space)
        if register_map is None or not register_map.registers(space):
            continue
        bars = sorted(
            (r for r in regions if r.space == space and r.depth == 0 and r.bar is not None),
            key=lambda r: (r.bar or 0, r.offset),
        )
        if bars and bars[0].kind == "io":
            out[space] = bars[0]
    return out


def decode_access(device: str, access: Access, regions: Sequence[Region] = ()) -> Decoded:
    """Decode one trace access of ``device``; unknown when no map covers it.

    Args:
        device: the captured device's QOM type (picks its pack's map).
        access: the access.
        regions: the trace header's region map; empty for traces made before discovery,
            which are decoded by space alone.
    """
    if access.space == "pci-config" and access.device is not None:
        decoded = bridge_config_map().decode(access.space, access.offset, access.size, access.value)
        return dataclasses.replace(decoded, name=f"{access.device}:{decoded.name}")
    register_map = register_map_for(device, access.space)
    if access.space == "pci-config" or not regions:
        if register_map is None:
            return Decoded(f"unknown@{access.offset:#x}", False)
        return register_map.decode(access.space, access.offset, access.size, access.value)
    mapped = map_regions(device, regions).get(access.space)
    region = region_of(access, regions)
    if register_map is None or mapped is None or region != mapped:
        return Decoded(region_label(access.region, access.offset), False)
    return register_map.decode(access.space, access.offset, access.size, access.value)

"""Where a virtio-pci device places its structures: capabilities, BARs and MSI-X.

Why data: the virtio specification (4.1.4) lets a device put the common configuration,
notification, ISR and device-specific structures in any BAR at any offset, and says where
through vendor-specific capabilities; QEMU's choice may change between releases. A model
takes the layout from where the device states it, never from one release's constants:

* :meth:`VirtioPciLayout.from_config_space`: walk the capability list of the device's
  configuration space, as the probe guest and every driver do (the live test reads QEMU's);
* :meth:`VirtioPciLayout.with_regions`: a trace header's discovered MemoryRegions (which
  BAR, offset and size each structure's region has), for a replay;
* :func:`qemu_default_layout`: what QEMU 10.2.2 presents (observed), for what neither says
  (a trace's capability offsets, BAR sizes before they are known).

A BAR's size is not in the capabilities (a driver sizes BARs by writing them): it is the
smallest power of two that holds the structures in it (the legacy I/O BAR: the 24-byte
legacy header with MSI-X fields, plus the device-specific configuration), as QEMU sizes
them (observed: 16 KiB for four 4 KiB structures, 4 KiB for the MSI-X table and PBA, 32
bytes of I/O for virtio-rng).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from qtrace.refemu.pci import BarDef

__all__ = [
    "CFG_COMMON",
    "CFG_DEVICE",
    "CFG_ISR",
    "CFG_NOTIFY",
    "CFG_PCI",
    "MsixPlace",
    "Structure",
    "VirtioPciLayout",
    "qemu_default_layout",
]

CFG_COMMON, CFG_NOTIFY, CFG_ISR, CFG_DEVICE, CFG_PCI = 1, 2, 3, 4, 5
VENDOR_CAP_ID = 0x09
MSIX_CAP_ID = 0x11
LEGACY_HEADER_BYTES = 24  # 20 bytes of header and 4 of MSI-X vectors (4.1.4.10)
_BAR_TYPE_64 = 0b100
_BAR_PREFETCH = 0b1000
# A trace region's name says which structure it is (QEMU 10.2.2 names them so).
_REGION_KINDS = {
    "virtio-pci-common": CFG_COMMON,
    "virtio-pci-isr": CFG_ISR,
    "virtio-pci-device": CFG_DEVICE,
    "virtio-pci-notify": CFG_NOTIFY,
}


@dataclass(frozen=True)
class Structure:
    """One virtio structure and the capability that places it (struct virtio_pci_cap).

    Attributes:
        cfg_type: Which structure (``CFG_COMMON`` ...).
        cap_offset: Where its capability sits in configuration space.
        bar, offset, length: Where the structure is.
        notify_multiplier: The notification capability's notify_off_multiplier.
    """

    cfg_type: int
    cap_offset: int
    bar: int
    offset: int
    length: int
    notify_multiplier: int = 0

    @property
    def cap_length(self) -> int:
        """The capability's cap_len: 20 with a trailing field (notify, PCI cfg), else 16."""
        return 20 if self.cfg_type in (CFG_NOTIFY, CFG_PCI) else 16

    def holds(self, bar: int, offset: int) -> bool:
        return bar == self.bar and self.offset <= offset < self.offset + self.length


@dataclass(frozen=True)
class MsixPlace:
    """The MSI-X capability and where its table and pending-bit array are."""

    cap_offset: int
    vectors: int
    table_bar: int
    table_offset: int
    pba_bar: int
    pba_offset: int


@dataclass(frozen=True)
class VirtioPciLayout:
    """A virtio-pci function's structures, MSI-X and BARs.

    Attributes:
        structures: The vendor capabilities' structures, in capability-list order.
        msix: The MSI-X capability, if the device has one.
        cap_order: Every capability's offset in list order (the MSI-X one included).
        bars: The BARs (their sizes as explained in the module docstring).
    """

    structures: tuple[Structure, ...]
    msix: MsixPlace | None
    cap_order: tuple[int, ...]
    bars: tuple[BarDef, ...]

    def first(self, cfg_type: int) -> Structure | None:
        """The first structure of a type: the one a driver uses (4.1.4.1)."""
        return next((s for s in self.structures if s.cfg_type == cfg_type), None)

    def structure_at(self, bar: int, offset: int) -> Structure | None:
        """The BAR-mapped structure holding ``offset`` of ``bar`` (PCI cfg excluded)."""
        for structure in self.structures:
            if structure.cfg_type != CFG_PCI and structure.holds(bar, offset):
                return structure
        return None

    @property
    def notify_multiplier(self) -> int:
        notify = self.first(CFG_NOTIFY)
        return 0 if notify is None else notify.notify_multiplier

    # -- from where the device states it -----------------------------------------------

    @classmethod
    def from_config_space(cls, config: bytes, device_config_bytes: int = 0) -> VirtioPciLayout:
        """The layout a driver finds: the capability list of ``config`` (256 bytes) and the
        BARs' type bits; ``device_config_bytes`` sizes the legacy I/O BAR."""
        structures: list[Structure] = []
        msix: MsixPlace | None = None
        order: list[int] = []
        at = config[0x34] & ~3
        while at and at not in order and len(order) < 48:
            order.append(at)
            cap_id = config[at]
            if cap_id == MSIX_CAP_ID:
                control, table, pba = (_dword(config, at + d) for d in (0, 4, 8))
                msix = MsixPlace(
                    at, (control >> 16 & 0x7FF) + 1, table & 7, table & ~7, pba & 7, pba & ~7
                )
            elif cap_id == VENDOR_CAP_ID and CFG_COMMON <= config[at + 3] <= CFG_PCI:
                multiplier = _dword(config, at + 16) if config[at + 3] == CFG_NOTIFY else 0
                structures.append(
                    Structure(
                        config[at + 3],
                        at,
                        config[at + 4],
                        _dword(config, at + 8),
                        _dword(config, at + 12),
                        multiplier,
                    )
                )
            at = config[at + 1] & ~3
        bars = _bars_holding(structures, msix, _bar_types(config), device_config_bytes)
        return cls(tuple(structures), msix, tuple(order), bars)

    def with_regions(self, regions: Iterable[Any]) -> VirtioPciLayout:
        """This layout with BARs, offsets and sizes taken from a trace's discovered regions
        (``qtrace.trace.Region``: name, bar, offset, size, depth); capability offsets and
        the notify multiplier stay this layout's (regions do not say them)."""
        regions = list(regions)
        structures = list(self.structures)
        for region in regions:
            kind = next((k for p, k in _REGION_KINDS.items() if region.name.startswith(p)), None)
            if kind is None or region.bar is None:
                continue
            for index, structure in enumerate(structures):
                if structure.cfg_type == kind:
                    structures[index] = replace(
                        structure, bar=region.bar, offset=region.offset, length=region.size
                    )
                    break
        msix = self.msix
        table = next((r for r in regions if r.name == "msix-table"), None)
        pba = next((r for r in regions if r.name == "msix-pba"), None)
        if msix is not None and table is not None and pba is not None:
            msix = replace(
                msix,
                vectors=max(1, table.size // 16),
                table_bar=table.bar,
                table_offset=table.offset,
                pba_bar=pba.bar,
                pba_offset=pba.offset,
            )
        sizes = {r.bar: r.size for r in regions if r.depth == 0 and r.bar is not None}
        bars = tuple(
            replace(bar, size_bytes=sizes.get(bar.index, bar.size_bytes)) for bar in self.bars
        )
        return replace(self, structures=tuple(structures), msix=msix, bars=bars)


def _dword(config: bytes, at: int) -> int:
    return int.from_bytes(config[at : at + 4], "little")


def _bar_types(config: bytes) -> Mapping[int, int]:
    """BAR index -> its type bits, for the BARs configuration space declares."""
    types: dict[int, int] = {}
    index = 0
    while index < 6:
        low = _dword(config, 0x10 + 4 * index)
        types[index] = low & (0x3 if low & 1 else 0xF)
        index += 2 if not low & 1 and low & _BAR_TYPE_64 else 1
    return types


def _power_of_two(size: int, least: int) -> int:
    value = least
    while value < size:
        value *= 2
    return value


def _bars_holding(
    structures: Iterable[Structure],
    msix: MsixPlace | None,
    types: Mapping[int, int],
    device_config_bytes: int,
) -> tuple[BarDef, ...]:
    ends: dict[int, int] = {}
    for s in structures:
        if s.cfg_type != CFG_PCI:
            ends[s.bar] = max(ends.get(s.bar, 0), s.offset + s.length)
    if msix is not None:
        table_end = msix.table_offset + 16 * msix.vectors
        pba_end = msix.pba_offset + 8 * ((msix.vectors + 63) // 64)
        ends[msix.table_bar] = max(ends.get(msix.table_bar, 0), table_end)
        ends[msix.pba_bar] = max(ends.get(msix.pba_bar, 0), pba_end)
    bars = []
    for index, bits in sorted(types.items()):
        if bits & 1:  # the legacy interface's I/O BAR (4.1.4.10)
            size = _power_of_two(LEGACY_HEADER_BYTES + device_config_bytes, 4)
            bars.append(BarDef(index, size, io=True))
        elif index in ends:
            mem64, prefetch = bool(bits & _BAR_TYPE_64), bool(bits & _BAR_PREFETCH)
            size = _power_of_two(ends[index], 0x1000)
            bars.append(BarDef(index, size, mem64=mem64, prefetchable=prefetch))
    return tuple(bars)


def qemu_default_layout(vectors: int = 2, device_config_bytes: int = 0) -> VirtioPciLayout:
    """What QEMU 10.2.2's virtio-*-pci present (observed on virtio-rng-pci): the legacy I/O
    BAR 0; MSI-X at 0x98 with its table at BAR 1 offset 0 and PBA at 0x800; the common,
    ISR, device and notification structures at 0x0, 0x1000, 0x2000, 0x3000 of the 64-bit
    prefetchable BAR 4, 4 KiB each, notify_off_multiplier 4; the PCI configuration access
    capability at 0x84; the list from 0x98 down to 0x40."""
    structures = (
        Structure(CFG_PCI, 0x84, 0, 0, 0),
        Structure(CFG_NOTIFY, 0x70, 4, 0x3000, 0x1000, notify_multiplier=4),
        Structure(CFG_DEVICE, 0x60, 4, 0x2000, 0x1000),
        Structure(CFG_ISR, 0x50, 4, 0x1000, 0x1000),
        Structure(CFG_COMMON, 0x40, 4, 0x0000, 0x1000),
    )
    msix = MsixPlace(0x98, vectors, 1, 0, 1, 0x800)
    types = {0: 0x1, 1: 0x0, 4: _BAR_TYPE_64 | _BAR_PREFETCH}
    bars = _bars_holding(structures, msix, types, device_config_bytes)
    return VirtioPciLayout(structures, msix, (0x98, 0x84, 0x70, 0x60, 0x50, 0x40), bars)

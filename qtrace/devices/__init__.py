"""Device packs and their registry: the one place qtrace looks up what it knows of a device.

Every stage that needs device knowledge (annotate for register names and frame layers, the
guests for which workload drives a device, refemu/verify for a reference model) asks this
registry, never a list of its own. Packs are the folders beside this module, plus those in
the directories named by ``$QTRACE_DEVICE_PACKS`` (``os.pathsep``-separated), so a device is
added by adding one folder. A device without a pack still works everywhere, with generic
defaults (:func:`pack_or_default`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from qtrace.devices.pack import (
    DEVICE_FORMAT,
    GENERIC_PROBE_SEQUENCE,
    DevicePack,
    QtestSetup,
    load_pack,
)
from qtrace.devices.registers import (
    ACCESS_KINDS,
    BitField,
    Decoded,
    FieldValue,
    Register,
    RegisterMap,
    parse_register_map,
)
from qtrace.devices.rules import FrameRule, parse_frame_rules
from qtrace.devices.start import (
    DeviceProperty,
    DeviceStart,
    RunFile,
    device_start,
    parse_device_properties,
    unstartable_reason,
)
from qtrace.errors import ReportError

__all__ = [
    "ACCESS_KINDS",
    "CAPTURED_QDEV_ID",
    "DEVICE_FORMAT",
    "GENERIC_PROBE_SEQUENCE",
    "PACKS_ENV",
    "BitField",
    "Decoded",
    "DevicePack",
    "DeviceProperty",
    "DeviceStart",
    "FieldValue",
    "FrameRule",
    "QtestSetup",
    "Register",
    "RegisterMap",
    "RunFile",
    "all_packs",
    "clear_registry_cache",
    "device_frame_rules",
    "device_start",
    "load_object",
    "model_class",
    "model_packs",
    "parse_device_properties",
    "pack_for",
    "pack_named",
    "pack_or_default",
    "parse_frame_rules",
    "pci_config_map",
    "qemu_device_option",
    "register_map",
    "register_map_for",
    "unstartable_reason",
]

CAPTURED_QDEV_ID = "qtrace0"
"""The qdev ``id`` every ``-device`` option built here gives the device (captures and qtest).

Why fixed: the collector inside gdb finds the device's QOM object by its path,
``/machine/peripheral/<id>``, whatever the device and machine; without an id QEMU would
file it under ``/machine/peripheral-anon/device[N]`` with an N that depends on the
other devices."""

PACKS_ENV = "QTRACE_DEVICE_PACKS"
"""Extra directories of packs (each holding ``<name>/pack.toml``), searched after qtrace's own."""


def _pack_folders(root: Traversable) -> list[Traversable]:
    if not root.is_dir():
        return []
    return sorted(
        (
            child
            for child in root.iterdir()
            if child.is_dir() and child.joinpath("pack.toml").is_file()
        ),
        key=lambda child: child.name,
    )


@cache
def all_packs() -> tuple[DevicePack, ...]:
    """Every pack: qtrace's own in name order, then those of ``$QTRACE_DEVICE_PACKS``.

    Raises:
        ReportError: a pack is invalid, or two packs claim the same name or QOM type.
    """
    roots: list[Traversable] = [resources.files("qtrace.devices")]
    roots += [Path(p) for p in os.environ.get(PACKS_ENV, "").split(os.pathsep) if p]
    packs: list[DevicePack] = []
    owner: dict[str, str] = {}
    for root in roots:
        for folder in _pack_folders(root):
            pack = load_pack(folder)
            for qom_type in pack.qom_types:
                if qom_type in owner:
                    raise ReportError(
                        f"device packs {owner[qom_type]!r} and {pack.name!r} "
                        f"both claim {qom_type!r}",
                        hint=f"check {folder}/pack.toml",
                    )
                owner[qom_type] = pack.name
            packs.append(pack)
    return tuple(packs)


def clear_registry_cache() -> None:
    """Forget loaded packs and maps (after ``$QTRACE_DEVICE_PACKS`` changed)."""
    all_packs.cache_clear()
    _register_map_of.cache_clear()
    pci_config_map.cache_clear()


def pack_for(device: str) -> DevicePack | None:
    """The pack covering the QOM type ``device`` (``e1000``, ``e1000-82540em``, ...), if any."""
    for pack in all_packs():
        if device in pack.qom_types:
            return pack
    return None


def pack_named(name: str) -> DevicePack:
    """The pack called ``name``; ``KeyError`` if there is none."""
    for pack in all_packs():
        if pack.name == name:
            return pack
    raise KeyError(name)


def pack_or_default(device: str) -> DevicePack:
    """The device's pack, or generic defaults for a device qtrace has no pack for."""
    return pack_for(device) or DevicePack(name=device, qom_types=(device,))


def device_frame_rules() -> list[FrameRule]:
    """The frame rules of every pack, in pack order (the annotate stage places them)."""
    return [rule for pack in all_packs() for rule in pack.frame_rules]


@cache
def _register_map_of(name: str) -> RegisterMap:
    pack = pack_named(name)
    if pack.registers_file is None:
        raise ReportError(f"device pack {name!r} has no registers.toml")
    return parse_register_map(pack.registers_file, pack.name, _register_map_of)


@cache
def pci_config_map() -> RegisterMap:
    """The type-0 configuration header every PCI function has (``pci-config.toml``)."""
    path = resources.files("qtrace.devices").joinpath("pci-config.toml")
    return parse_register_map(path, "pci-config", _register_map_of)


def register_map(device: str) -> RegisterMap | None:
    """The register map of ``device``'s pack, or ``None`` without a pack or a map."""
    pack = pack_for(device)
    if pack is None or pack.registers_file is None:
        return None
    return _register_map_of(pack.name)


def register_map_for(device: str, space: str) -> RegisterMap | None:
    """The map for ``device``'s accesses in ``space`` (config space: the generic PCI map)."""
    if space == "pci-config":
        return pci_config_map()
    return register_map(device)


def model_packs() -> tuple[DevicePack, ...]:
    """The packs that have a reference model (``[model] class``), in registry order."""
    return tuple(pack for pack in all_packs() if pack.model)


def load_object(spec: str, where: str = "device pack") -> object:
    """Import ``module:attribute`` (a pack's model class or verify support) and return it.

    Raises:
        ReportError: the module or the attribute does not exist.
    """
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute) if attribute else module
    except (ImportError, AttributeError) as exc:
        raise ReportError(f"{where}: cannot load {spec!r}: {exc}") from exc


def model_class(device: str) -> object | None:
    """The reference model ``device``'s pack names (imported), or ``None`` without one.

    Returned as ``object``: the registry does not know the model protocol
    (:class:`qtrace.refemu.PciDeviceModel`); its user checks what it got.
    """
    pack = pack_for(device)
    if pack is None or pack.model is None:
        return None
    return load_object(pack.model, f"{pack.name}/pack.toml [model] class")


def qemu_device_option(
    device: str, slot: int, extra: Sequence[tuple[str, str]] = (), *, bus: str | None = None
) -> str:
    """QEMU's ``-device`` value for ``device`` at device number ``slot`` of the root bus, or
    of ``bus`` (a bridge's qdev id), with the qdev id :data:`CAPTURED_QDEV_ID`: the
    properties its pack says it needs to start (``[start] properties``), then ``extra``
    (which wins on a clash). The capture and qtest both build the option here, so a device
    starts the same way in both."""
    properties = dict(pack_or_default(device).qemu_properties)
    properties.update(extra)
    where = f"bus={bus}," if bus is not None else ""
    return f"{device},id={CAPTURED_QDEV_ID},{where}addr={slot:02x}.0" + "".join(
        f",{k}={v}" for k, v in properties.items()
    )

"""Device discovery against a QEMU build: which PCI devices exist, and their handlers.

Reads through a :class:`SourceReader` (the capture container implements it), so the
logic here is plain text processing that tests can feed with any files.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Protocol

from qtrace.discover.handlers import HandlerSpec, defines_type, find_handlers, type_macros
from qtrace.errors import CollectorError, UnknownDevice

__all__ = [
    "SourceReader",
    "DeviceInfo",
    "parse_device_help",
    "check_device_name",
    "discover_handlers",
]


class SourceReader(Protocol):
    """Read access to a QEMU source tree (paths relative to its root)."""

    def read(self, path: str) -> str: ...

    def grep(self, fixed_string: str, under: tuple[str, ...]) -> list[str]: ...


@dataclass(frozen=True)
class DeviceInfo:
    """A device as ``-device help`` lists it."""

    name: str
    bus: str
    description: str = ""


_DEVICE_LINE = re.compile(
    r'^name "(?P<name>[^"]+)"(?:, bus (?P<bus>[\w-]+))?(?:, .*?desc "(?P<desc>[^"]*)")?'
)


def parse_device_help(text: str) -> list[DeviceInfo]:
    """Devices from QEMU's ``-device help`` output."""
    devices = []
    for line in text.splitlines():
        match = _DEVICE_LINE.match(line.strip())
        if match:
            devices.append(
                DeviceInfo(match.group("name"), match.group("bus") or "", match.group("desc") or "")
            )
    return devices


def pci_devices(devices: list[DeviceInfo]) -> list[DeviceInfo]:
    return [d for d in devices if d.bus.upper() == "PCI"]


def check_device_name(name: str, devices: list[DeviceInfo]) -> None:
    """Raise :class:`UnknownDevice` with the closest names unless ``name`` is a PCI device."""
    names = [d.name for d in pci_devices(devices)]
    if name not in names:
        raise UnknownDevice(name, difflib.get_close_matches(name, names, n=5, cutoff=0.4))


def discover_handlers(device: str, source: SourceReader) -> list[HandlerSpec]:
    """The register handlers of ``device`` (its QOM type name), found in the source.

    Raises:
        CollectorError: the type or its MemoryRegionOps could not be found.
    """
    literal_files = source.grep(f'"{device}"', ("hw", "include"))
    texts = {path: source.read(path) for path in literal_files}
    macros = type_macros(device, texts)
    for macro in sorted(macros):
        for path in source.grep(macro, ("hw",)):
            if path not in texts:
                texts[path] = source.read(path)
    defining = {
        p: t for p, t in texts.items() if p.endswith(".c") and defines_type(t, device, macros)
    }
    if not defining:
        raise CollectorError(
            f"could not find where QOM type {device!r} is defined in the QEMU source"
        )
    handlers = find_handlers(defining)
    if not handlers:
        raise CollectorError(
            f"found {device!r} in {', '.join(sorted(defining))} "
            f"but no MemoryRegionOps handlers there"
        )
    return handlers

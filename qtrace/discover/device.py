"""Which PCI devices a QEMU build has (``-device help``), and the source reader protocol.

A device's regions and handlers are not found here: the collector reads them from the
running QEMU (``gdbscripts/qtrace_gdb/discovery.py``). The source is still read, through
a :class:`SourceReader` (the capture container implements it), for the exit cases of
``kvm_cpu_exec`` and for the lines reports quote.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Protocol

from qtrace.errors import UnknownDevice

__all__ = [
    "SourceReader",
    "DeviceInfo",
    "parse_device_help",
    "check_device_name",
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

"""Listing the PCI devices a debug image's QEMU can capture (``-device help``)."""

from __future__ import annotations

from qtrace.image.builder import qemu_image_tag, require_image
from qtrace.discover.device import DeviceInfo, parse_device_help, pci_devices
from qtrace.docker_env import ContainerKind, ContainerSpec, LabelledContainer, connect
from qtrace.errors import LaunchFailure
from qtrace.launch.qemu_argv import QEMU_BINARY

__all__ = ["list_pci_devices"]


def list_pci_devices(qemu_version: str) -> list[DeviceInfo]:
    """PCI devices of the image's QEMU, sorted by name."""
    client = connect()
    require_image(client, qemu_version)
    spec = ContainerSpec(image=qemu_image_tag(qemu_version), kind=ContainerKind.DEVICES)
    with LabelledContainer(client, spec) as container:
        result = container.exec([QEMU_BINARY, "-device", "help"])
    if result.exit_code != 0:
        raise LaunchFailure(
            "QEMU -device help failed in the debug image",
            result.exit_code,
            result.output.splitlines()[-20:],
        )
    return sorted(pci_devices(parse_device_help(result.output)), key=lambda d: d.name)

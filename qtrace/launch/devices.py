"""Listing the PCI devices a debug image's QEMU can capture (``-device help``)."""

from __future__ import annotations

from qtrace.image.builder import find_qemu_image, qemu_image_tag
from qtrace.discover.device import DeviceInfo, parse_device_help, pci_devices
from qtrace.docker_env import connect, owner_labels
from qtrace.errors import ImageMissing
from qtrace.launch.qemu_argv import QEMU_BINARY

__all__ = ["list_pci_devices"]


def list_pci_devices(qemu_version: str) -> list[DeviceInfo]:
    """PCI devices of the image's QEMU, sorted by name."""
    client = connect()
    if find_qemu_image(client, qemu_version) is None:
        raise ImageMissing(
            f"The debug image {qemu_image_tag(qemu_version)} has not been built.",
            hint=f"Run `qtrace build --qemu-version {qemu_version}`.",
        )
    output = client.containers.run(
        qemu_image_tag(qemu_version),
        [QEMU_BINARY, "-device", "help"],
        network_mode="none",
        remove=True,
        labels=owner_labels("devices", "devices"),
    )
    return sorted(pci_devices(parse_device_help(output.decode("utf-8", errors="replace"))), key=lambda d: d.name)

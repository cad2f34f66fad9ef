"""``qtrace devices``: the PCI devices this QEMU build can capture."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from qtrace.image.versions import DEFAULT_QEMU_VERSION
from qtrace.cli.app import qtrace_command
from qtrace.cli.console import console
from qtrace.launch.devices import list_pci_devices

__all__ = ["devices"]


@qtrace_command("devices")
def devices(
    qemu_version: Annotated[
        str, typer.Option("--qemu-version", help="Which debug image to ask.")
    ] = DEFAULT_QEMU_VERSION,
) -> None:
    """List the PCI devices the debug image's QEMU knows (names to pass to `qtrace capture`)."""
    table = Table(title=f"PCI devices of QEMU {qemu_version}")
    table.add_column("device")
    table.add_column("description")
    for device in list_pci_devices(qemu_version):
        table.add_row(device.name, device.description)
    console.print(table)

"""The firmware guest's plan: SeaBIOS and the device's iPXE option ROM, no kernel, no disk.

QEMU starts with the device's own option ROM (Debian's ``ipxe-qemu``, found through
``-L``); SeaBIOS enumerates PCI, runs the ROM, and iPXE drives the NIC: it resets it,
reads the EEPROM and polls for DHCP replies that never come (there is no network backend).
The firmware never finishes by itself, so the run is bounded by ``--max-hits`` (status
``ok`` when that stops it) or ``--timeout``. Collectors are armed from QEMU's start: the
firmware's PCI enumeration is part of the story.

A machine reset is a failure: with nothing to boot SeaBIOS halts and never resets (QEMU's
default ``reboot-timeout`` is -1), so a reset means the guest crashed; ``-no-reboot``
turns it into QEMU's exit with status 0, which this plan does not count as ok (the
capture reports ``error``, QEMU exited with status 0). This is what happens under the
nested KVM of our machines: iPXE resets the machine shortly after it starts, after
about 16 e1000 MMIO accesses (see ENVIRONMENT.md); use ``--accel tcg`` there.
"""

from __future__ import annotations

from qtrace.guests.plan import GuestPlan

__all__ = ["FIRMWARE_MEMORY_MB", "firmware_plan"]

FIRMWARE_MEMORY_MB = 64


def firmware_plan() -> GuestPlan:
    """Plan for SeaBIOS plus the device's option ROM (any device with a ROM in ipxe-qemu)."""
    return GuestPlan(
        name="firmware",
        memory_mb=FIRMWARE_MEMORY_MB,
        arm_on=None,
        marker_port=None,
        exit_port=None,
        ok_exit_statuses=(),
        serial_verdict=False,
        rom=True,
    )

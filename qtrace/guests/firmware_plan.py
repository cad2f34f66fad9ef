"""The firmware guest's plan: SeaBIOS and the device's iPXE option ROM, no kernel, no disk.

QEMU starts with the device's own option ROM (Debian's ``ipxe-qemu``, found through
``-L``); SeaBIOS enumerates PCI and runs the ROM; iPXE resets the NIC, reads its EEPROM and
polls for DHCP replies that never come (there is no network backend), gives up and returns
to SeaBIOS, which finds nothing else to boot. ``-boot reboot-timeout=0`` makes SeaBIOS
reset the machine at once then (QEMU's default, -1, would make it wait forever) and
``-no-reboot`` turns that reset into QEMU's exit with status 0: that is the firmware's
end, status ``ok``. Under TCG this takes about 22 s without gdb. Longer runs are
bounded by ``--max-hits`` (status ``ok``) or ``--timeout``.

SeaBIOS's debug output (port 0x402) goes to ``firmware.log`` in the run directory; its
last lines say how the firmware ended ("No bootable device ... Rebooting." for the end
above). A crash that resets the machine also exits with status 0, so read that log when a
firmware capture ends early.

Under the nested KVM of our machines the iPXE ROM does not get far: QEMU 10.2.2 stops
with ``KVM internal error. Suberror: 1`` (emulation failure) after a few dozen device
accesses and pauses the guest; the capture sees the internal error and ends at once (status
``error``, with the suberror, the guest's instruction and the advice to use ``--accel
tcg``). ENVIRONMENT.md saw a reset there instead; that would end as ``ok`` with a short
trace and "Attempting a hard reboot" without "No bootable device" in ``firmware.log``.
"""

from __future__ import annotations

from qtrace.guests.plan import GuestPlan

__all__ = ["FIRMWARE_DEBUGCON_IOBASE", "FIRMWARE_LOG_NAME", "FIRMWARE_MEMORY_MB", "firmware_plan"]

FIRMWARE_MEMORY_MB = 64

FIRMWARE_DEBUGCON_IOBASE = 0x402
"""SeaBIOS writes its debug messages to this port (its QEMU default)."""

FIRMWARE_LOG_NAME = "firmware.log"

SERIAL_PORTS = (0x3F8, 8)


def firmware_plan(out_mount: str) -> GuestPlan:
    """Plan for SeaBIOS plus the device's option ROM (any device with a ROM in ipxe-qemu)."""
    return GuestPlan(
        name="firmware",
        memory_mb=FIRMWARE_MEMORY_MB,
        arm_on=None,
        marker_port=None,
        exit_port=None,
        ok_exit_statuses=(0,),
        quiet_ports=(SERIAL_PORTS, (FIRMWARE_DEBUGCON_IOBASE, 1)),
        rom=True,
        extra_qemu_args=(
            "-boot",
            "reboot-timeout=0",
            "-chardev",
            f"file,id=qtrace-firmware,path={out_mount}/{FIRMWARE_LOG_NAME}",
            "-device",
            f"isa-debugcon,iobase={FIRMWARE_DEBUGCON_IOBASE:#x},chardev=qtrace-firmware",
        ),
    )

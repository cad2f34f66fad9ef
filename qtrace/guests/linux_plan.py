"""The linux guest's plan: Debian's kernel, its own drivers, a busybox initramfs built at
capture time.

The capture image carries Debian's kernel and the part of its module tree that holds the
drivers of the classes the guest has a workload for, with modules.alias and modules.dep,
in :data:`LINUX_KERNEL_DIR` (``docker/install-linux-modules.sh``), and busybox-static;
``linux/mkinitramfs.py`` packs them with ``linux/init`` and ``linux/workloads`` into a
reproducible initramfs in the run directory. No driver is named here: the guest reads the
device's modalias from sysfs and loads the module modules.alias names for it, with its
dependencies (what udev does), then runs the workload of the class the driver gave the
device (network, block, hwrng) and prints its evidence. It ends the run by writing 0 to
isa-debug-exit (QEMU exits with status 1). The init script powers off on an error
(status 0), and a kernel panic reboots (``panic=-1``), which ``-no-reboot`` turns into
status 0 too. Either status is judged by the serial log (:mod:`qtrace.guests.linux_output`):
``ok`` only with the ``done`` line and its evidence, else the guest's ``FAIL`` reason (or
that there was no ``done`` line). The serial log keeps the guest's ``qtrace-linux: ...``
lines either way.

The collectors are armed from QEMU's start (there is no start marker): under TCG there are
no exit records, and the driver's accesses all come after the kernel has booted anyway.
Under the nested KVM of our machines the 64-bit kernel never exits to QEMU again after
decompression, so the capture ends by its hang detection (status ``guest-hang``).
"""

from __future__ import annotations

from qtrace.guests import DEBUG_EXIT_IOBASE, DEBUG_EXIT_OK_STATUS
from qtrace.guests.linux_output import LINUX_DONE_LINE, linux_verdict
from qtrace.guests.plan import GuestPlan

__all__ = [
    "INITRAMFS_NAME",
    "LINUX_DONE_LINE",
    "LINUX_KERNEL_DIR",
    "LINUX_MEMORY_MB",
    "linux_append",
    "linux_plan",
]

LINUX_KERNEL_DIR = "/opt/qtrace-linux"
"""Where the image keeps ``vmlinuz``, ``kernel-package.txt`` and the module tree
(``modules/lib/modules/<version>/``)."""

LINUX_MEMORY_MB = 256
"""The initramfs (about 12 MB packed, 40 MB unpacked) lives in this RAM too."""

POWEROFF_STATUS = 0
"""QEMU's status after init powers off on a failure, or after a panic (``panic=-1`` and
``-no-reboot``): the run ended, and the serial verdict says how (the guest's ``FAIL``
reason, or no ``done`` line), rather than only "QEMU exited with status 0"."""

INITRAMFS_SUBDIR = "linux"
INITRAMFS_NAME = "initramfs.cpio.gz"


def linux_append(slot: int, exit_port: int = DEBUG_EXIT_IOBASE) -> str:
    """The kernel command line.

    ``panic=-1`` reboots at once on a panic (``-no-reboot`` makes that QEMU's exit);
    ``quiet`` keeps the serial log to the guest's own lines; the kernel hands the unknown
    ``qtrace_exit_port=<decimal>`` and ``qtrace_pci=00:<slot>.0`` (the device, or the bridge
    it sits behind, on bus 0) to init as environment variables.
    """
    return f"console=ttyS0 quiet panic=-1 qtrace_exit_port={exit_port} qtrace_pci=00:{slot:02x}.0"


def linux_plan(
    slot: int,
    guests_mount: str,
    out_mount: str,
    record_async: tuple[str, ...] = (),
) -> GuestPlan:
    """Plan for Debian's kernel driving the device at bus 0 ``slot`` (or behind the bridge
    there) with the driver its modules.alias names; ``record_async``: the kinds of the
    device's asynchronous work to record (its pack's ``[guests] linux_async``; none by
    default, see :attr:`GuestPlan.record_async`)."""
    out = f"{out_mount}/{INITRAMFS_SUBDIR}"
    return GuestPlan(
        name="linux",
        build_commands=(
            (
                "python3",
                f"{guests_mount}/linux/mkinitramfs.py",
                "--kernel-dir",
                LINUX_KERNEL_DIR,
                "--out",
                out,
            ),
        ),
        kernel=f"{LINUX_KERNEL_DIR}/vmlinuz",
        initrd=f"{out}/{INITRAMFS_NAME}",
        append=linux_append(slot, DEBUG_EXIT_IOBASE),
        memory_mb=LINUX_MEMORY_MB,
        arm_on=None,
        marker_port=None,
        exit_port=DEBUG_EXIT_IOBASE,
        ok_exit_statuses=(DEBUG_EXIT_OK_STATUS, POWEROFF_STATUS),
        serial_verdict=linux_verdict,
        record_async=record_async or False,
    )

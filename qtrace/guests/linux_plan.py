"""The linux guest's plan: Debian's kernel and NIC driver, a busybox initramfs built at
capture time.

The capture image carries Debian's kernel and its NIC modules in :data:`LINUX_KERNEL_DIR`
(see ``docker/install-deps.sh``) and busybox-static; ``linux/mkinitramfs.py`` packs them
with ``linux/init`` into a reproducible initramfs in the run directory. The guest loads
the driver, brings eth0 up, sends a few ARP requests to an unused link-local address and
ends the run by writing 0 to isa-debug-exit (QEMU exits with status 1). Any other end is
a failure: the init script powers off on an error (status 0), and a kernel panic reboots
(``panic=-1``), which ``-no-reboot`` turns into status 0 too. The serial log keeps the
guest's ``qtrace-linux: ...`` lines either way.

The collectors are armed from QEMU's start (there is no start marker): under TCG there are
no exit records, and the driver's accesses all come after the kernel has booted anyway.
Under the nested KVM of our machines the 64-bit kernel never exits to QEMU again after
decompression, so the capture ends by its hang detection (status ``guest-hang``).
"""

from __future__ import annotations

from qtrace.devices import all_packs, pack_or_default
from qtrace.errors import UsageError
from qtrace.guests import DEBUG_EXIT_IOBASE, DEBUG_EXIT_OK_STATUS
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
"""Where the image keeps ``vmlinuz``, the NIC modules and ``kernel-package.txt``."""

LINUX_MEMORY_MB = 256

LINUX_DONE_LINE = "qtrace-linux: done"
"""How the serial log's success line starts (failures print ``qtrace-linux: FAIL <why>``)."""

INITRAMFS_SUBDIR = "linux"
INITRAMFS_NAME = "initramfs.cpio.gz"


def linux_append(exit_port: int = DEBUG_EXIT_IOBASE) -> str:
    """The kernel command line.

    ``panic=-1`` reboots at once on a panic (``-no-reboot`` makes that QEMU's exit);
    ``quiet`` keeps the serial log to the guest's own lines; the kernel hands the unknown
    ``qtrace_exit_port=<decimal>`` to init as an environment variable.
    """
    return f"console=ttyS0 quiet panic=-1 qtrace_exit_port={exit_port}"


def linux_plan(device: str, guests_mount: str, out_mount: str) -> GuestPlan:
    """Plan for Debian's kernel driving ``device`` with its own driver.

    The driver is the one the device's pack names (``[guests] linux_driver``).

    Raises:
        UsageError: no pack names a Linux driver for ``device``.
    """
    module = pack_or_default(device).linux_driver
    if module is None:
        supported = sorted(t for pack in all_packs() if pack.linux_driver for t in pack.qom_types)
        raise UsageError(
            f"--guest linux has no driver for {device!r}.",
            hint=f"It supports {', '.join(supported)}; use --guest probe or firmware for others.",
        )
    out = f"{out_mount}/{INITRAMFS_SUBDIR}"
    return GuestPlan(
        name="linux",
        build_commands=(
            (
                "python3",
                f"{guests_mount}/linux/mkinitramfs.py",
                "--module",
                module,
                "--kernel-dir",
                LINUX_KERNEL_DIR,
                "--out",
                out,
            ),
        ),
        kernel=f"{LINUX_KERNEL_DIR}/vmlinuz",
        initrd=f"{out}/{INITRAMFS_NAME}",
        append=linux_append(DEBUG_EXIT_IOBASE),
        memory_mb=LINUX_MEMORY_MB,
        arm_on=None,
        marker_port=None,
        exit_port=DEBUG_EXIT_IOBASE,
        ok_exit_statuses=(DEBUG_EXIT_OK_STATUS,),
        serial_verdict=False,
        record_async=False,  # see GuestPlan.record_async
    )

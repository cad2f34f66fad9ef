"""Where things are inside a debug image: the one statement of the image's layout.

``docker/build-qemu.sh`` and ``docker/install-deps.sh`` put them there; every stage that runs
something in a container (capture, qtest, ``devices``, ``doctor``) reads the paths from here.
"""

from __future__ import annotations

__all__ = ["FIRMWARE_DIRS", "QEMU_BINARY", "QEMU_SOURCE_ROOT"]

QEMU_SOURCE_ROOT = "/src/qemu"
"""The QEMU source tree the binary was built from (gdb's file names are relative to it)."""

QEMU_BINARY = f"{QEMU_SOURCE_ROOT}/build/qemu-system-x86_64"
"""The ``--enable-debug`` binary."""

FIRMWARE_DIRS = ("/usr/share/seabios", "/usr/lib/ipxe/qemu", "/usr/share/qemu")
"""Debian's SeaBIOS, iPXE option ROMs and QEMU data (kvmvapic.bin, ...), passed with ``-L``."""

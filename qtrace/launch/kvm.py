"""Is KVM usable here? Asked the way QEMU asks: open /dev/kvm and create a VM."""

from __future__ import annotations

import fcntl
import os

__all__ = ["kvm_usable", "KVM_GET_API_VERSION", "KVM_CREATE_VM"]

KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO, 0x00)
KVM_CREATE_VM = 0xAE01  # _IO(KVMIO, 0x01)


def kvm_usable(device: str = "/dev/kvm") -> tuple[bool, str]:
    """(usable, why) for ``device``; never raises."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return False, f"cannot open {device}: {exc.strerror}"
    try:
        fcntl.ioctl(fd, KVM_GET_API_VERSION)
        vm = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
        os.close(vm)
        return True, "KVM_CREATE_VM succeeded"
    except OSError as exc:
        return False, f"KVM_CREATE_VM failed: {exc.strerror}"
    finally:
        os.close(fd)

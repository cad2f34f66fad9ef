"""The QEMU command line for a capture, built in one pure function.

Choices that matter and why: ``-nodefaults -display none -monitor none`` (only the devices
we name exist), ``-no-reboot`` (a guest reset ends the run instead of looping), the device
at a fixed PCI slot with ``romfile=`` (no option ROM: under nested KVM iPXE resets the
machine), an isa-debugcon port as the guest's start marker, isa-debug-exit to end the run,
firmware from Debian's packages with ``-L``, and never ``-cpu host`` (it aborts under the
nested KVM of our machines). No network backend: frames the NIC sends are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qtrace.devices import qemu_device_option
from qtrace.image.layout import FIRMWARE_DIRS, QEMU_BINARY

__all__ = ["QemuConfig", "qemu_argv", "FIRMWARE_DIRS", "QEMU_BINARY"]


@dataclass(frozen=True)
class QemuConfig:
    """What the capture asks QEMU to be."""

    device: str
    accel: str  # "kvm" or "tcg"
    machine: str = "pc"
    slot: int = 5
    memory_mb: int = 64
    kernel: str | None = None
    append: str | None = None
    initrd: str | None = None
    out_dir: str = "/out"
    marker_port: int | None = 0xE9
    exit_port: int | None = 0xF4
    rom: bool = False
    extra: tuple[str, ...] = field(default_factory=tuple)


def qemu_argv(cfg: QemuConfig) -> list[str]:
    """QEMU's arguments (without the binary) for ``cfg``."""
    argv = ["-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot"]
    for directory in FIRMWARE_DIRS:
        argv += ["-L", directory]
    argv += ["-machine", cfg.machine, "-accel", cfg.accel, "-m", str(cfg.memory_mb)]
    argv += ["-serial", f"file:{cfg.out_dir}/serial.log"]
    if cfg.marker_port is not None:
        argv += [
            "-chardev",
            f"file,id=qtrace-marker,path={cfg.out_dir}/marker.log",
            "-device",
            f"isa-debugcon,iobase={cfg.marker_port:#x},chardev=qtrace-marker",
        ]
    if cfg.exit_port is not None:
        argv += ["-device", f"isa-debug-exit,iobase={cfg.exit_port:#x},iosize=0x04"]
    no_rom = () if cfg.rom else (("romfile", ""),)
    argv += ["-device", qemu_device_option(cfg.device, cfg.slot, no_rom)]
    if cfg.kernel:
        argv += ["-kernel", cfg.kernel]
    if cfg.initrd:
        argv += ["-initrd", cfg.initrd]
    if cfg.append:
        argv += ["-append", cfg.append]
    return argv + list(cfg.extra)

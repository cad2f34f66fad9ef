"""The QEMU command line for a capture, built in one pure function.

Choices that matter and why: ``-nodefaults -display none -monitor none`` (only the devices
we name exist), ``-no-reboot`` (a guest reset ends the run instead of looping), the device
at a fixed PCI slot with ``romfile=`` (no option ROM: under nested KVM iPXE resets the
machine), an isa-debugcon port as the guest's start marker, isa-debug-exit to end the run,
firmware from Debian's packages with ``-L``, and never ``-cpu host`` (it aborts under the
nested KVM of our machines). No network backend: frames the NIC sends are dropped. What the
device needs to start (a drive, an audio backend, ...: :mod:`qtrace.devices.start`) comes
before its ``-device``, since a link property names an object that must exist already.
``-name qtrace,debug-threads=on`` makes QEMU name its threads (``CPU 0/KVM``, ``worker``,
...), so every record says which thread it ran on.
With ``--topology root-port`` the device sits behind a ``pcie-root-port`` (q35).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qtrace.devices import DeviceStart, qemu_device_option
from qtrace.image.layout import FIRMWARE_DIRS, QEMU_BINARY
from qtrace.trace.kinds import Topology

__all__ = [
    "QemuConfig",
    "qemu_argv",
    "device_bdf",
    "FIRMWARE_DIRS",
    "QEMU_BINARY",
    "ROOT_PORT_ID",
    "ROOT_PORT_SLOT",
]

ROOT_PORT_ID = "qtrace-rp0"
"""The qdev id of the root port the device sits behind with ``--topology root-port``."""
ROOT_PORT_SLOT = 4
"""The root port's device number on bus 0 (00:04.0; the device stays clear of 00:05.0)."""
ROOT_PORT_BUS = 1
"""The root port's secondary bus as the guest numbers it: the first bridge found on bus 0
gets bus 1 (the probe, SeaBIOS and Linux all number depth first), and q35 has no other."""


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
    start: DeviceStart = field(default_factory=DeviceStart)
    topology: Topology = Topology.ROOT_BUS


def device_bdf(topology: Topology, slot: int) -> tuple[int, int]:
    """The captured device's ``(bus, device number)`` as the guest sees it."""
    return (ROOT_PORT_BUS, 0) if topology is Topology.ROOT_PORT else (0, slot)


def _device_args(cfg: QemuConfig) -> list[str]:
    """The device's ``-device`` (behind the root port when asked), preceded by what it needs."""
    argv = list(cfg.start.args)
    props = (*cfg.start.properties, *(() if cfg.rom else (("romfile", ""),)))
    if cfg.topology is Topology.ROOT_PORT:
        argv += [
            "-device",
            f"pcie-root-port,id={ROOT_PORT_ID},bus=pcie.0,chassis=1,addr={ROOT_PORT_SLOT:02x}.0",
            "-device",
            qemu_device_option(cfg.device, 0, props, bus=ROOT_PORT_ID),
        ]
    else:
        argv += ["-device", qemu_device_option(cfg.device, cfg.slot, props)]
    return argv


def qemu_argv(cfg: QemuConfig) -> list[str]:
    """QEMU's arguments (without the binary) for ``cfg``."""
    argv = ["-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot"]
    argv += ["-name", "qtrace,debug-threads=on"]  # threads named in records (CPU 0/KVM, ...)
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
    argv += _device_args(cfg)
    if cfg.kernel:
        argv += ["-kernel", cfg.kernel]
    if cfg.initrd:
        argv += ["-initrd", cfg.initrd]
    if cfg.append:
        argv += ["-append", cfg.append]
    return argv + list(cfg.extra)

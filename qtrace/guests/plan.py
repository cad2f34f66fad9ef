"""What a guest needs from a capture: how to build it in the container and how to boot it.

Each guest kind (probe, linux, firmware) provides a :class:`GuestPlan`; the capture
service only follows the plan, so a new guest is a new plan, not a change to capture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GuestPlan"]


@dataclass(frozen=True)
class GuestPlan:
    """How to build and boot one guest, and how to tell it finished well.

    Attributes:
        name: guest kind (``probe``, ``linux``, ``firmware``).
        build_commands: argv lists run in the capture container (cwd /out) before QEMU.
        kernel, initrd, append: QEMU ``-kernel``/``-initrd``/``-append`` (container paths).
        memory_mb: guest RAM.
        arm_on: function whose first hit arms the collectors (the guest's start marker);
            ``None`` arms them from QEMU's start.
        marker_port: isa-debugcon port the guest writes its start marker to, or ``None``.
        exit_port: isa-debug-exit port, or ``None`` (the guest powers off instead).
        ok_exit_statuses: QEMU exit statuses that mean the guest ran to its end.
        serial_verdict: reads the guest's own verdict from its serial log (the path):
            ``None`` when it reports success, else why not (the probe's ``DONE`` line, the
            linux guest's ``done`` line and its evidence); ``None`` for a guest that has none.
            It may raise ``QtraceError`` or ``OSError`` for a log it cannot read.
        quiet_ports: ``(base, count)`` port ranges whose exits are counted, not recorded
            (in ``kernel.jsonl`` too: their ``kvm_pio`` events and the exits they caused).
        quiet_gsis: interrupt lines whose ``kvm_set_irq`` events ``kernel.jsonl`` counts
            instead of keeping: COM1's ISA IRQ 4, which QEMU's serial model lowers on nearly
            every register access (23,000 events in one KVM probe capture).
        rom: keep the device's option ROM (the firmware guest needs iPXE).
        extra_qemu_args: anything else the guest needs on QEMU's command line.
        record_async: record the device's work off the register path (``async`` records):
            ``True`` all of it, a tuple of kinds (``ASYNC_KINDS``) only those, ``False`` none.
            Its hooks stop QEMU on every timer armed and bottom half scheduled in the whole
            machine: a Linux guest under TCG arms tens of thousands (38,000 measured in one
            capture), which slows it past its own deadlines, so the linux plan records only
            what the device's pack asks for (``[guests] linux_async``).
    """

    name: str
    build_commands: tuple[tuple[str, ...], ...] = ()
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    memory_mb: int = 64
    arm_on: str | None = None
    marker_port: int | None = None
    exit_port: int | None = 0xF4
    ok_exit_statuses: tuple[int, ...] = (1,)
    serial_verdict: Callable[[Path], str | None] | None = None
    quiet_ports: tuple[tuple[int, int], ...] = ((0x3F8, 8),)
    quiet_gsis: tuple[int, ...] = (4,)
    rom: bool = False
    extra_qemu_args: tuple[str, ...] = field(default_factory=tuple)
    record_async: bool | tuple[str, ...] = True

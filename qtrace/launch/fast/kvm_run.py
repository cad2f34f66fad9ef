"""A KVM exit as the fast collector sees it: the first bytes of the vCPU's ``struct kvm_run``
and its port I/O data, decoded on the host into an ``exit`` record's fields.

Why the raw block: the breakpoint collector reads ``kvm_run`` through gdb's types at each
exit (gdbscripts/qtrace_gdb/kvm_exit.py); the agent cannot, so the exit tracepoint collects
:data:`KVM_RUN_BYTES` from ``run`` (everything up to the synced ``rip``) and
:data:`IO_DATA_BYTES` at ``run + io.data_offset``, and this module reads the fields at their
offsets. The layout is Linux's stable KVM ABI (include/uapi/linux/kvm.h, x86-64), the same
in every QEMU; the offsets were checked against the debug build's own type (gdb's ``print
&((struct kvm_run *)0)->...`` on 7.2). Pure: tested from bytes.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = [
    "EXIT_REASONS", "IO_DATA_BYTES", "KVM_EXIT_IO", "KVM_EXIT_MMIO", "KVM_RUN_BYTES",
    "exit_fields", "reason_name",
]

# include/uapi/linux/kvm.h: exit_reason numbers (gdbscripts/qtrace_gdb/kvm_exit.py keeps the
# same table, since gdb's Python cannot import qtrace; a unit test checks they are equal).
EXIT_REASONS = {
    0: "KVM_EXIT_UNKNOWN",
    1: "KVM_EXIT_EXCEPTION",
    2: "KVM_EXIT_IO",
    3: "KVM_EXIT_HYPERCALL",
    4: "KVM_EXIT_DEBUG",
    5: "KVM_EXIT_HLT",
    6: "KVM_EXIT_MMIO",
    7: "KVM_EXIT_IRQ_WINDOW_OPEN",
    8: "KVM_EXIT_SHUTDOWN",
    9: "KVM_EXIT_FAIL_ENTRY",
    10: "KVM_EXIT_INTR",
    11: "KVM_EXIT_SET_TPR",
    12: "KVM_EXIT_TPR_ACCESS",
    17: "KVM_EXIT_INTERNAL_ERROR",
    18: "KVM_EXIT_OSI",
    19: "KVM_EXIT_PAPR_HCALL",
    24: "KVM_EXIT_SYSTEM_EVENT",
    25: "KVM_EXIT_S390_STSI",
    26: "KVM_EXIT_IOAPIC_EOI",
    27: "KVM_EXIT_HYPERV",
    29: "KVM_EXIT_X86_RDMSR",
    30: "KVM_EXIT_X86_WRMSR",
    31: "KVM_EXIT_DIRTY_RING_FULL",
    32: "KVM_EXIT_AP_RESET_HOLD",
    33: "KVM_EXIT_X86_BUS_LOCK",
    35: "KVM_EXIT_NOTIFY",
    36: "KVM_EXIT_LOONGARCH_IOCSR",
    37: "KVM_EXIT_MEMORY_FAULT",
}
KVM_EXIT_IO = 2
KVM_EXIT_MMIO = 6
KVM_EXIT_IO_OUT = 1

# Offsets in struct kvm_run (x86-64).
_IO = 32  # the exit union: io {u8 direction, size; u16 port; u32 count; u64 data_offset}
_IO_DATA_OFFSET = 40
_MMIO_DATA, _MMIO_LEN, _MMIO_IS_WRITE = 40, 48, 52  # mmio {u64 phys_addr; u8 data[8]; ...}
_VALID_REGS = 288  # kvm_valid_regs
_SYNC_RIP = 432  # s.regs.regs.rip (KVM_SYNC_X86_REGS)
KVM_SYNC_X86_REGS = 1 << 0

KVM_RUN_BYTES = _SYNC_RIP + 8
"""What the exit tracepoint collects from ``run``: the header, the exit union, the valid
registers' mask and the synced registers up to ``rip``."""
IO_DATA_BYTES = 64
"""What it collects at ``run + io.data_offset``: a port I/O exit's data (``size * count``
bytes; a string I/O exit with more keeps no ``data``, and the run counts it)."""
IO_DATA_OFFSET = _IO_DATA_OFFSET
"""Where ``io.data_offset`` is, for the tracepoint's address of the data."""


def reason_name(number: int) -> str:
    """The exit reason's name as the breakpoint collector writes it."""
    return EXIT_REASONS.get(number, f"KVM_EXIT_{number}")


def exit_fields(run: bytes, io_data: bytes | None) -> tuple[dict[str, Any], bool]:
    """The ``exit`` record's fields that ``kvm_run`` holds (``reason`` included; an
    internal error's words are QEMU's to report: a fast run reads them from qemu.log), and
    whether a port I/O write's data was too long for the collected block (then ``data`` is
    left out). ``run`` is :data:`KVM_RUN_BYTES` from the start of ``struct kvm_run``."""
    (number,) = struct.unpack_from("<I", run, 8)
    fields: dict[str, Any] = {"reason": reason_name(number)}
    (valid,) = struct.unpack_from("<Q", run, _VALID_REGS)
    if valid & KVM_SYNC_X86_REGS:
        (fields["guest_pc"],) = struct.unpack_from("<Q", run, _SYNC_RIP)
    truncated = False
    if number == KVM_EXIT_IO:
        direction, size, port, count = struct.unpack_from("<BBHI", run, _IO)
        out = direction == KVM_EXIT_IO_OUT
        fields.update(port=port, size=size, count=count, direction="out" if out else "in")
        length = size * count
        if out and length:
            if io_data is not None and length <= len(io_data):
                fields["data"] = io_data[:length].hex()
            else:
                truncated = True
    elif number == KVM_EXIT_MMIO:
        (phys_addr,) = struct.unpack_from("<Q", run, _IO)
        (length,) = struct.unpack_from("<I", run, _MMIO_LEN)
        is_write = bool(run[_MMIO_IS_WRITE])
        fields.update(phys_addr=phys_addr, len=length, is_write=is_write)
        if is_write and 0 < length <= 8:
            fields["data"] = run[_MMIO_DATA : _MMIO_DATA + length].hex()
    return fields, truncated

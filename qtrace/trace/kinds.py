"""The closed vocabularies of a capture: accelerator, machine, topology, guest and end status.

Defined once here, in the trace contract, because every side speaks them: the CLI offers
them as choices (``--accel/--machine/--topology/--guest``, so ``--help`` lists them), the capture
works with them, the trace's ``end`` record carries a :class:`CaptureStatus`, and the
collector inside gdb checks the status it writes against the same values
(``gdbscripts/qtrace_gdb/contract.py`` keeps a copy, since gdb's Python cannot import
qtrace; a unit test checks that copy equals :class:`CaptureStatus`).

They are :class:`enum.StrEnum` so a member *is* its string: it goes into JSON as is,
compares equal to the string, and formats as its value in f-strings and gdb commands.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ASYNC_KINDS",
    "Accel",
    "AccelChoice",
    "Machine",
    "Topology",
    "Guest",
    "CaptureStatus",
]

ASYNC_KINDS = ("ioeventfd", "fd-handler", "bh", "timer", "irqfd")
"""The ``kind`` of ``async`` records (TRACE_FORMAT.md), which a guest plan's
``record_async`` may name to record only those; gdbscripts' contract.py holds the same list
(a unit test checks they agree)."""


class Accel(StrEnum):
    """The accelerator a capture ran under (what a trace header and a run directory name)."""

    KVM = "kvm"
    TCG = "tcg"


class AccelChoice(StrEnum):
    """The accelerator a user may ask for: one of :class:`Accel`, or ``auto`` (KVM when it
    is usable, else TCG), which the capture resolves before anything runs."""

    KVM = Accel.KVM.value
    TCG = Accel.TCG.value
    AUTO = "auto"


class Machine(StrEnum):
    """QEMU's x86 machine type: ``pc`` (config space through 0xCF8/0xCFC) or ``q35`` (PCIe,
    ECAM)."""

    PC = "pc"
    Q35 = "q35"


class Topology(StrEnum):
    """Where the captured device sits in the PCI hierarchy (the trace header's ``topology``).

    ``root-bus``: on the root bus at 00:05.0, as a device on a plain PCI bus (``pc``) or a
    root-complex integrated endpoint (``q35``). ``root-port``: behind a ``pcie-root-port``
    at 00:04.0, on its secondary bus at 01:00.0, as real PCIe is built (``q35`` only), so
    the guest's enumeration walks a bridge and the device has a PCIe link above it.
    """

    ROOT_BUS = "root-bus"
    ROOT_PORT = "root-port"


class Guest(StrEnum):
    """What drives the device (see ``qtrace.guests``)."""

    PROBE = "probe"
    LINUX = "linux"
    FIRMWARE = "firmware"


class CaptureStatus(StrEnum):
    """How a capture ended: the ``status`` of the trace's ``end`` record and of ``summary.json``.

    Only :attr:`OK` is success; the CLI exits 1 for every other status (or 128 + the signal
    for :attr:`INTERRUPTED`).
    """

    OK = "ok"
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"
    GUEST_HANG = "guest-hang"
    ERROR = "error"

"""The ``qtrace-trace/1`` record types: the only contract between capture and its readers.

A trace is JSON Lines. The first record is a :class:`Header`, the last an :class:`End`
(absent only when the writer was killed outright; readers accept that). In between:
:class:`Stack` records (emitted once, before the first record that uses them), and
:class:`Exit`, :class:`Access`, :class:`Irq` and :class:`Dma` records in ``seq`` order.
The collector inside gdb writes the same shapes (``gdbscripts/qtrace_gdb/trace_out.py``);
a unit test checks both sides agree on :data:`SCHEMA_VERSION`. TRACE_FORMAT.md in the
repository documents every field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

from qtrace.trace.kinds import CaptureStatus
from qtrace.trace.layout import FlatRange, FlatView, IoEventFd, KvmVcpu, LayoutRecord, Memslot

__all__ = [
    "SCHEMA_VERSION",
    "Frame",
    "Header",
    "Stack",
    "Exit",
    "Access",
    "Irq",
    "Dma",
    "Async",
    "End",
    "KvmHost",
    "CoalescingZone",
    "Region",
    "RegionKind",
    "Memslot",
    "FlatRange",
    "FlatView",
    "IoEventFd",
    "KvmVcpu",
    "LayoutRecord",
    "Record",
]

SCHEMA_VERSION = "qtrace-trace/1"

AccessOp = Literal["read", "write"]
AccessSpace = Literal["mmio", "pio", "pci-config"]
RegionKind = Literal["io", "ram", "rom", "ram-device", "container", "alias", "pci-config"]
"""What serves a region: ``io`` (MemoryRegionOps handlers: accesses exit to QEMU), ``ram``,
``rom`` and ``ram-device`` (in a KVM memory slot: accesses never leave the guest),
``container`` (only holds subregions), ``alias`` (a window onto another region) and
``pci-config`` (the device's configuration-space hooks)."""


@dataclass(frozen=True)
class Frame:
    """One symbolized stack frame; ``file`` is relative to the QEMU source root."""

    func: str
    file: str | None = None
    line: int | None = None
    pc: str | None = None


@dataclass(frozen=True)
class Region:
    """One MemoryRegion of the captured device, as the collector found it in the running QEMU.

    ``bar`` is the PCI BAR whose tree holds it (0-5, 6 for the ROM; ``None`` for the
    configuration space), ``offset`` its distance from the BAR's start, ``depth`` how deep
    in that tree it sits (0: the region registered as the BAR). ``handlers`` maps the
    MemoryRegionOps callbacks that are set (``read``, ``write``, ``read_with_attrs``,
    ``write_with_attrs``; for ``pci-config``: ``config_read``, ``config_write``) to their
    function names; the collector breaks on those. ``alias_of`` names an alias's target.
    """

    name: str
    bar: int | None
    offset: int
    size: int
    kind: RegionKind
    space: Literal["mmio", "pio", "pci-config"] = "mmio"
    depth: int = 0
    handlers: dict[str, str] = field(default_factory=dict)
    alias_of: str | None = None


@dataclass(frozen=True)
class Header:
    """What was captured, with what, and how the collector was armed.

    ``device_properties`` are the ``key=value`` properties of the captured device's
    ``-device`` option (``{"addr": "05.0", "romfile": ""}``), so that readers such as
    ``verify`` (MAC address, option ROM, network backend) never parse ``argv``. Traces
    written before the field existed get it from ``argv`` when read (the codec); ``None``
    when neither says (a synthetic trace without argv).
    """

    device: str
    qemu_version: str
    accel: str
    machine: str = "pc"
    guest: str = "probe"
    argv: tuple[str, ...] = ()
    device_properties: dict[str, str] | None = None
    started: str = ""
    schema: str = SCHEMA_VERSION
    arming: dict[str, str] = field(default_factory=dict)
    qdev_id: str | None = None
    topology: str = "root-bus"
    regions: tuple[Region, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)
    type: Literal["header"] = "header"


@dataclass(frozen=True)
class Stack:
    """A distinct backtrace, innermost frame first, referenced by ``id``."""

    id: str
    frames: tuple[Frame, ...]
    type: Literal["stack"] = "stack"


@dataclass(frozen=True)
class Exit:
    """One ``kvm_cpu_exec`` exit case that was hit, with the decoded ``kvm_run`` fields."""

    seq: int
    reason: str
    vcpu: int | None = None
    # KVM_EXIT_MMIO
    phys_addr: int | None = None
    len: int | None = None
    is_write: bool | None = None
    # KVM_EXIT_IO
    port: int | None = None
    size: int | None = None
    direction: str | None = None
    count: int | None = None
    # both: hex bytes (for writes: the data the guest wrote)
    data: str | None = None
    stack: str | None = None
    t: float | None = None
    thread: str | None = None
    # The guest's RIP when KVM returned (kvm_run's synced registers, KVM_SYNC_X86_REGS):
    # for a read the instruction that made the access, for a write KVM completed (port out,
    # MMIO write) the instruction after it. Absent without sync regs and in older traces.
    guest_pc: int | None = None
    type: Literal["exit"] = "exit"


@dataclass(frozen=True)
class Access:
    """One read or write handled by the device (register or PCI config space)."""

    seq: int
    op: AccessOp
    space: AccessSpace
    offset: int
    size: int
    value: int
    region: str | None = None
    addr: int | None = None
    handler: str | None = None
    exit_seq: int | None = None
    stack: str | None = None
    vcpu: int | None = None
    # True for a write KVM buffered in its coalesced-MMIO ring (no exit of its own);
    # QEMU replays it later from kvm_flush_coalesced_mmio_buffer, so exit_seq is None.
    coalesced: bool | None = None
    # A configuration access to another device on the captured one's path (a PCIe root
    # port above it): that device's QOM type. None: the captured device.
    device: str | None = None
    # Seconds since the collector started (host monotonic clock, microsecond resolution):
    # when the hit was recorded, for timelines. Absent in traces written before it existed.
    t: float | None = None
    thread: str | None = None
    # TCG: the guest PC (linear) of the instruction that made the access, recovered from the
    # translated code's return address (gdbscripts/qtrace_gdb/tcg_pc.py). Under KVM the
    # guest's PC is on the access's exit. Absent in older traces.
    guest_pc: int | None = None
    type: Literal["access"] = "access"


@dataclass(frozen=True)
class Irq:
    """The device raised (level 1) or lowered (level 0) its interrupt line."""

    seq: int
    level: int
    line: str = "INTx"
    # MSI / MSI-X: the message as the device held it when it signalled (MSI-X: its table
    # entry; a masked vector is not sent, its pending bit is set instead).
    address: int | None = None
    data: int | None = None
    masked: bool | None = None
    pending: bool | None = None
    stack: str | None = None
    t: float | None = None
    thread: str | None = None
    type: Literal["irq"] = "irq"


@dataclass(frozen=True)
class Dma:
    """The device read or wrote guest memory; ``data`` is hex, capped (``truncated``), and
    ``None`` when the bytes were not seen (a mapping, or a fast read outside guest RAM)."""

    seq: int
    op: AccessOp
    addr: int
    size: int
    data: str | None = ""
    truncated: bool = False
    # The QEMU function the access went through (address_space_write, a *_cached ring
    # accessor, address_space_map, ...); traces before it existed recorded pci_dma_rw only.
    api: str | None = None
    # address_space_map: guest memory handed to the block layer to read or write directly;
    # the bytes are not seen (no data), only the range and the direction.
    mapped: bool | None = None
    stack: str | None = None
    t: float | None = None
    thread: str | None = None
    type: Literal["dma"] = "dma"


@dataclass(frozen=True)
class CoalescingZone:
    """A coalescing range QEMU registered with KVM (``add``) or removed (``del``): writes lying
    wholly inside one are buffered in KVM's ring instead of exiting."""

    op: Literal["add", "del"]
    space: AccessSpace
    start: int
    size: int
    region: str | None = None


@dataclass(frozen=True)
class KvmHost:
    """What the host's KVM offered this QEMU, and the coalescing zones QEMU registered with it
    during the run (KVM captures only; ``capabilities`` is ``None`` when they could not be
    read). Keys of ``capabilities``: ``coalesced_mmio``, ``coalesced_pio``."""

    capabilities: dict[str, bool] | None = None
    zones: tuple[CoalescingZone, ...] = ()

    def zones_in_effect(self, space: str) -> list[CoalescingZone]:
        """The zones of ``space`` still registered at the end (adds not undone by a del)."""
        live: list[CoalescingZone] = []
        for zone in self.zones:
            if zone.space != space:
                continue
            if zone.op == "add":
                live.append(zone)
            else:
                live = [z for z in live if (z.start, z.size) != (zone.start, zone.size)]
        return live


@dataclass(frozen=True)
class End:
    """Why and how the capture ended (the reader turns ``status`` into the enum and refuses
    a value that is not one)."""

    status: CaptureStatus
    accesses: int = 0
    stacks: int = 0
    elapsed_s: float = 0.0
    reason: str | None = None
    kvm: KvmHost | None = None
    # A fast capture's self-checks (qtrace.launch.fast.checks): what the agent counted
    # against what was decoded; absent for the breakpoint collector.
    fast_checks: dict[str, Any] | None = None
    # What the breakpoint collector noted while it ran (gdbscripts' Session.note_error): how
    # many, and the first messages; absent when there was none.
    collector_errors: int | None = None
    collector_error_messages: tuple[str, ...] | None = None
    type: Literal["end"] = "end"


@dataclass(frozen=True)
class Async:
    """Device work off the register path, or the registration that sets it up.

    ``kind``/``op``: ``ioeventfd`` ``add``/``del`` (KVM completes guest writes to
    ``region``+``offset`` of ``size`` bytes, matching ``data`` when ``match_data``, by
    signalling ``notifier``: QEMU's handler is not called on the vCPU thread);
    ``fd-handler`` ``register``/``unregister``/``run`` (the function QEMU's event loop calls
    when ``notifier`` is signalled); ``bh`` ``schedule``/``delete``/``run``; ``timer`` ``arm``
    (``expire_ns`` on the timer's clock) / ``run``; ``irqfd`` ``assign``/``deassign``/
    ``signal`` (an interrupt QEMU raises by signalling an eventfd KVM injects as ``gsi``).
    ``callback`` is the function that runs; ``object`` the QEMUBH/QEMUTimer pointer.
    """

    seq: int
    kind: str
    op: str
    callback: str | None = None
    name: str | None = None
    object: str | None = None
    notifier: str | None = None
    region: str | None = None
    offset: int | None = None
    size: int | None = None
    match_data: bool | None = None
    data: int | None = None
    expire_ns: int | None = None
    gsi: int | None = None
    stack: str | None = None
    t: float | None = None
    thread: str | None = None
    type: Literal["async"] = "async"


Record = Union[
    Header, Stack, Exit, Access, Irq, Dma, Async, End, Memslot, FlatView, IoEventFd, KvmVcpu
]

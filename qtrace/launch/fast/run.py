"""A fast run: QEMU under gdbserver with the in-process agent, the device's handlers traced
by fast tracepoints, the buffer saved and decoded into ``qtrace-trace/1`` records.

The steps, each through the capture's gdb (MI, :class:`~qtrace.launch.gdb_session.GdbSession`):

1. :meth:`FastRun.start`: build the jump-pad shim in the container, start QEMU under
   ``gdbserver --wrapper env LD_PRELOAD=shim:agent``, let the gdb side (``qtrace setup`` in
   its ``fast`` mode) stop it once at ``vm_start`` and discover the device (``qtrace
   discover``: the header is written, the reply names each handler and its opaques);
2. :meth:`FastRun.trace`: choose each tracepoint's location from this build's disassembly
   (:mod:`.locate`), define them from a command file (``actions`` reads lines, which MI
   cannot send), ``tstart``, and break on ``exit``, where the buffer is still in QEMU;
3. :meth:`FastRun.wait`: QEMU runs without a stop until it calls ``exit``, the timeout, or
   an interrupt;
4. :meth:`FastRun.finish`: ``tstop``, the agent's counts, ``tsave``; decode on the host
   (:mod:`.tsave`, :mod:`.decode`), symbolize each distinct stack once with gdb (``qtrace
   symbolize``), append the records and an ``end`` record carrying the self-checks
   (:mod:`.checks`).

Why each step (measured, ENVIRONMENT.md "GDB fast tracepoints"): tracepoints defined at
``main`` fail, at ``vm_start`` they install; the agent's jump pad must lie within 2 GiB of
the PIE executable (``gdbscripts/fast/jumppad_near.c``, preloaded before the agent); the
buffer lives in QEMU's memory, so it is saved at a breakpoint on ``exit`` (the probe ends
through isa-debug-exit, which calls ``exit``), with ``circular-trace-buffer off`` so a full
buffer stops tracing instead of overwriting; ``sysroot /`` keeps gdb from copying every
library through the remote protocol. Each accessor tracepoint carries a condition on its
MemoryRegion, evaluated by the agent: the accessors serve every device of the machine,
and only the captured device's hits are collected.

Besides the register accesses it records the configuration-space accesses of the device (and
of any bridge above it) at ``pci_host_config_{read,write}_common`` and the device's INTx
level changes at ``pci_irq_handler``'s call of ``pci_set_irq_state``, filtered on the
PCIDevice by the agent; and, under KVM, each exit at ``kvm_cpu_exec``'s call of
``trace_kvm_run_exit`` just before the switch on its reason (the host keeps the exits the
breakpoint collector would: :class:`~.records.ExitsRecorded`). What it does not record (the
header's ``arming`` says so): MSI and MSI-X, DMA, work off the vCPU thread. The agent's jump
pad holds a spin lock while it collects (gdbserver's amd64 jump pad), so two threads' hits
never mix their trace state variables. QEMU's own output goes to gdbserver's
stderr and so to gdb, which the capture keeps in ``qemu.log`` (the wrapper must exec QEMU
directly for the agent to load).
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from qtrace.docker_env import LabelledContainer
from qtrace.errors import CollectorError, LaunchFailure, UsageError
from qtrace.image.layout import QEMU_SOURCE_ROOT
from qtrace.launch.collector_config import DEFAULT_DMA_CAP_BYTES
from qtrace.launch.fast.checks import FALLBACK_HINT, FastChecks
from qtrace.launch.fast.actions import (
    RAW_STACK_BYTES,
    config_actions,
    dma_actions,
    exit_actions,
    hit_actions,
    message_actions,
    variables,
)
from qtrace.launch.fast.agent_buffer import AgentBuffer, enlarge_agent_buffer, parse_value
from qtrace.launch.fast.agent_space import enlarge_agent_space, tracing_starts
from qtrace.launch.fast.decode import Access as DecodedAccess
from qtrace.launch.fast.decode import AccessDecoder, Role, variable_numbers
from qtrace.launch.fast.locate import (
    ACCESSOR_ARGUMENTS,
    ACCESSORS,
    CONFIG_SITES,
    DMA_FUNCTION,
    EXIT_FUNCTION,
    IRQ_SITE,
    MESSAGE_FIELDS,
    MESSAGE_SITES,
    SITE_ARGUMENTS,
    Instruction,
    site_locations,
    dma_site,
    entry_location,
    exit_site,
    parse_disassembly,
    spill_slots,
    value_location,
)
from qtrace.launch.fast.memory import HostMemory, open_host_memory
from qtrace.launch.fast.progress import Progress
from qtrace.launch.fast.records import ConfigDevice, ExitsRecorded, RecordMaker, RegionOf
from qtrace.launch.fast.tsave import Frame as TraceFrame
from qtrace.launch.fast.tsave import count_frames, iter_frames, parse_tsave
from qtrace.launch.gdb_session import GdbSession, shell_join
from qtrace.launch.interrupts import interrupt_reason
from qtrace.launch.kvm_error import KvmInternalError, parse_qemu_log
from qtrace.launch.mi import Stop
from qtrace.trace.codec import TraceWriter
from qtrace.trace.kinds import CaptureStatus
from qtrace.trace.schema import End, Frame, Region

__all__ = [
    "FastPlan",
    "FastRun",
    "FastOutcome",
    "DmaCopies",
    "config_devices",
    "dma_copies",
    "generated_code",
    "main_stack_limit",
    "max_hits_cut",
    "plan_tracepoints",
]

AGENT = "/usr/lib/libinproctrace.so"  # gdbserver's in-process agent (Debian's gdbserver)
logger = logging.getLogger(__name__)
T = TypeVar("T")

SHIM_SOURCE = "fast/jumppad_near.c"  # under the gdbscripts mount
SHIM_IN_CONTAINER = "/tmp/qtrace-jumppad-near.so"
TSAVE_NAME = "fast.tsave"
AGENT_DUMP_NAME = ".fast-agent-buffer"
STACKS_NAME = ".fast-stacks.json"
TRACEPOINTS_NAME = "fast-tracepoints.gdb"
BUFFER_BYTES = 512 << 20
"""gdbserver's trace buffer, and the agent's (in QEMU's memory, :mod:`.agent_buffer`):
about 145,000 hits at 3.7 KB each (measured). The run drains it while QEMU runs
(:meth:`FastRun.wait`), so a run is not bounded by it; a buffer that fills between two
drains stops tracing, and the self-checks say so. Pages are touched only as frames fill
them."""
SEGMENT_BYTES = BUFFER_BYTES // 3
"""What a drain aims to find in the buffer: the next drain is timed from the last one's
rate of frames so that the buffer is about a third full then, leaving room for a burst."""
DRAIN_INTERVAL_S = (0.25, 1.0)
"""The shortest and longest time QEMU runs between two drains. At most a second: iPXE's
polling loop fills 370 MB a second at most (100,000 reads a second under TCG, ENVIRONMENT.md),
less than the buffer, even when it starts right after a quiet interval."""
PEEK_S = 0.05
"""How often the agent's frame count is read from the host while QEMU runs."""
FRAMES_CREATED = "gdb_agent_traceframes_created"  # the agent's exported count (u32)
KVM_DUMP_WAIT_S = 3.0  # after "KVM internal error", how long QEMU gets to finish its dump
DISCOVERY_TIMEOUT_S = 120.0
TSAVE_TIMEOUT_S = 600.0
_POLL_S = 0.25
_HANDLED_CALLBACKS = ("read", "write")
_TRACEPOINT_NUMBER = re.compile(r"(?:Fast )?[Tt]racepoint (\d+) at")


@dataclass(frozen=True)
class PlannedTracepoint:
    """One tracepoint: its address and what it records."""

    address: int
    role: Role
    where: str  # ``function+offset``, for the command file's comments and errors


@dataclass
class FastPlan:
    """The tracepoints of one run and what the decoder needs to read their frames."""

    tracepoints: list[PlannedTracepoint]
    regions: dict[int, RegionOf]  # MemoryRegion pointer -> the device's region
    numbers: dict[int, Role] = field(default_factory=dict)  # gdb's numbers, once defined
    devices: dict[int, ConfigDevice] = field(default_factory=dict)  # PCIDevice -> hooks
    # Where a stack block must start at the latest not to pass the main thread's stack end
    # (actions.stack_block); None: unknown, blocks start at rsp.
    stack_limit: int | None = None
    # This build's PCIDevice field offsets an MSI or MSI-X message is read through
    # (locate.MESSAGE_FIELDS).
    message_fields: dict[str, int] = field(default_factory=dict)
    dma: DmaCopies | None = None  # the device's DMA copies, when they are traced


@dataclass(frozen=True)
class DmaCopies:
    """What the DMA tracepoints need from discovery: the device's bus-master address space
    (the agent keeps its copies only), where each copy of ``dma_memory_rw_relaxed``
    starts, and where guest RAM is in QEMU's memory (``(start, size, host)``: a read's
    bytes are read there), with the bytes a record keeps."""

    bus_master_as: int
    copies: tuple[int, ...]
    guest_ram: tuple[tuple[int, int, int], ...]
    cap: int = DEFAULT_DMA_CAP_BYTES


def dma_copies(discovery: Mapping[str, Any]) -> DmaCopies | None:
    """The DMA tracepoints' inputs from discovery's reply; ``None`` when it has none (a
    collector older than them, or no copy in this build)."""
    copies = tuple(int(str(a), 16) for a in discovery.get("dma_copies") or ())
    address_space = discovery.get("bus_master_as")
    if not copies or not address_space:
        return None
    ram = tuple((int(a), int(n), int(h)) for a, n, h in discovery.get("guest_ram") or ())
    return DmaCopies(int(str(address_space), 16), copies, ram)


def config_devices(reply: Sequence[dict[str, Any]]) -> dict[int, ConfigDevice]:
    """The devices whose configuration-space accesses are recorded, by PCIDevice pointer,
    from discovery's ``config_devices`` (the captured device and any bridge above it, with
    their config hooks, as the breakpoint collector's filter knows them)."""
    return {
        int(str(d["pointer"]), 16): ConfigDevice(
            {"read": d.get("read"), "write": d.get("write")}, d.get("device")
        )
        for d in reply
    }


def device_regions(
    region_pointers: dict[str, str], header_regions: Sequence[Region]
) -> dict[int, RegionOf]:
    """The device's regions with handlers, by MemoryRegion pointer (discovery's reply and
    the header's ``regions``).

    Raises:
        UsageError: a region whose ops use ``*_with_attrs`` callbacks, which reach the
            device through other accessors than the ones the fast collector traces.
    """
    by_name = {r.name: r for r in header_regions}
    out: dict[int, RegionOf] = {}
    for pointer, name in region_pointers.items():
        region = by_name.get(name)
        if region is None or region.kind != "io":
            continue
        handlers = dict(region.handlers)
        unsupported = sorted(set(handlers) - set(_HANDLED_CALLBACKS))
        if unsupported:
            raise UsageError(
                f"the device's region {name} uses {', '.join(unsupported)} callbacks "
                f"({', '.join(handlers[k] for k in unsupported)}), which the fast collector "
                "does not trace yet.",
                hint=FALLBACK_HINT.capitalize() + ".",
            )
        out[int(pointer, 16)] = RegionOf(name, region.space, handlers)
    return out


def plan_tracepoints(
    regions: dict[int, RegionOf],
    disassemble: Callable[[str], str],
    arm_on: str | None,
    devices: dict[int, ConfigDevice] | None = None,
    exits: bool = False,
    message_fields: dict[str, int] | None = None,
    dma: DmaCopies | None = None,
) -> FastPlan:
    """Where each tracepoint goes in this build: the generic accessors' call sites
    (:data:`~.locate.ACCESSORS`) for the ops the device's regions use, the configuration
    space's and INTx's (:data:`~.locate.CONFIG_SITES`, :data:`~.locate.IRQ_SITE`) when there
    are ``devices`` to record, with MSI and MSI-X (:data:`~.locate.MESSAGE_SITES`) when
    this build's PCIDevice ``message_fields`` are known, the DMA copies
    (:func:`~.locate.dma_site`, in each copy of ``dma_memory_rw_relaxed``) of ``dma``, KVM's exits
    (:func:`~.locate.exit_site`) when ``exits``, and the start marker's function; from gdb's
    ``disassemble /r`` of each (``disassemble``).

    Raises:
        CollectorError: this build's accessors or PCI functions are not shaped as expected
            (no such call, arguments not spilled).
    """
    used = {op for region in regions.values() for op in region.handlers}
    tracepoints: list[PlannedTracepoint] = []
    for site in ACCESSORS:
        if site.op not in used:
            continue
        code = parse_disassembly(disassemble(site.accessor))
        at = value_location(code, site.callee)
        slots = spill_slots(code)
        missing = [r for r in ACCESSOR_ARGUMENTS if r not in slots]
        if at is None or missing:
            raise CollectorError(
                f"{site.accessor} in this build has no 5-byte call of {site.callee}"
                if at is None
                else f"{site.accessor} in this build does not spill {', '.join(missing)}"
            )
        role = Role(site.op, slots, site.value_register, site.shift_register,
                    site.mask_register, at.address)  # fmt: skip
        tracepoints.append(PlannedTracepoint(at.address, role, f"{site.accessor}+{at.offset}"))
    if devices:
        tracepoints += _config_tracepoints(disassemble)
        if message_fields is not None:
            tracepoints += _message_tracepoints(disassemble)
    if dma is not None:
        tracepoints += _dma_tracepoints(dma, disassemble)
    if exits:
        found = exit_site(parse_disassembly(disassemble(EXIT_FUNCTION)))
        if found is None:
            raise CollectorError(
                f"{EXIT_FUNCTION} in this build has no place for the KVM exit tracepoint",
                hint=FALLBACK_HINT.capitalize() + ", or with --accel tcg.",
            )
        role = Role("exit", address=found.at.address, space="exit", run_slot=found.run_slot)
        tracepoints.append(
            PlannedTracepoint(found.at.address, role, f"{EXIT_FUNCTION}+{found.at.offset}")
        )
    if arm_on is not None:
        at = entry_location(parse_disassembly(disassemble(arm_on)), 0)
        if at is None:
            raise CollectorError(f"no fast tracepoint can go in {arm_on} (the start marker)")
        tracepoints.append(
            PlannedTracepoint(at.address, Role("arm", address=at.address), f"{arm_on}+{at.offset}")
        )
    return FastPlan(tracepoints, regions, devices=dict(devices or {}),
                    message_fields=dict(message_fields or {}), dma=dma)  # fmt: skip


def _dma_tracepoints(
    dma: DmaCopies, disassemble: Callable[[str], str]
) -> list[PlannedTracepoint]:
    """One DMA tracepoint in each copy of ``dma_memory_rw_relaxed``; a copy not shaped as
    expected is refused (the breakpoint collector records its copies)."""
    out: list[PlannedTracepoint] = []
    for start in dma.copies:
        at = dma_site(parse_disassembly(disassemble(f"{start:#x}")))
        if at is None:
            raise CollectorError(
                f"the copy of {DMA_FUNCTION} at {start:#x} has no 5-byte call of "
                "address_space_rw for a fast tracepoint",
                hint=FALLBACK_HINT.capitalize() + ".",
            )
        role = Role("dma", address=at.address, space="dma", dma_cap=dma.cap)
        out.append(PlannedTracepoint(at.address, role, f"{DMA_FUNCTION}@{start:#x}+{at.offset}"))
    return out


def _config_tracepoints(disassemble: Callable[[str], str]) -> list[PlannedTracepoint]:
    """The configuration-space sites' tracepoints (:data:`~.locate.CONFIG_SITES`) and the
    INTx one (:data:`~.locate.IRQ_SITE`): a site this build does not have, or whose
    arguments it does not spill, is refused (the breakpoint collector records them)."""
    out: list[PlannedTracepoint] = []
    code: dict[str, list[Instruction]] = {}
    for site in (*CONFIG_SITES, IRQ_SITE):
        if site.function not in code:
            code[site.function] = parse_disassembly(disassemble(site.function))
        instructions = code[site.function]
        found = site_locations(instructions, site)
        slots = spill_slots(instructions)
        wanted = [*SITE_ARGUMENTS, site.size_register]
        if site.value.startswith("slot:"):
            wanted.append(site.value[len("slot:"):])
        missing = [] if site.in_registers else [r for r in wanted if r not in slots]
        if not found or missing:
            raise CollectorError(
                f"{site.function} in this build has no place for a fast tracepoint "
                f"({site.at})" if not found
                else f"{site.function} in this build does not spill {', '.join(missing)}",
                hint=FALLBACK_HINT.capitalize() + ".",
            )
        space = "irq" if site is IRQ_SITE else "pci-config"
        for at in found:
            role = Role(site.op, slots, address=at.address, space=space,
                        value_source=site.value, size_register=site.size_register,
                        in_registers=site.in_registers)  # fmt: skip
            out.append(PlannedTracepoint(at.address, role, f"{site.function}+{at.offset}"))
    return out


def _message_tracepoints(disassemble: Callable[[str], str]) -> list[PlannedTracepoint]:
    """The MSI and MSI-X tracepoints (:data:`~.locate.MESSAGE_SITES`); a build without
    the function has nothing to record there (as the breakpoint collector skips it), one
    not shaped as expected is refused."""
    out: list[PlannedTracepoint] = []
    for site in MESSAGE_SITES:
        code = parse_disassembly(disassemble(site.function))
        if not code:
            continue
        found = site_locations(code, site)
        slots = spill_slots(code)
        if not found or not {"rdi", "rsi"} <= set(slots):
            raise CollectorError(
                f"{site.function} in this build has no place for a fast tracepoint",
                hint=FALLBACK_HINT.capitalize() + ".",
            )
        at = found[0]
        role = Role(site.op, slots, address=at.address, space="irq")
        out.append(PlannedTracepoint(at.address, role, f"{site.function}+{at.offset}"))
    return out


def device_condition(role: Role, devices: Sequence[int]) -> str:
    """The agent-side condition that keeps a configuration-space or INTx hit only for the
    recorded devices (the PCIDevice in its spill slot, or in ``rdi`` at a call, is one of
    ``devices``): every config access and INTx change of the machine goes through there."""
    mr = "$rdi" if role.in_registers else f"*(unsigned long *)($rbp - {-role.slots['rdi']})"
    return " || ".join(f"{mr} == {pointer:#x}" for pointer in sorted(devices))


def region_condition(role: Role, regions: Sequence[int]) -> str:
    """The agent-side condition that keeps an accessor's hit only for the device's regions
    (the MemoryRegion in its spill slot is one of ``regions``): the accessors serve every
    device of the machine, and a hit that fails it is neither collected nor stored."""
    slot = role.slots["rdi"]
    mr = f"*(unsigned long *)($rbp - {-slot})" if slot < 0 else f"*(unsigned long *)($rbp + {slot})"
    return " || ".join(f"{mr} == {pointer:#x}" for pointer in sorted(regions))


def tracepoint_commands(plan: FastPlan) -> str:
    """The command file that defines the actions' variables and the plan's tracepoints, in
    order (:mod:`.actions`: what each hit records)."""
    lines = [f"tvariable ${name}" for name in variables()]
    for tp in plan.tracepoints:
        role = tp.role
        lines += [f"# {role.kind} {tp.where}", f"ftrace *{tp.address:#x}"]
        if role.kind == "exit":
            # Every exit of every vCPU: the host keeps the ones the breakpoint collector
            # would (records.ExitsRecorded).
            lines += ["actions", *exit_actions(role.run_slot, plan.stack_limit), "end"]
            continue
        if role.kind == "dma":
            assert plan.dma is not None
            lines += [
                f"condition $bpnum $rdi == {plan.dma.bus_master_as:#x}",
                "actions",
                *dma_actions(plan.dma.guest_ram, role.dma_cap, plan.stack_limit),
                "end",
            ]
            continue
        if role.kind in ("msi", "msix"):
            captured = [p for p, d in plan.devices.items() if d.device is None]
            lines += [
                f"condition $bpnum {device_condition(role, captured)}",
                "actions",
                *message_actions(role.kind, dict(role.slots), plan.message_fields,
                                 plan.stack_limit),
                "end",
            ]  # fmt: skip
            continue
        if role.space in ("pci-config", "irq"):
            # Config accesses of the device and the bridges above it; its own INTx only.
            devices = [p for p, d in plan.devices.items()
                       if role.space != "irq" or d.device is None]  # fmt: skip
            lines += [
                f"condition $bpnum {device_condition(role, devices)}",
                "actions",
                *config_actions(dict(role.slots), role.value_source, role.size_register,
                                role.in_registers, plan.stack_limit),
                "end",
            ]
            continue
        if role.kind in ("read", "write"):
            lines.append(f"condition $bpnum {region_condition(role, list(plan.regions))}")
        lines += [
            "actions",
            *hit_actions(role.kind, dict(role.slots), role.value_register,
                         role.shift_register, role.mask_register, plan.stack_limit),
            "end",
        ]  # fmt: skip
    return "\n".join(lines) + "\n"


def tracepoint_numbers(defined: str) -> list[int]:
    """gdb's numbers of the tracepoints a ``source`` of the command file defined, in order."""
    return [int(n) for n in _TRACEPOINT_NUMBER.findall(defined)]


def mappings(maps: str) -> list[tuple[int, int, str, str]]:
    """``/proc/PID/maps`` as (start, end, permissions, path)."""
    out: list[tuple[int, int, str, str]] = []
    for line in maps.splitlines():
        parts = line.split(None, 5)
        if len(parts) >= 5:
            start, _, end = parts[0].partition("-")
            path = parts[5].strip() if len(parts) > 5 else ""
            out.append((int(start, 16), int(end, 16), parts[1], path))
    return out


def thread_stacks(
    threads: Sequence[dict[str, Any]], maps: str
) -> list[tuple[int, int, str]]:
    """Each thread's stack mapping (start, end, name): the mapping its stack pointer is in."""
    out: list[tuple[int, int, str]] = []
    for start, end, _, _ in mappings(maps):
        names = [str(t["name"]) for t in threads if start <= int(t["sp"]) < end]
        if len(names) == 1:
            out.append((start, end, names[0]))
    return out


def main_stack_limit(maps: str) -> int | None:
    """The highest address a stack block of :data:`~.actions.RAW_STACK_BYTES` may start at
    on the main thread: its stack mapping's end (``[stack]`` in ``/proc/PID/maps``) less the
    block; ``None`` when the maps name no such mapping."""
    ends = [end for _, end, _, path in mappings(maps) if path == "[stack]"]
    return ends[0] - RAW_STACK_BYTES if ends else None


def generated_code(maps: str) -> tuple[int, int]:
    """Where TCG's generated code is, from ``/proc/PID/maps`` (``(0, 0)``: none, KVM): an
    executable mapping that is no file's code (QEMU maps its code buffer from a memfd,
    ``/memfd:tcg-jit (deleted)``, or anonymously), the largest one: the agent's jump pad
    is such a mapping too, of a few pages. A return address there takes the unwinder's
    TCG frame rule."""
    anonymous = [
        (start, end)
        for start, end, perms, path in mappings(maps)
        if "x" in perms and (not path or path.startswith("/memfd:"))
    ]
    return max(anonymous, key=lambda r: r[1] - r[0], default=(0, 0))


@dataclass(frozen=True)
class SavedFrames:
    """The frames of a segment (read as they are decoded), the numbers of the actions'
    variables in them, and how they were read."""

    frames: Iterator[TraceFrame]
    numbers: dict[str, int]
    how: str


DIRECT_NUMBERS = {n: i for i, n in enumerate(["trace_timestamp", *variables()], start=1)}
"""The variables' numbers in frames read from the agent's buffer: gdb numbers them in
definition order after its built-in timestamp (the command file defines them first)."""
_DUMP_MARGIN_BYTES = 1 << 20


def next_drain_s(used_bytes: int, ran_s: float) -> float:
    """How long QEMU runs before the next drain: until the buffer would be
    :data:`SEGMENT_BYTES` full at the last segment's rate, within
    :data:`DRAIN_INTERVAL_S`."""
    shortest, longest = DRAIN_INTERVAL_S
    if used_bytes <= 0 or ran_s <= 0:
        return longest
    return min(longest, max(shortest, SEGMENT_BYTES * ran_s / used_bytes))


def max_hits_cut(hits: Sequence[object], room: int) -> int | None:
    """How many of a segment's decoded ``hits`` to keep when ``room`` more access records
    fit under ``--max-hits``: up to and with the ``room``-th register or configuration
    access (the INTx changes, MSI/MSI-X messages and exits before it are kept with it);
    ``None`` when the segment has fewer accesses than that (all are kept)."""
    ends = [i for i, a in enumerate(hits) if isinstance(a, DecodedAccess) and a.op != "irq"]
    if len(ends) < room:
        return None
    return ends[room - 1] + 1 if room else 0


def counted_frames(
    frames: Iterable[TraceFrame], out: list[FastChecks], created: int, full: bool
) -> Iterator[TraceFrame]:
    """``frames`` as they go by, their self-checks appended to ``out`` once all have gone
    (saved, decoded, zeroed, undecodable against the ``created`` the agent counted)."""
    saved = zeroed = undecodable = 0
    for frame in frames:
        saved += 1
        if frame.zeroed:
            zeroed += 1
        elif frame.undecodable is not None:
            undecodable += 1
        yield frame
    out.append(FastChecks(created, saved, saved - zeroed - undecodable, zeroed, undecodable, full))


@contextlib.contextmanager
def _mapped(file: BinaryIO) -> Iterator[bytes | mmap.mmap]:
    """A file's bytes, memory-mapped (an empty file maps as no bytes)."""
    if os.fstat(file.fileno()).st_size == 0:
        yield b""
        return
    with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        yield data


def shielded(
    work: Callable[[], T],
    status: Callable[[str], None],
    asked: list[KeyboardInterrupt] | None = None,
) -> T:
    """``work()`` run on a worker thread that an interrupt does not cut short: the first
    Ctrl-C (or a signal the CLI delivers as one) is noted in ``asked`` and the work goes
    on; a second abandons it. Without ``asked`` the first interrupt is raised once the work
    is done (a drain finishes its segment, then the capture ends)."""
    noted: list[KeyboardInterrupt] = [] if asked is None else asked
    done: list[T | BaseException] = []
    finished = threading.Event()

    def run() -> None:
        try:
            done.append(work())
        except BaseException as exc:  # handed to the waiting thread
            done.append(exc)
        finally:
            finished.set()

    # Waited for on an Event, not Thread.join: an interrupt inside join can leave the
    # thread looking finished while it still runs (seen: Ctrl-C during a drain).
    threading.Thread(target=run, name="qtrace-fast-save", daemon=True).start()
    while not finished.is_set():
        try:
            finished.wait(_POLL_S)
        except KeyboardInterrupt as exc:
            if noted:
                raise
            noted.append(exc)
            status("still saving the trace buffer; interrupt again to abandon it")
    result = done[0]
    if isinstance(result, BaseException):
        raise result
    if asked is None and noted:
        raise noted[0]
    return result


@dataclass
class FastOutcome:
    """What a fast run recorded and how it ended."""

    status: CaptureStatus
    reason: str | None
    accesses: int
    stacks: int
    checks: FastChecks | None
    hint: str | None = None


class FastRun:
    """One fast run's steps; see the module docstring."""

    def __init__(
        self,
        gdb: GdbSession,
        container: LabelledContainer,
        out_dir: Path,
        mount_out: str,
        mount_gdbscripts: str,
        argv: Sequence[str],
        status: Callable[[str], None],
        trace_path: Path,
        max_hits: int = 0,
        exits: ExitsRecorded | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.gdb = gdb
        self.container = container
        self.out_dir = out_dir
        self.mount_out = mount_out
        self.mount_gdbscripts = mount_gdbscripts
        self.argv = list(argv)
        self.status = status
        self.plan: FastPlan | None = None
        self.generated = (0, 0)  # TCG's code buffer
        self.agent_buffer: AgentBuffer | None = None  # where the agent keeps its frames
        self.starts_left = 0  # the tstarts the agent's jump pads and heap still hold
        self.out_of_space: str | None = None  # why tracing could not start again
        self.trace_path = trace_path
        self.max_hits = max_hits  # 0: no limit
        self.exits = exits  # the KVM exits to record (None: none, TCG)
        self.progress = progress  # when the guest last did anything (None: no hang check)
        self.hang: str | None = None  # why the guest was called hung, once it was
        self.decoder: AccessDecoder | None = None  # what carries from one segment to the next
        self.maker: RecordMaker | None = None
        self.symbols: dict[tuple[int, ...], tuple[Frame, ...]] = {}  # each path's frames
        self.frame_checks = FastChecks()  # the frames' self-checks, summed over the segments
        self.reads: dict[str, int] = {}  # how the segments were read -> how many
        self.accesses = 0  # access records written so far
        self.irqs = 0  # irq records written so far
        self.dmas = 0  # dma records written so far
        self.stacks = 0
        self.reached_max_hits = False
        self.kvm_error: KvmInternalError | None = None  # QEMU gave up on the guest
        self.running = False  # QEMU runs (gdb has not seen it stop since it was resumed)
        self.traced_s = 0.0  # QEMU's time running under the tracepoints, over every segment
        self._resumed_at: float | None = None
        self._kvm_seen_at = 0.0
        self._tracing = False  # between tstart and tstop (a drain stops it)
        self.memory: HostMemory | None = None  # QEMU's memory from the host, if readable
        self._created_at = 0  # the agent's count of frames since tstart, in QEMU's memory
        self.frame_bytes = RAW_STACK_BYTES + 512  # a frame's size, refined by each drain

    # ----- 1. QEMU under gdbserver, stopped once for discovery -----

    def start(self) -> dict[str, Any]:
        """Start QEMU under gdbserver and discover the device; the discovery reply."""
        built = self.container.exec(
            ["gcc", "-shared", "-fPIC", "-O2", "-o", SHIM_IN_CONTAINER,
             f"{self.mount_gdbscripts}/{SHIM_SOURCE}", "-ldl"]
        )  # fmt: skip
        if built.exit_code != 0:
            raise LaunchFailure(
                "building the fast collector's jump-pad shim failed", built.exit_code,
                built.output.splitlines()[-10:],
            )  # fmt: skip
        # Asynchronous MI: a remote target takes commands (-exec-interrupt) while it runs.
        self.gdb.command("-gdb-set mi-async on")
        for command in ("set pagination off", "set confirm off", "set height 0",
                        "set sysroot /", "handle SIGUSR1 SIGUSR2 SIGPIPE nostop noprint pass"):
            self.gdb.console(command)  # fmt: skip
        server = (
            f"env -u LD_PRELOAD gdbserver --wrapper env LD_PRELOAD={SHIM_IN_CONTAINER}:{AGENT} "
            f"-- - {shell_join(self.argv)}"
        )
        # The collector's settings are for a local inferior: sourced before the remote
        # target exists, they apply (with it, "disable-randomization" is refused).
        self.gdb.console(f"source {self.mount_gdbscripts}/qtrace_gdb.py")
        self.status("starting QEMU under gdbserver (fast tracepoints)")
        self.gdb.console(f"target remote | {server}", timeout_s=DISCOVERY_TIMEOUT_S)
        # Connecting reports QEMU stopped at its first instruction: that stop is not the
        # one asked for at vm_start.
        while self.gdb.wait_for_stop(0) is not None:
            pass
        if not self.gdb.console(f"qtrace setup {self.mount_out}/collector.json", timeout_s=60):
            raise CollectorError("the collector did not answer 'qtrace setup'")
        self.gdb.command("-exec-continue")
        stop = self.gdb.wait_for_stop(DISCOVERY_TIMEOUT_S)
        if stop is None:
            raise CollectorError(
                f"QEMU did not create its devices within {DISCOVERY_TIMEOUT_S:.0f} s under "
                "gdbserver (no stop at vm_start)"
            )
        if stop.reason.startswith("exited"):
            raise LaunchFailure("QEMU exited before creating its devices (see qemu.log)",
                                stop.exit_code, [])  # fmt: skip
        replies = self.gdb.console("qtrace discover", timeout_s=DISCOVERY_TIMEOUT_S)
        if not replies:
            raise CollectorError("the collector did not answer 'qtrace discover'")
        self.generated = generated_code(self._maps())
        return replies[0]

    def _qemu_pid(self) -> str | None:
        """QEMU's process id in the container, ``None`` when QEMU is gone."""
        pid = self.container.exec(["pgrep", "-x", "-n", "qemu-system-x86"]).output.strip()
        return pid if pid.isdigit() else None

    def _maps(self) -> str:
        """QEMU's ``/proc/PID/maps`` (read in the container; empty when QEMU is gone)."""
        pid = self._qemu_pid()
        return self.container.exec(["cat", f"/proc/{pid}/maps"]).output if pid else ""

    # ----- 2. the tracepoints -----

    def trace(
        self,
        discovery: dict[str, Any],
        header_regions: Sequence[Region],
        arm_on: str | None,
    ) -> None:
        """Define the tracepoints for the discovered regions and start tracing."""

        def disassemble(function: str) -> str:
            return self.gdb.console_text(f"disassemble /r {function}")

        regions = device_regions(dict(discovery.get("region_pointers") or {}), header_regions)
        if not regions:
            raise UsageError(
                "the device has no region with read/write handlers: the fast collector has "
                "nothing to trace.",
                hint=FALLBACK_HINT.capitalize() + ".",
            )
        devices = config_devices(list(discovery.get("config_devices") or []))
        plan = plan_tracepoints(regions, disassemble, arm_on, devices, self.exits is not None,
                                self._message_fields(), dma_copies(discovery))  # fmt: skip
        plan.stack_limit = main_stack_limit(self._maps())
        commands = tracepoint_commands(plan)
        (self.out_dir / TRACEPOINTS_NAME).write_text(commands, encoding="utf-8")
        defined = self.gdb.console_text(f"source {self.mount_out}/{TRACEPOINTS_NAME}")
        numbers = tracepoint_numbers(defined)
        if len(numbers) != len(plan.tracepoints):
            raise CollectorError(
                f"gdb defined {len(numbers)} of {len(plan.tracepoints)} fast tracepoints: "
                + " | ".join(defined.strip().splitlines()[-3:])
            )
        plan.numbers = {n: tp.role for n, tp in zip(numbers, plan.tracepoints, strict=True)}
        self.plan = plan
        self.gdb.console(f"set trace-buffer-size {BUFFER_BYTES}")
        self.gdb.console("set circular-trace-buffer off")
        # The agent's own buffer (5 MiB) loses a frame each time it fills: larger than
        # gdbserver's, it never does (.agent_buffer).
        self.agent_buffer = enlarge_agent_buffer(self.gdb.console_text, BUFFER_BYTES)
        # Every tstart takes new jump-pad and heap space, never given back (.agent_space).
        sites = [tp.address for tp in plan.tracepoints]
        space = enlarge_agent_space(self.gdb.console_text, (min(sites), max(sites)))
        self.starts_left = tracing_starts(space, len(sites))
        where = f"print/x (unsigned long) &{FRAMES_CREATED}"
        created_at = parse_value(self.gdb.console_text(where))
        if created_at is not None:
            self._created_at = created_at
            self.memory = open_host_memory(self.container.id, created_at)
        self.status("draining the trace buffer "
                    + ("when the agent's frame count, read from the host, says it is filling"
                       if self.memory is not None else "at timed intervals (QEMU's memory is "
                       "not readable from here)"))  # fmt: skip
        generated = self.generated
        self.decoder = AccessDecoder(
            plan.numbers, set(regions), DIRECT_NUMBERS,
            lambda pc: generated[0] <= pc < generated[1], set(devices),
        )  # fmt: skip
        self.maker = RecordMaker(regions, int(discovery.get("next_seq") or 1), devices,
                                 self.exits)  # fmt: skip
        self.gdb.console("break exit")
        self._start_tracing()
        self.status(f"tracing with {len(numbers)} fast tracepoints (QEMU is not stopped)")
        self._resume()

    def _message_fields(self) -> dict[str, int]:
        """This build's offsets of the PCIDevice fields an MSI or MSI-X message is read
        through (:data:`~.locate.MESSAGE_FIELDS`), asked of gdb.

        Raises:
            CollectorError: a field this build's PCIDevice does not have (the header
                already says MSI and MSI-X are traced).
        """
        out: dict[str, int] = {}
        for name in MESSAGE_FIELDS:
            value = parse_value(self.gdb.console_text(
                f"print/d (long) &((PCIDevice *) 0)->{name}"))  # fmt: skip
            if value is None:
                raise CollectorError(f"this build's PCIDevice has no field {name}",
                                     hint=FALLBACK_HINT.capitalize() + ".")  # fmt: skip
            out[name] = value
        return out

    def _start_tracing(self) -> None:
        """``tstart``: a new trace, in empty buffers (gdbserver's, and the agent's from its
        start)."""
        started = self.gdb.console_text("tstart")
        if "error" in started.lower() or "too far" in started:
            raise CollectorError(f"tstart failed: {started.strip()}")
        self._tracing = True
        self.starts_left -= 1

    def _resume(self) -> None:
        self.gdb.command("-exec-continue")
        self.running = True
        self._resumed_at = time.monotonic()

    def _stopped(self) -> None:
        """QEMU has stopped: count the time it ran traced."""
        self.running = False
        if self._resumed_at is not None:
            self.traced_s += time.monotonic() - self._resumed_at
            self._resumed_at = None

    # ----- 3. running, and draining the buffer while it runs -----

    def wait(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> Stop | None:
        """QEMU's next stop of its own (its ``exit`` call, a signal), or ``None``: after
        ``timeout_s``, at ``--max-hits`` (:attr:`reached_max_hits`), when KVM gave up on
        the guest (:attr:`kvm_error`) or when the guest did nothing for too long
        (:attr:`hang`); QEMU is stopped then.

        Meanwhile the buffer is drained: QEMU is stopped for a moment, the segment of
        frames since the last drain is read, decoded and written (:meth:`_drain`), and
        tracing starts again. The next drain is timed so that the buffer is about a third
        full (:func:`next_drain_s`)."""
        deadline = clock() + timeout_s
        interval = DRAIN_INTERVAL_S[0]
        next_drain = clock() + interval
        poll = PEEK_S if self.memory is not None else _POLL_S
        while True:
            now = clock()
            if now >= deadline:
                self.interrupt()
                return None
            stop = self.gdb.wait_for_stop(max(0.0, min(poll, deadline - now, next_drain - now)))
            if stop is not None:
                self._stopped()
                return stop
            created = self._created_now()  # one read of QEMU's memory a turn
            if self._kvm_gave_up(clock) or self._hung(clock(), created):
                return None
            if not self._drain_due(clock() >= next_drain, created):
                continue
            ran_s = self._running_s()
            # Stopping, draining and resuming go together: an interrupt in the middle is
            # taken once QEMU runs traced again (the capture then stops it and drains).
            stop, used = shielded(self._drain_while_running, self.status)
            if stop is not None or self.reached_max_hits or self.out_of_space is not None:
                return stop
            interval = next_drain_s(used, ran_s)
            next_drain = clock() + interval

    def _drain_while_running(self) -> tuple[Stop | None, int]:
        """Stop QEMU, drain the buffer, trace and run again (not at ``--max-hits``); a
        stop of QEMU's own that came first is returned instead, with nothing drained."""
        stop = self._pause()
        if stop is not None:
            return stop, 0
        used = self._drain()
        if not self.reached_max_hits and self.starts_left <= 0:
            self.out_of_space = (
                f"the fast collector stopped after {self.frame_checks.segments} drains of its "
                "trace buffer: gdbserver gives every new start of tracing new space for its "
                "jump pads, and the room mapped for them is used up"
            )
        if not self.reached_max_hits and self.out_of_space is None:
            self._start_tracing()
            self._resume()
        return None, used

    def _drain_due(self, timed_out: bool, frames: int | None) -> bool:
        """Whether to drain now: when the agent's ``frames`` since ``tstart`` (read from
        the host, :meth:`_created_now`) fill :data:`SEGMENT_BYTES`; without the host's view
        (``None``), when the timed interval is over (``timed_out``)."""
        if frames is None:
            return timed_out
        return frames * self.frame_bytes >= SEGMENT_BYTES

    def _created_now(self) -> int | None:
        """The agent's frames since ``tstart``, read from the host (``None``: not readable
        from here)."""
        if self.memory is None:
            return None
        try:
            return self.memory.u32(self._created_at)
        except OSError:
            return None

    def _hung(self, now_s: float, created: int | None) -> bool:
        """Whether the agent's count of hits stood still too long (:mod:`.progress`): then
        QEMU is stopped and :attr:`hang` says why. The count is the drained segments' plus,
        when the host can read it, the frames since the last ``tstart`` (``created``)."""
        if self.progress is None:
            return False
        self.progress.seen(self.frame_checks.hits_by_agent + (created or 0), now_s)
        armed = self.decoder is None or self.decoder.armed
        self.hang = self.progress.hung(now_s, armed)
        if self.hang is None:
            return False
        self.interrupt()
        return True

    def _running_s(self) -> float:
        return 0.0 if self._resumed_at is None else time.monotonic() - self._resumed_at

    def _pause(self) -> Stop | None:
        """Stop QEMU for a drain; a stop of QEMU's own that came first (its ``exit``
        call, a signal) is returned instead."""
        try:
            self.gdb.interrupt()
        except CollectorError as exc:  # QEMU stopped by itself a moment before
            logger.debug("interrupting for a drain: %s", exc)
        stop = self.gdb.wait_for_stop(10)
        self._stopped()
        if stop is None:
            raise CollectorError("QEMU did not stop within 10 s for the trace buffer's drain")
        if stop.reason == "signal-received" and stop.signal == "SIGINT":
            return None
        return stop

    def _kvm_gave_up(self, clock: Callable[[], float]) -> bool:
        """QEMU printed ``KVM internal error`` (it then pauses the VM, and nothing more
        happens): once its register dump is complete, or after :data:`KVM_DUMP_WAIT_S`,
        stop QEMU so that what was traced is saved."""
        error = parse_qemu_log(self.gdb.target_output())
        if error is None:
            return False
        if self.kvm_error is None:
            self._kvm_seen_at = clock()
        self.kvm_error = error
        if not error.dump_complete and clock() - self._kvm_seen_at < KVM_DUMP_WAIT_S:
            return False
        self.interrupt()
        return True

    def interrupt(self) -> None:
        """Stop QEMU (timeout, Ctrl-C) so that the buffer can be saved; nothing when it is
        stopped already (a drain was under way)."""
        if not self.running:
            return
        try:
            self.gdb.interrupt()
        except CollectorError as exc:
            logger.debug("interrupting QEMU: %s", exc)
        self.gdb.wait_for_stop(10)
        self._stopped()

    def exit_status(self) -> int | None:
        """The status QEMU passes to ``exit`` (at the ``exit`` stop: its first argument)."""
        records = self.gdb.command("-data-evaluate-expression $rdi")
        for record in records:
            if record.get("type") != "result":
                continue
            value = (record.get("payload") or {}).get("value")
            if value is not None:
                return int(str(value), 0) & 0xFF
        return None

    # ----- 4. saving and decoding -----

    def finish(self, status: CaptureStatus, reason: str | None,
               elapsed: Callable[[], float]) -> FastOutcome:  # fmt: skip
        """Save the last segment of the buffer, decode it, append its records and the
        ``end`` record (QEMU stopped).

        The buffer is what the capture keeps, and saving it can take a while, so it runs
        on a worker thread (:func:`shielded`): an interrupt (Ctrl-C, or a signal the CLI
        delivers as one) while it runs is noted and the save goes on (the end record then
        says ``interrupted``); a second one abandons it (the host closes the trace). Raises
        the first interrupt once the end record is written."""
        asked: list[KeyboardInterrupt] = []
        outcome = shielded(lambda: self._finish(status, reason, elapsed, asked), self.status,
                           asked)  # fmt: skip
        if asked:
            raise asked[0]
        return outcome

    def _finish(self, status: CaptureStatus, reason: str | None,
                elapsed: Callable[[], float],
                asked: list[KeyboardInterrupt]) -> FastOutcome:  # fmt: skip
        # The segment since the last tstart; none when a drain was the last thing done (at
        # --max-hits, or interrupted while it drained): its frames are written already.
        if self._tracing:
            self._drain()
        if self.memory is not None:
            self.memory.close()
        checks = self.checks
        hint = None
        if asked and status is CaptureStatus.OK:
            status = CaptureStatus.INTERRUPTED
            reason = (
                f"{interrupt_reason(asked[0])} while the trace buffer was saved; the guest "
                "had finished and everything traced is kept"
            )
        if status is CaptureStatus.OK and not checks.ok:
            status = CaptureStatus.ERROR
            reason = "the fast collector lost hits: " + "; ".join(checks.problems())
            hint = FALLBACK_HINT.capitalize() + "."
        # Beside the checks: how long QEMU ran traced, and how the segments were read.
        fast_checks = {
            **checks.record(),
            "traced_s": round(self.traced_s, 3),
            "read": "; ".join(f"{n} x {how}" if n > 1 else how for how, n in self.reads.items()),
        }
        with TraceWriter.append_to(self.trace_path) as writer:
            writer.write(
                End(status=status, accesses=self.accesses, stacks=self.stacks,
                    elapsed_s=round(elapsed(), 3), reason=reason, fast_checks=fast_checks)
            )  # fmt: skip
        return FastOutcome(status, reason, self.accesses, self.stacks, checks, hint)

    def _drain(self) -> int:
        """Take the segment of frames traced since the last ``tstart`` (QEMU stopped):
        read it, decode it, write its records; tracing is stopped. Returns the bytes the
        segment took in the buffer (what times the next drain). At ``--max-hits`` the
        accesses past the limit are counted, not written, and :attr:`reached_max_hits` is
        set."""
        assert self.decoder is not None and self.maker is not None
        # tstop first (as measured: a trace the full buffer stopped keeps "overflow" as its
        # stop reason), then the agent's counts.
        if self._tracing:
            self.gdb.console("tstop")
            self._tracing = False
        created, full, used = self._trace_status()
        if created:
            self.frame_bytes = max(self.frame_bytes, -(-used // created))
        thread_of = self._thread_namer()
        checks: list[FastChecks] = []
        with self._segment(created, used) as saved:
            self.reads[saved.how] = self.reads.get(saved.how, 0) + 1
            counted = counted_frames(saved.frames, checks, created, full)
            accesses = self.decoder.feed(counted, saved.numbers)
        segment = checks[0]
        if self.max_hits:
            # --max-hits counts access records (as the breakpoint collector counts them); an
            # irq among them is kept with them.
            keep = max_hits_cut(accesses, max(0, self.max_hits - self.accesses))
            if keep is not None:
                self.reached_max_hits = True
                segment = replace(segment, beyond_max_hits=len(accesses) - keep)
                accesses = accesses[:keep]
        self.frame_checks = self.frame_checks.plus(replace(segment, segments=1))
        # Each path is symbolized once a run, however many handlers and segments use it.
        wanted = [pcs for pcs in self.maker.new_stacks(accesses) if pcs not in self.symbols]
        self.symbols.update(self._symbolize(wanted))
        with TraceWriter.append_to(self.trace_path) as writer:
            for record in self.maker.records(accesses, self.symbols.__getitem__, thread_of):
                writer.write(record)
                if record.type == "access":
                    self.accesses += 1
                elif record.type == "irq":
                    self.irqs += 1
                elif record.type == "dma":
                    self.dmas += 1
                elif record.type == "stack":
                    self.stacks += 1
        if created:
            self.status(f"traced {self.accesses:,} accesses ({self.frame_checks.segments} "
                        "segments of the trace buffer)")
        return used

    @property
    def checks(self) -> FastChecks:
        """The run's self-checks so far: the frames' and the decoder's."""
        counts = self.frame_checks
        if self.decoder is not None:
            decoded = self.decoder.counts
            counts = replace(counts, without_values=decoded.frames_without_values,
                             other_regions=decoded.other_devices,
                             before_arming=decoded.before_arming)  # fmt: skip
        if self.maker is not None:
            maker = self.maker
            counts = replace(counts, irq_other_paths=maker.irq_other_paths,
                             kvm_exits=maker.exits is not None, quiet_exits=maker.quiet_exits,
                             exits_other_reasons=maker.exits_other_reasons,
                             exits_without_data=maker.exits_without_data)  # fmt: skip
        return counts

    def _thread_namer(self) -> Callable[[int], str | None]:
        """Which thread a stack pointer belongs to, from QEMU's threads now (stopped)."""
        threads = self.gdb.console("qtrace threads")
        stacks_of = thread_stacks(threads[0].get("threads", []) if threads else [], self._maps())

        def thread_of(sp: int) -> str | None:
            return next((name for start, end, name in stacks_of if start <= sp < end), None)

        return thread_of

    def _trace_status(self) -> tuple[int, bool, int]:
        """The frames the agent created since ``tstart``, whether the buffer filled, and
        the bytes its frames take (``-trace-status``)."""
        for record in self.gdb.command("-trace-status"):
            payload = record.get("payload") if record.get("type") == "result" else None
            if isinstance(payload, dict):
                full = payload.get("stop-reason") == "overflow"
                size, free = int(payload.get("buffer-size", 0)), int(payload.get("buffer-free", 0))
                return int(payload.get("frames-created", 0)), full, max(0, size - free)
        return 0, False, 0

    @contextlib.contextmanager
    def _segment(self, created: int, used: int) -> Iterator[SavedFrames]:
        """The segment's frames: read straight from the agent's buffer in QEMU's memory
        (a memory-mapped copy, decoded a frame at a time), or, when that read does not hold
        as many frames as the agent created, through gdb's ``tsave`` (about a second per
        1.5 MB, measured). Once gdbserver has taken the agent's frames because its buffer
        filled, the agent's buffer starts again from its beginning: a full segment reads
        fewer frames there and goes through ``tsave`` (measured: 1 frame read of 36,812
        created)."""
        direct = "read from the agent's buffer in QEMU"
        buffer = self.agent_buffer
        count = 0 if buffer is None else min(buffer.size, used + _DUMP_MARGIN_BYTES)
        if buffer is not None and self.memory is not None:
            try:
                data = self.memory.read(buffer.address, count)
            except OSError as exc:
                logger.debug("reading the agent's buffer from the host: %s", exc)
            else:
                if count_frames(data, created) == created:
                    yield SavedFrames(iter_frames(data, limit=created), DIRECT_NUMBERS, direct)
                    return
        dump = self._dd_agent_buffer(count) if self.memory is None else None
        if dump is not None:
            with dump.open("rb") as file, _mapped(file) as mapped:
                if count_frames(mapped, created) == created:
                    yield SavedFrames(iter_frames(mapped, limit=created), DIRECT_NUMBERS, direct)
                    dump.unlink(missing_ok=True)
                    return
            dump.unlink(missing_ok=True)
        self.status("saving the trace buffer through gdb (tsave)")
        tsave = self.out_dir / TSAVE_NAME
        self.gdb.console(f"tsave {self.mount_out}/{TSAVE_NAME}", timeout_s=TSAVE_TIMEOUT_S)
        saved = parse_tsave(tsave.read_bytes())
        tsave.unlink(missing_ok=True)
        yield SavedFrames(iter(saved.frames), variable_numbers(saved.header),
                          "saved by gdb's tsave")  # fmt: skip

    def _dd_agent_buffer(self, count: int) -> Path | None:
        """The agent's own buffer (:mod:`.agent_buffer`), its first ``count`` bytes, copied
        out of QEMU's memory with ``dd`` in the container into the output directory (when
        the host cannot read QEMU's memory, :mod:`.memory`); ``None`` when it cannot be
        read. After the stop the agent's frames are still there, in order from its start:
        gdbserver copies them into its own buffer, it does not move them."""
        buffer = self.agent_buffer
        pid = self._qemu_pid()
        if buffer is None or pid is None:
            return None
        result = self.container.exec(
            ["dd", f"if=/proc/{pid}/mem", f"of={self.mount_out}/{AGENT_DUMP_NAME}", "bs=4M",
             "iflag=skip_bytes,count_bytes", f"skip={buffer.address}", f"count={count}"]
        )  # fmt: skip
        dump = self.out_dir / AGENT_DUMP_NAME
        if result.exit_code != 0:
            logger.debug("reading the agent's buffer failed: %s", result.output[-300:])
            dump.unlink(missing_ok=True)
            return None
        return dump

    def _symbolize(self, stacks: list[tuple[int, ...]]) -> dict[tuple[int, ...], tuple[Frame, ...]]:
        """Each distinct stack's frames, by gdb, in one command."""
        if not stacks:
            return {}
        path = self.out_dir / STACKS_NAME
        path.write_text(json.dumps([list(s) for s in stacks]), encoding="utf-8")
        replies = self.gdb.console(
            f"qtrace symbolize {self.mount_out}/{STACKS_NAME} {shlex.quote(QEMU_SOURCE_ROOT)}",
            timeout_s=120,
        )
        path.unlink(missing_ok=True)
        answered = replies[0].get("stacks") if replies else None
        if not isinstance(answered, list) or len(answered) != len(stacks):
            raise CollectorError("the collector did not answer 'qtrace symbolize'")
        return {
            pcs: tuple(Frame(f["func"], f.get("file"), f.get("line"), f.get("pc")) for f in frames)
            for pcs, frames in zip(stacks, answered, strict=True)
        }

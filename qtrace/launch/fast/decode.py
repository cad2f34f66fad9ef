"""Turning a fast run's frames into device accesses: the accessor's arguments, the value,
the raw stack's return addresses.

Each tracepoint has a role (data: :class:`Role`): the guest's start marker (``arm``: frames
before its first hit are firmware's and are skipped, as the breakpoint collector arms
there), or one generic accessor's call site (``read``/``write``, :data:`~.locate.ACCESSORS`).
At those sites the MemoryRegion, the offset and the size are in the accessor's spill slots
(``slots``: register -> offset from ``rbp``, inside the raw block collected at ``rsp``), and
the value is in a register (a read: what the handler returned) or behind one (a write:
shifted and masked as the accessor will hand it to the handler). The accessors serve every
device of the machine: only frames whose MemoryRegion is one of the captured device's are
kept. Frames come in the agent's buffer order, the order the hits happened in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from qtrace.launch.fast.tsave import Frame
from qtrace.launch.fast.unwind import unwind

__all__ = ["Access", "Decoded", "Role", "decode_accesses"]

_U32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Role:
    """What one tracepoint records: ``read``/``write`` at an accessor (with where its
    arguments are), or ``arm`` (the start marker)."""

    kind: str
    slots: Mapping[str, int] = field(default_factory=dict)
    value_register: str = ""
    shift_register: str = ""
    mask_register: str = ""


@dataclass
class Access:
    """One device access as decoded: its MemoryRegion (``region``), offset, size, value."""

    op: str
    region: int
    offset: int
    size: int
    value: int
    pcs: tuple[int, ...]
    frame: int
    sp: int = 0  # the stack pointer at the hit: which thread's stack it ran on


@dataclass
class Decoded:
    """The accesses of a run and what could not be decoded."""

    accesses: list[Access] = field(default_factory=list)
    frames_without_registers: int = 0
    frames_without_arguments: int = 0  # the spill slots or the value block were not collected
    before_arming: int = 0  # the device's frames before the guest's start marker
    other_devices: int = 0  # accessor frames of other devices' regions


def decode_accesses(
    frames: tuple[Frame, ...],
    roles: Mapping[int, Role],
    regions: set[int],
    in_generated_code: Callable[[int], bool],
) -> Decoded:
    """The accesses to the MemoryRegions ``regions`` (the captured device's)."""
    out = Decoded()
    armed = not any(role.kind == "arm" for role in roles.values())
    for frame in frames:
        role = roles.get(frame.tracepoint)
        if role is None or frame.zeroed or frame.undecodable:
            continue
        if role.kind == "arm":
            armed = True
            continue
        regs = frame.regs
        if not regs:
            out.frames_without_registers += 1
            continue
        rbp, rsp = regs["rbp"], regs["rsp"]
        block = frame.block_at(rsp) or b""
        mr = _word(block, rbp + role.slots.get("rdi", 0) - rsp)
        offset = _word(block, rbp + role.slots.get("rsi", 0) - rsp)
        size = _word(block, rbp + role.slots.get("rcx", 0) - rsp)
        if mr is None or offset is None or size is None:
            out.frames_without_arguments += 1
            continue
        if mr not in regions:
            out.other_devices += 1
            continue
        if not armed:
            out.before_arming += 1
            continue
        value = _value(frame, role)
        if value is None:
            out.frames_without_arguments += 1
            continue
        pcs = unwind(regs["rip"], rbp, rsp, block, in_generated_code)
        out.accesses.append(
            Access(role.kind, mr, offset, size & _U32, value, pcs, frame.index, rsp)
        )
    return out


def _value(frame: Frame, role: Role) -> int | None:
    regs = frame.regs
    if role.kind == "read":
        return regs[role.value_register]
    raw = frame.block_at(regs[role.value_register])
    if raw is None or len(raw) < 8:
        return None
    value = int.from_bytes(raw[:8], "little")
    shift = regs[role.shift_register] & _U32
    if shift & 0x8000_0000:  # a signed int: a negative shift shifts left
        value = (value << ((1 << 32) - shift)) & _U64
    else:
        value >>= shift
    return value & regs[role.mask_register]


def _word(block: bytes, offset: int) -> int | None:
    if offset < 0 or offset + 8 > len(block):
        return None
    return int.from_bytes(block[offset : offset + 8], "little")

"""Turning a fast run's frames into device accesses: the handler's arguments, the read's
value, the raw stack's return addresses.

Each tracepoint has a role (data: :class:`Role`): a handler's entry (its arguments are still
in rdi, rsi, rdx, rcx there: opaque, offset, then value and size for a write, size for a
read) or the generic read accessor's value call (the value the handler returned, in the
register :data:`~.locate.VALUE_CALLS` names). A read's entry and its value are paired
exactly: the handler's saved ``rbp`` (the first word of its frame, in the raw block) is the
accessor's frame pointer at the value call. Frames come in the agent's buffer order, which
is the order the hits happened in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from qtrace.launch.fast.tsave import Frame
from qtrace.launch.fast.unwind import unwind

__all__ = ["Access", "Decoded", "Role", "decode_accesses"]


@dataclass(frozen=True)
class Role:
    """What one tracepoint records: ``read``/``write`` entry of ``handler``, or ``value``."""

    kind: str
    handler: str = ""
    value_register: str = "rcx"


@dataclass
class Access:
    """One device access as decoded; ``value`` is ``None`` for a read whose value frame was
    lost (counted in :attr:`Decoded.reads_without_value`)."""

    op: str
    handler: str
    opaque: int
    offset: int
    size: int
    value: int | None
    pcs: tuple[int, ...]
    frame: int


@dataclass
class Decoded:
    """The accesses of a run and what could not be decoded."""

    accesses: list[Access] = field(default_factory=list)
    reads_without_value: int = 0
    frames_without_registers: int = 0


def decode_accesses(
    frames: tuple[Frame, ...],
    roles: dict[int, Role],
    opaques: set[int],
    in_generated_code: Callable[[int], bool],
) -> Decoded:
    """The accesses of the device whose handlers get one of ``opaques`` (a shared handler,
    such as the MSI-X table's, serves other devices too)."""
    out = Decoded()
    pending: dict[int, Access] = {}
    for frame in frames:
        role = roles.get(frame.tracepoint)
        if role is None or frame.zeroed or frame.undecodable:
            continue
        regs = frame.regs
        if not regs:
            out.frames_without_registers += 1
            continue
        if role.kind == "value":
            access = pending.pop(regs["rbp"], None)
            if access is not None:
                access.value = regs[role.value_register]
            continue
        if regs["rdi"] not in opaques:
            continue
        block = frame.block_at(regs["rsp"]) or b""
        pcs = unwind(regs["rip"], regs["rbp"], regs["rsp"], block, in_generated_code)
        if role.kind == "write":
            access = Access("write", role.handler, regs["rdi"], regs["rsi"],
                            regs["rcx"] & 0xFFFFFFFF, regs["rdx"], pcs, frame.index)
        else:
            access = Access("read", role.handler, regs["rdi"], regs["rsi"],
                            regs["rdx"] & 0xFFFFFFFF, None, pcs, frame.index)
            saved = _word(block, regs["rbp"] - regs["rsp"])
            if saved is not None:
                pending[saved] = access
        out.accesses.append(access)
    out.reads_without_value = sum(
        1 for a in out.accesses if a.op == "read" and a.value is None
    )
    return out


def _word(block: bytes, offset: int) -> int | None:
    if offset < 0 or offset + 8 > len(block):
        return None
    return int.from_bytes(block[offset : offset + 8], "little")

"""Turning a fast run's frames into device accesses: the values the agent left in trace
state variables and the raw stack block it collected (:mod:`.actions`).

Each tracepoint has a role (data: :class:`Role`): the guest's start marker (``arm``: frames
before its first hit are firmware's and are skipped, as the breakpoint collector arms
there), or one generic accessor's call site (``read``/``write``, :data:`~.locate.ACCESSORS`).
A frame holds the MemoryRegion, offset and size the accessor was called with, the value
(a read: what the handler returned; a write: the 8 bytes the accessor's value points at,
with the shift and mask it applies before calling the handler), the stack and frame
pointers and the raw stack, unwound here (:mod:`.unwind`) into return addresses, innermost
first; the first is the tracepoint's own address. The stack pointer also says the thread.
Only frames of the captured device's regions are kept (the agent's condition already
filters them; a frame of another region is counted). Frames come in the agent's buffer
order, the order the hits happened in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from qtrace.launch.fast.actions import TIMESTAMP
from qtrace.launch.fast.tsave import Frame
from qtrace.launch.fast.unwind import unwind

__all__ = ["Access", "Decoded", "Role", "decode_accesses", "variable_numbers"]

_U32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Role:
    """What one tracepoint records: ``read``/``write`` at an accessor (with where its
    arguments are), or ``arm`` (the start marker); ``address`` is where it sits."""

    kind: str
    slots: Mapping[str, int] = field(default_factory=dict)
    value_register: str = ""
    shift_register: str = ""
    mask_register: str = ""
    address: int = 0


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
    us: int | None = None  # the agent's timestamp of the hit, in microseconds


@dataclass
class Decoded:
    """The accesses of a run and what could not be decoded."""

    accesses: list[Access] = field(default_factory=list)
    frames_without_values: int = 0  # a frame whose variables are missing
    before_arming: int = 0  # the device's frames before the guest's start marker
    other_devices: int = 0  # frames of other devices' regions


def variable_numbers(header: Iterable[str]) -> dict[str, int]:
    """Trace state variable name -> number, from a tsave header's ``tsv`` lines
    (``tsv NUM:INITIAL:BUILTIN:NAME-IN-HEX``, numbers in hex)."""
    out: dict[str, int] = {}
    for line in header:
        if line.startswith("tsv "):
            parts = line[4:].split(":")
            if len(parts) == 4:
                out[bytes.fromhex(parts[3]).decode("ascii", "replace")] = int(parts[0], 16)
    return out


def decode_accesses(
    frames: tuple[Frame, ...],
    roles: Mapping[int, Role],
    regions: set[int],
    numbers: Mapping[str, int],
    in_generated_code: Callable[[int], bool],
) -> Decoded:
    """The accesses to the MemoryRegions ``regions`` (the captured device's); ``numbers``
    maps the actions' variable names to the numbers the frames use;
    ``in_generated_code`` says whether a return address is in TCG's code buffer."""
    out = Decoded()
    armed = not any(role.kind == "arm" for role in roles.values())

    def get(frame: Frame, name: str) -> int | None:
        number = numbers.get(name if name == TIMESTAMP else "q_" + name)
        value = None if number is None else frame.variables.get(number)
        return None if value is None else value & _U64

    for frame in frames:
        role = roles.get(frame.tracepoint)
        if role is None or frame.zeroed or frame.undecodable:
            continue
        if role.kind == "arm":
            armed = True
            continue
        got = [get(frame, n) for n in ("mr", "off", "size", "val", "sp", "bp")]
        known = [v for v in got if v is not None]
        block = frame.block_at(known[4]) if len(known) == len(got) else None
        if block is None:
            out.frames_without_values += 1
            continue
        mr, offset, size, value, sp, bp = known
        if mr not in regions:
            out.other_devices += 1
            continue
        if not armed:
            out.before_arming += 1
            continue
        if role.kind == "write":
            shift, mask = get(frame, "shift"), get(frame, "mask")
            if shift is None or mask is None:
                out.frames_without_values += 1
                continue
            value = _shifted(value, shift, mask)
        pcs = unwind(role.address, bp, sp, block, in_generated_code)
        out.accesses.append(
            Access(role.kind, mr, offset, size & _U32, value, pcs, frame.index, sp,
                   get(frame, TIMESTAMP))  # fmt: skip
        )
    return out


def _shifted(raw: int, shift: int, mask: int) -> int:
    """The value the write accessor hands the handler: ``raw`` shifted (a negative
    shift, a signed int, shifts left) and masked."""
    shift &= _U32
    if shift & 0x8000_0000:
        raw = (raw << ((1 << 32) - shift)) & _U64
    else:
        raw >>= shift
    return raw & mask

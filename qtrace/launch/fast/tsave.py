"""Reading a ``tsave`` trace file (gdb's ``tfile`` format) with the agent's register layout.

Why offline: gdb 13.1 has read the in-process agent's frames with the wrong register-block
size (one machine: the agent's 2500 bytes, gdb's 2420) and shown collected memory as
``<unavailable>``; reading the saved file with the agent's size gives back every register and
memory block (ENVIRONMENT.md, "GDB fast tracepoints"). The size is the header's ``R`` line
(2416 on the machine of 2026-12-02, where agent and gdb agree) unless a frame does not decode
with it; then the agent's 2500 is tried.

The file: ``\\x7fTRACE0\\n``, text lines up to an empty line (``R <size hex>``, ``tp ...``,
``status ...``), then frames: a little-endian u16 tracepoint number (0 ends the trace), a
u32 data size, and blocks: ``R`` + the register block, ``M`` + u64 address + u16 length +
bytes, ``V`` + i32 variable number + i64 value.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

Buffer = bytes | mmap.mmap
"""What frames are read from: a file's bytes, or a memory-mapped dump of the agent's buffer."""

__all__ = [
    "AGENT_REGBLOCK_BYTES",
    "AMD64_REG_OFFSETS",
    "Frame",
    "TraceFile",
    "TsaveFormatError",
    "count_frames",
    "iter_frames",
    "parse_frames",
    "parse_tsave",
]

MAGIC = b"\x7fTRACE0\n"
# The in-process agent's register block on the project's CPUs (measured, gdbserver 13.1).
AGENT_REGBLOCK_BYTES = 2500
# Byte offsets of the general registers in that block: gdb's amd64 register order, 8 bytes each.
AMD64_REG_OFFSETS: dict[str, int] = {
    name: 8 * index
    for index, name in enumerate(
        ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
         "r12", "r13", "r14", "r15", "rip")
    )
}


class TsaveFormatError(ValueError):
    """The file is not a tfile trace, or a frame runs past the file's end."""


@dataclass(frozen=True)
class Frame:
    """One hit as the agent recorded it."""

    index: int
    tracepoint: int
    regs: dict[str, int] = field(default_factory=dict)
    memory: tuple[tuple[int, bytes], ...] = ()
    variables: dict[int, int] = field(default_factory=dict)
    zeroed: bool = False
    undecodable: str | None = None

    def block_from(self, addr: int) -> bytes | None:
        """The collected memory from ``addr`` to the end of the block that holds it (a
        stack block may start below the stack pointer, near the stack's end)."""
        for start, data in self.memory:
            if start <= addr < start + len(data):
                return data[addr - start :]
        return None

    def block_at(self, addr: int) -> bytes | None:
        """The collected memory block starting at ``addr``, if one was collected."""
        for start, data in self.memory:
            if start == addr:
                return data
        return None


@dataclass(frozen=True)
class TraceFile:
    """The header lines and every frame of a saved trace."""

    header: tuple[str, ...]
    frames: tuple[Frame, ...]


def parse_tsave(data: bytes, regblock_bytes: int | None = None) -> TraceFile:
    """Every frame of a tfile, registers read with ``regblock_bytes`` (default: the header's
    ``R`` size, then the agent's :data:`AGENT_REGBLOCK_BYTES` for a frame that needs it).

    A frame whose bytes are all zero (or that has none) is kept with ``zeroed`` set; a frame
    with an unknown block keeps what came before it and says why in ``undecodable``. Both
    mean the hit's data is lost: once gdbserver's buffer is full it still stores a few
    frames' headers with no data (they end the file); and an agent buffer that fills in the
    middle of a frame splits it (:mod:`.agent_buffer`, which the run prevents). Raises
    :class:`TsaveFormatError` for a file that is not a trace.
    """
    if not data.startswith(MAGIC):
        raise TsaveFormatError("not a gdb tsave file (no \\x7fTRACE0 magic)")
    end = data.find(b"\n\n", len(MAGIC) - 1)
    if end < 0:
        raise TsaveFormatError("tsave header has no end (empty line)")
    header = tuple(data[len(MAGIC) : end].decode("ascii", "replace").splitlines())
    return TraceFile(header, parse_frames(data, end + 2, _regblock_sizes(header, regblock_bytes)))


def parse_frames(
    data: Buffer, pos: int = 0, sizes: tuple[int, ...] = (AGENT_REGBLOCK_BYTES,)
) -> tuple[Frame, ...]:
    """The frames laid out from ``pos`` on, up to a tracepoint number 0 or the end: a tsave
    file's, or the agent's own buffer read from QEMU's memory (the same layout: gdbserver
    copies the agent's frames as they are). ``sizes``: the register block sizes to try."""
    return tuple(iter_frames(data, pos, sizes))


def iter_frames(
    data: Buffer,
    pos: int = 0,
    sizes: tuple[int, ...] = (AGENT_REGBLOCK_BYTES,),
    limit: int | None = None,
    first_index: int = 0,
) -> Iterator[Frame]:
    """:func:`parse_frames` one frame at a time, at most ``limit`` of them, numbered from
    ``first_index``: a drained segment of a long run is read from a memory-mapped file
    without holding its frames (hundreds of MiB) at once."""
    count = 0
    while pos + 2 <= len(data) and (limit is None or count < limit):
        (tracepoint,) = struct.unpack_from("<H", data, pos)
        pos += 2
        if tracepoint == 0:
            break
        if pos + 4 > len(data):
            raise TsaveFormatError(f"frame {first_index + count} cut short at byte {pos}")
        (size,) = struct.unpack_from("<I", data, pos)
        pos += 4
        body = data[pos : pos + size]
        if len(body) < size:
            raise TsaveFormatError(f"frame {first_index + count} cut short at byte {pos}")
        pos += size
        for size_bytes in sizes:
            frame = _frame(first_index + count, tracepoint, body, size_bytes)
            if frame.undecodable is None:
                break
        yield frame
        count += 1


def count_frames(data: Buffer, limit: int | None = None) -> int:
    """How many frames lie laid out from the start of ``data`` (up to a tracepoint number
    0, the end, or ``limit``), reading only their headers: whether a read of the agent's
    buffer holds every frame the agent created, before any is decoded."""
    pos = count = 0
    while pos + 6 <= len(data) and (limit is None or count < limit):
        tracepoint, size = struct.unpack_from("<HI", data, pos)
        if tracepoint == 0 or pos + 6 + size > len(data):
            break
        pos += 6 + size
        count += 1
    return count


def _regblock_sizes(header: tuple[str, ...], asked: int | None) -> tuple[int, ...]:
    if asked is not None:
        return (asked,)
    for line in header:
        if line.startswith("R "):
            try:
                return (int(line[2:], 16), AGENT_REGBLOCK_BYTES)
            except ValueError:
                break
    return (AGENT_REGBLOCK_BYTES,)


def _frame(index: int, tracepoint: int, body: bytes, regblock_bytes: int) -> Frame:
    if not body.strip(b"\0"):
        return Frame(index, tracepoint, zeroed=True)
    regs: dict[str, int] = {}
    memory: list[tuple[int, bytes]] = []
    variables: dict[int, int] = {}
    pos = 0
    why: str | None = None
    while pos < len(body):
        kind = body[pos : pos + 1]
        pos += 1
        if kind == b"R" and pos + regblock_bytes <= len(body):
            block = body[pos : pos + regblock_bytes]
            regs = {
                n: int.from_bytes(block[o : o + 8], "little")
                for n, o in AMD64_REG_OFFSETS.items()
            }
            pos += regblock_bytes
        elif kind == b"M" and pos + 10 <= len(body):
            addr, length = struct.unpack_from("<QH", body, pos)
            pos += 10
            memory.append((addr, body[pos : pos + length]))
            pos += length
        elif kind == b"V" and pos + 12 <= len(body):
            number, value = struct.unpack_from("<iq", body, pos)
            variables[number] = value
            pos += 12
        else:
            why = f"block {kind!r} at byte {pos - 1} of {len(body)}"
            break
    return Frame(index, tracepoint, regs, tuple(memory), variables, undecodable=why)

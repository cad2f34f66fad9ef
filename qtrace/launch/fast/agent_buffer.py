"""The in-process agent's own trace buffer, made larger than gdbserver's before ``tstart``.

Why (gdbserver 13.1, read in its ``tracepoint.cc`` and measured on the e1000 probe): the
agent keeps its frames in a buffer of its own inside QEMU, sized once when the library
loads (5 MiB, gdbserver's default) and never resized by ``set trace-buffer-size``, which
reaches gdbserver's buffer only. The agent builds a frame a piece at a time: the frame
header, then each collected block is a separate allocation. When that buffer runs out in
the middle of a frame, the agent has gdbserver copy the finished frames out, then places
the frame's remaining blocks at the start of its buffer, away from the header, while the
header's size counts them as if they followed it. gdbserver later copies that frame as one
contiguous run from the header, so the frame it stores holds the first blocks and then
whatever lay past them (zeros, or stale bytes): one frame lost each time the agent's
buffer fills, once per ~5 MiB of trace (frames 869, 1738, ... of 6,031 bytes).

The fix keeps the agent's buffer from ever filling before gdbserver's does: before
``tstart`` gdb maps a buffer of :func:`agent_buffer_bytes` in QEMU (an ``mmap`` call in
the stopped inferior) and points the agent's ``trace_buffer_lo``/``hi`` at it; ``tstart``
then resets the agent's buffer state from those two pointers. The agent's buffer only goes
back to its start when gdbserver has emptied it, and everything it passed on stays in
gdbserver's non-circular buffer, so reaching its end would take more frames than
gdbserver's buffer holds: tracing has stopped (buffer full) before that can happen.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from qtrace.errors import CollectorError

__all__ = [
    "AGENT_DEFAULT_BUFFER_BYTES",
    "AgentBuffer",
    "agent_buffer_bytes",
    "enlarge_agent_buffer",
    "map_command",
    "mapped_address",
    "parse_value",
    "read_pointer",
    "set_pointer",
]

AGENT_DEFAULT_BUFFER_BYTES = 5 << 20
"""The agent's buffer as the library allocates it (gdbserver 13.1's default size)."""
HEADROOM_BYTES = 4 << 20
"""More than gdbserver's buffer by this: room for the frames in flight when it fills."""
_LO = "gdb_agent_trace_buffer_lo"  # the agent's exported buffer bounds (libinproctrace.so)
_HI = "gdb_agent_trace_buffer_hi"
_PROT_READ_WRITE = 0x3
_MAP_PRIVATE_ANONYMOUS = 0x22
_VALUE = re.compile(r"^\$\d+ = (0x[0-9a-fA-F]+|\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class AgentBuffer:
    """Where the agent's buffer is and how big, as read back from the agent."""

    address: int
    size: int


def agent_buffer_bytes(server_buffer_bytes: int) -> int:
    """The agent's buffer for a gdbserver buffer of ``server_buffer_bytes``."""
    return max(server_buffer_bytes + HEADROOM_BYTES, AGENT_DEFAULT_BUFFER_BYTES)


def map_command(
    size: int, at: int = 0, prot: int = _PROT_READ_WRITE, flags: int = 0
) -> str:
    """gdb's command that maps ``size`` bytes of zeroed memory in the stopped inferior
    (``at``: where, with ``flags`` such as MAP_FIXED_NOREPLACE) and prints its address
    (``mmap`` has no debug info: it is called through a cast)."""
    fn = "((void *(*)(void *, unsigned long, int, int, int, long)) mmap)"
    return (
        f"print/x (unsigned long) {fn}({hex(at) if at else 0}, {size:#x}, {prot}, "
        f"{_MAP_PRIVATE_ANONYMOUS | flags}, -1, 0)"
    )


def parse_value(text: str) -> int | None:
    """The value of a ``print`` (``$N = 0x...``), or ``None`` if it printed none."""
    match = _VALUE.search(text)
    return int(match.group(1), 0) if match else None


def mapped_address(printed: str) -> int | None:
    """The address a :func:`map_command` printed, ``None`` when the mapping failed (no
    value, 0, or ``MAP_FAILED``)."""
    address = parse_value(printed)
    return None if address in (None, 0, (1 << 64) - 1) else address


def read_pointer(console_text: Callable[[str], str], name: str) -> int | None:
    """The pointer variable ``name`` of the stopped inferior (an agent's exported one)."""
    return parse_value(console_text(f"print/x *(unsigned long *) &{name}"))


def set_pointer(console_text: Callable[[str], str], name: str, value: int) -> None:
    console_text(f"set var *(unsigned long *) &{name} = {value:#x}")


def enlarge_agent_buffer(
    console_text: Callable[[str], str], server_buffer_bytes: int
) -> AgentBuffer:
    """Give the agent a buffer larger than gdbserver's (QEMU stopped, before ``tstart``);
    ``console_text`` runs a gdb command and returns what it printed.

    Raises:
        CollectorError: the mapping failed, or the agent's bounds did not take the values.
    """
    size = agent_buffer_bytes(server_buffer_bytes)
    printed = console_text(map_command(size))
    address = mapped_address(printed)
    if address is None:
        raise CollectorError(
            "could not map the agent's trace buffer in QEMU: " + (printed.strip() or "no answer")
        )
    set_pointer(console_text, _LO, address)
    set_pointer(console_text, _HI, address + size)
    lo = read_pointer(console_text, _LO)
    hi = read_pointer(console_text, _HI)
    if lo != address or hi != address + size:
        raise CollectorError(
            f"the agent's trace buffer bounds did not take the new buffer "
            f"(lo {lo if lo is None else hex(lo)}, hi {hi if hi is None else hex(hi)})"
        )
    return AgentBuffer(address, size)

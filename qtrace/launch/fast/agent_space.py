"""Room for the fast tracepoints gdbserver installs again at every ``tstart``.

Why (gdbserver 13.1, read in its ``tracepoint.cc`` and measured on the e1000 firmware
guest): each ``tstart`` installs every fast tracepoint anew. Its jump pad (and compiled
condition) takes fresh space in the agent's jump-pad buffer, and its actions and
expressions are downloaded into fresh space of the agent's heap; neither is ever given
back, and neither is checked against its end. The library sizes the jump-pad buffer at 20
pages (80 KiB) and the heap at 5 MiB. The fast collector starts tracing again after every
drain of its buffer (:mod:`.run`), so a long run walks off the end of the jump-pad buffer:
with the 45 tracepoints of an e1000 capture (36 of them DMA) QEMU died of SIGSEGV in the
sixth segment, executing a jump pad 0x100 bytes past the buffer (about 300 bytes a
tracepoint a ``tstart``).

So before the first ``tstart`` gdb maps a larger jump-pad buffer just below the agent's
(a jump pad must lie within a 32-bit displacement of the code it is jumped to from) and a
larger heap, and points the agent's exported pointers at them; gdbserver reads both
pointers once, when it first needs them, at that ``tstart``. :func:`tracing_starts` gives
how many ``tstart`` s the two then hold, with a wide margin over the measured use; the run
stops, saying why, before it would need more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qtrace.errors import CollectorError
from qtrace.launch.fast.agent_buffer import (
    map_command,
    mapped_address,
    parse_value,
    read_pointer,
    set_pointer,
)

__all__ = ["AgentSpace", "enlarge_agent_space", "tracing_starts"]

JUMP_PAD_BYTES = 64 << 20
HEAP_BYTES = 256 << 20
JUMP_PAD_BYTES_PER_TRACEPOINT = 4 << 10
"""What one tracepoint may take of the jump-pad buffer a ``tstart`` (measured: ~300)."""
HEAP_BYTES_PER_TRACEPOINT = 16 << 10
"""What one tracepoint may take of the heap a ``tstart`` (its actions, a few hundred
bytes of bytecode: the longest is under 4 KiB)."""
REACH = (1 << 31) - 1  # a jmp rel32's reach
_PAD = "gdb_agent_gdb_jump_pad_buffer"  # the agent's exported pointers (libinproctrace.so)
_PAD_END = "gdb_agent_gdb_jump_pad_buffer_end"
_HEAP = "gdb_agent_gdb_tp_heap_buffer"
_PROT_ALL = 0x7  # read, write, execute: the jump pads are code
_MAP_FIXED_NOREPLACE = 0x100000
_PAGE = 0x1000


@dataclass(frozen=True)
class AgentSpace:
    """Where the agent's jump pads and heap now are, and how big."""

    jump_pads: int
    jump_pad_bytes: int
    heap: int
    heap_bytes: int


def tracing_starts(space: AgentSpace, tracepoints: int) -> int:
    """How many ``tstart`` s ``space`` holds for ``tracepoints`` fast tracepoints."""
    n = max(1, tracepoints)
    return min(
        space.jump_pad_bytes // (n * JUMP_PAD_BYTES_PER_TRACEPOINT),
        space.heap_bytes // (n * HEAP_BYTES_PER_TRACEPOINT),
    )


def enlarge_agent_space(
    console_text: Callable[[str], str], code: tuple[int, int]
) -> AgentSpace:
    """Give the agent a larger jump-pad buffer and heap (QEMU stopped, before the first
    ``tstart``); ``code`` is the lowest and highest tracepoint address, which every jump
    pad must reach. ``console_text`` runs a gdb command and returns what it printed.

    Raises:
        CollectorError: a mapping failed or lies out of reach, or a pointer did not take.
    """
    old = read_pointer(console_text, _PAD)
    if not old:
        raise CollectorError("could not read the agent's jump-pad buffer (" + _PAD + ")")
    wanted = (old - JUMP_PAD_BYTES) & ~(_PAGE - 1)
    pads = parse_value(console_text(map_command(
        JUMP_PAD_BYTES, wanted, _PROT_ALL, _MAP_FIXED_NOREPLACE)))  # fmt: skip
    low, high = code
    if pads != wanted or high - pads > REACH or pads + JUMP_PAD_BYTES - low > REACH:
        raise CollectorError(
            f"could not map the agent's jump pads in reach of QEMU's code at {wanted:#x} "
            f"(mmap gave {pads if pads is None else hex(pads)})"
        )
    heap = mapped_address(console_text(map_command(HEAP_BYTES)))
    if heap is None:
        raise CollectorError("could not map the agent's heap in QEMU")
    for name, value in ((_PAD, pads), (_PAD_END, pads + JUMP_PAD_BYTES), (_HEAP, heap)):
        set_pointer(console_text, name, value)
        if read_pointer(console_text, name) != value:
            raise CollectorError(f"the agent's {name} did not take {value:#x}")
    return AgentSpace(pads, JUMP_PAD_BYTES, heap, HEAP_BYTES)

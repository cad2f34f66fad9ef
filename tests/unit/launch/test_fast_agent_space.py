"""The agent's jump pads and heap, enlarged before the first tstart (agent_space.py),
against a fake gdb console that answers as gdb 13.1 does."""

from __future__ import annotations

import re

import pytest

from qtrace.errors import CollectorError
from qtrace.launch.fast.agent_space import (
    HEAP_BYTES,
    JUMP_PAD_BYTES,
    AgentSpace,
    enlarge_agent_space,
    tracing_starts,
)

OLD_PADS = 0x5600_0020_0000  # where the library put its 80 KiB jump-pad buffer
CODE = (0x5600_0073_0000, 0x5600_00C0_0000)  # the lowest and highest tracepoint


def _match(pattern: str, text: str) -> tuple[str, ...]:
    found = re.search(pattern, text)
    assert found is not None, (pattern, text)
    return found.groups()


class FakeConsole:
    """gdb's console: mmap calls answer from ``maps`` (hint -> address), ``set var``
    stores, ``print`` reads back."""

    def __init__(self, maps: dict[int, int], stores: bool = True) -> None:
        self.memory = {"gdb_agent_gdb_jump_pad_buffer": OLD_PADS}
        self.maps = maps
        self.stores = stores
        self.mmaps: list[str] = []

    def __call__(self, command: str) -> str:
        if "mmap)" in command:
            self.mmaps.append(command)
            hint = int(_match(r"mmap\)\((0x[0-9a-f]+|0),", command)[0], 0)
            return f"$1 = {self.maps.get(hint, 0x7F00_0000_0000):#x}\n"
        if command.startswith("set var"):
            name, value = _match(r"set var \*\(unsigned long \*\) &(\w+) = (\w+)$", command)
            if self.stores:
                self.memory[name] = int(value, 0)
            return ""
        if command.startswith("print/x"):
            name = command.rsplit("&", 1)[1]
            return f"$2 = {self.memory[name]:#x}\n" if name in self.memory else "No symbol.\n"
        raise AssertionError(f"unexpected command {command!r}")


def test_the_jump_pads_go_just_below_the_agents_and_executable_and_the_pointers_take() -> None:
    wanted = OLD_PADS - JUMP_PAD_BYTES
    console = FakeConsole({wanted: wanted})
    space = enlarge_agent_space(console, CODE)
    assert space == AgentSpace(wanted, JUMP_PAD_BYTES, 0x7F00_0000_0000, HEAP_BYTES)
    assert console.memory["gdb_agent_gdb_jump_pad_buffer"] == wanted
    assert console.memory["gdb_agent_gdb_jump_pad_buffer_end"] == OLD_PADS
    assert console.memory["gdb_agent_gdb_tp_heap_buffer"] == 0x7F00_0000_0000
    pads_call = console.mmaps[0]
    assert f"({wanted:#x}, {JUMP_PAD_BYTES:#x}, 7, {0x22 | 0x100000}, -1, 0)" in pads_call


def test_jump_pads_mapped_elsewhere_than_asked_are_refused() -> None:
    # The kernel ignored the address (no MAP_FIXED_NOREPLACE): far from the code.
    with pytest.raises(CollectorError, match="in reach of QEMU's code"):
        enlarge_agent_space(FakeConsole({}), CODE)


def test_a_pointer_that_does_not_take_is_an_error() -> None:
    wanted = OLD_PADS - JUMP_PAD_BYTES
    with pytest.raises(CollectorError, match="did not take"):
        enlarge_agent_space(FakeConsole({wanted: wanted}, stores=False), CODE)


def test_the_starts_the_space_holds_shrink_with_the_tracepoints() -> None:
    space = AgentSpace(0, JUMP_PAD_BYTES, 0, HEAP_BYTES)
    # The e1000's 45 tracepoints: hundreds of drains (a million firmware hits took 22).
    assert tracing_starts(space, 45) == 364
    assert tracing_starts(space, 9) > tracing_starts(space, 45)
    # The library's own 80 KiB would hold no start with this margin.
    assert tracing_starts(AgentSpace(0, 80 << 10, 0, 5 << 20), 45) == 0

"""The agent's own trace buffer, enlarged past gdbserver's before ``tstart``."""

from __future__ import annotations

import re

import pytest

from qtrace.errors import CollectorError
from qtrace.launch.fast.agent_buffer import (
    AGENT_DEFAULT_BUFFER_BYTES,
    agent_buffer_bytes,
    enlarge_agent_buffer,
    map_command,
    parse_value,
)


class FakeGdb:
    """Answers the commands as gdb does with the agent loaded; remembers the bounds set."""

    def __init__(self, mapped: str = "$1 = 0x7f2e7fa00000\n", ignore_sets: bool = False) -> None:
        self.mapped = mapped
        self.ignore_sets = ignore_sets
        self.memory = {"gdb_agent_trace_buffer_lo": 0x5000, "gdb_agent_trace_buffer_hi": 0x505000}
        self.commands: list[str] = []

    def __call__(self, command: str) -> str:
        self.commands.append(command)
        if "mmap" in command:
            return self.mapped
        set_var = re.fullmatch(r"set var \*\(unsigned long \*\) &(\w+) = (0x[0-9a-f]+)", command)
        if set_var:
            if not self.ignore_sets:
                self.memory[set_var.group(1)] = int(set_var.group(2), 16)
            return ""
        read = re.fullmatch(r"print/x \*\(unsigned long \*\) &(\w+)", command)
        if read:
            return f"$2 = {self.memory[read.group(1)]:#x}\n"
        raise AssertionError(f"unexpected command {command!r}")


def test_the_agent_buffer_is_larger_than_gdbservers_and_never_below_the_agents_default() -> None:
    assert agent_buffer_bytes(64 << 20) > 64 << 20
    assert agent_buffer_bytes(1 << 20) == AGENT_DEFAULT_BUFFER_BYTES


def test_the_map_command_asks_for_private_anonymous_read_write_memory() -> None:
    command = map_command(0x4400000)
    assert command.startswith("print/x (unsigned long) ")
    assert "mmap)(0, 0x4400000, 3, 34, -1, 0)" in command


@pytest.mark.parametrize(
    ("printed", "value"),
    [("$1 = 0x7f2e7fa00000\n", 0x7F2E7FA00000), ("$12 = 42\n", 42), ("No symbol.\n", None)],
)
def test_print_values_are_read_back(printed: str, value: int | None) -> None:
    assert parse_value(printed) == value


def test_enlarging_points_the_agents_bounds_at_the_mapped_buffer() -> None:
    gdb = FakeGdb()
    buffer = enlarge_agent_buffer(gdb, 64 << 20)
    assert buffer.address == 0x7F2E7FA00000
    assert buffer.size == agent_buffer_bytes(64 << 20)
    assert gdb.memory["gdb_agent_trace_buffer_lo"] == buffer.address
    assert gdb.memory["gdb_agent_trace_buffer_hi"] == buffer.address + buffer.size
    assert "mmap" in gdb.commands[0]


@pytest.mark.parametrize("mapped", ["$1 = 0xffffffffffffffff\n", "$1 = 0x0\n", "error\n", ""])
def test_a_failed_mapping_is_an_error(mapped: str) -> None:
    with pytest.raises(CollectorError, match="could not map"):
        enlarge_agent_buffer(FakeGdb(mapped), 64 << 20)


def test_bounds_that_did_not_take_are_an_error() -> None:
    with pytest.raises(CollectorError, match="did not take"):
        enlarge_agent_buffer(FakeGdb(ignore_sets=True), 64 << 20)

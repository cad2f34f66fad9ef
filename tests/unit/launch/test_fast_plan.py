"""The fast run's plan from a discovery reply and recorded disassembly: which tracepoints,
where, with which condition, and the refusals (handlers it cannot trace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtrace.errors import UsageError
from qtrace.trace.schema import Region
from qtrace.launch.fast.run import (
    device_regions,
    generated_code,
    thread_stacks,
    plan_tracepoints,
    tracepoint_commands,
    tracepoint_numbers,
)

RECORDED = Path(__file__).parent / "recorded"
HEADER_REGIONS = [
    Region("e1000-mmio", 0, 0, 0x20000, "io", "mmio",
           handlers={"read": "e1000_mmio_read", "write": "e1000_mmio_write"}),
    Region("e1000-io", 1, 0, 0x40, "io", "pio",
           handlers={"read": "e1000_io_read", "write": "e1000_io_write"}),
    Region("e1000.rom", 6, 0, 0x40000, "rom", "mmio"),
]  # fmt: skip
POINTERS = {"0x55d0": "e1000-mmio", "0x55e0": "e1000-io", "0x55f0": "e1000.rom"}
MARKER = (
    "Dump of assembler code for function debugcon_ioport_write:\n"
    "   0x0000000000001000 <+0>:\t55\tpush   %rbp\n"
    "   0x0000000000001001 <+1>:\t48 89 e5\tmov    %rsp,%rbp\n"
    "   0x0000000000001004 <+4>:\t48 83 ec 30\tsub    $0x30,%rsp\n"
    "   0x0000000000001008 <+8>:\t48 8b 05 00 10 00 00\tmov    0x1000(%rip),%rax\n"
)


def _disassemble(function: str) -> str:
    if function == "debugcon_ioport_write":
        return MARKER
    text = (RECORDED / "fast-accessors-10.2.2.txt").read_text()
    parts = text.split("Dump of assembler code for function ")[1:]
    return next(p for p in parts if p.startswith(function + ":"))


def test_the_device_regions_with_handlers_are_kept_by_pointer() -> None:
    regions = device_regions(POINTERS, HEADER_REGIONS)
    assert sorted(r.name for r in regions.values()) == ["e1000-io", "e1000-mmio"]
    assert regions[0x55E0].space == "pio" and regions[0x55D0].handlers["read"] == "e1000_mmio_read"


def test_with_attrs_callbacks_are_refused_with_the_way_out() -> None:
    handlers = {"read_with_attrs": "x_read", "write_with_attrs": "x_write"}
    attrs = [Region("x", 0, 0, 0x1000, "io", "mmio", handlers=handlers)]
    with pytest.raises(UsageError) as caught:
        device_regions({"0x10": "x"}, attrs)
    assert "read_with_attrs" in str(caught.value) and "--collector breakpoint" in str(
        caught.value.hint
    )


def test_the_plan_traces_both_accessors_and_the_marker_with_region_conditions() -> None:
    plan = plan_tracepoints(device_regions(POINTERS, HEADER_REGIONS), _disassemble,
                            "debugcon_ioport_write")  # fmt: skip
    assert [(t.role.kind, t.where) for t in plan.tracepoints] == [
        ("read", "memory_region_read_accessor+249"),
        ("write", "memory_region_write_accessor+48"),
        ("arm", "debugcon_ioport_write+8"),
    ]
    commands = tracepoint_commands(plan)
    assert "condition $bpnum *(unsigned long *)($rbp - 40) == 0x55d0 || " in commands
    assert commands.count("condition") == 2
    assert "teval $q_val += (*(unsigned long *)$rdi) - $q_val" in commands  # the write's value
    assert commands.startswith("tvariable $q_nop\n") and "collect $regs" not in commands


def test_gdbs_numbers_and_the_generated_code_mappings_are_read() -> None:
    defined = (
        "Fast tracepoint 4 at 0x55ba45f4df: file ../system/memory.c, line 447.\n"
        "Fast tracepoint 5 at 0x55ba45f67f: file ../system/memory.c, line 482.\n"
    )
    assert tracepoint_numbers(defined) == [4, 5]
    maps = (
        "55d000000000-55d000100000 r-xp 00000000 00:2a 123 /src/qemu/build/qemu-system-x86_64\n"
        "7f0000000000-7f0000014000 rwxp 00000000 00:00 0 \n"
        "7f1000000000-7f1000001000 rw-p 00000000 00:00 0 \n"
        "7f2000000000-7f2040000000 r-xs 00000000 00:01 1089   /memfd:tcg-jit (deleted)\n"
        "7f3923872000-7f3923874000 r-xp 00000000 00:00 0      [vdso]\n"
    )
    # The code buffer, not the agent's small jump pad:
    assert generated_code(maps) == (0x7F2000000000, 0x7F2040000000)
    assert generated_code(maps.splitlines()[0]) == (0, 0)  # KVM: no generated code


def test_each_thread_is_found_by_the_stack_mapping_its_pointer_is_in() -> None:
    maps = (
        "7f0000000000-7f0000800000 rw-p 00000000 00:00 0 \n"
        "7f0000800000-7f0001000000 rw-p 00000000 00:00 0 \n"
        "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]\n"
    )
    threads = [{"name": "CPU 0/TCG", "sp": 0x7F00007FF000}, {"name": "main", "sp": 0x7FFD00020000}]
    assert thread_stacks(threads, maps) == [
        (0x7F0000000000, 0x7F0000800000, "CPU 0/TCG"),
        (0x7FFD00000000, 0x7FFD00021000, "main"),
    ]

"""Fast-tracepoint locations chosen from recorded disassembly of the debug QEMU builds
(``disassemble /r`` of 7.2, 10.0.13 and 10.2.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtrace.launch.fast.locate import (
    ACCESSOR_ARGUMENTS,
    ACCESSORS,
    entry_location,
    parse_disassembly,
    spill_slots,
    value_location,
)

RECORDED = Path(__file__).parent / "recorded"


def _functions(name: str) -> dict[str, str]:
    parts = (RECORDED / name).read_text().split("Dump of assembler code for function ")[1:]
    return {part.split(":", 1)[0]: part for part in parts}


# (version, accessor op) -> the call's offset, measured in each build's disassembly.
CALL_OFFSETS = {
    ("7.2", "read"): 241, ("7.2", "write"): 48,
    ("10.0.13", "read"): 249, ("10.0.13", "write"): 48,
    ("10.2.2", "read"): 249, ("10.2.2", "write"): 48,
}  # fmt: skip


@pytest.mark.parametrize("version", ["7.2", "10.0.13", "10.2.2"])
def test_each_accessor_has_its_call_and_spills_its_arguments(version: str) -> None:
    funcs = _functions(f"fast-accessors-{version}.txt")
    for site in ACCESSORS:
        code = parse_disassembly(funcs[site.accessor])
        call = value_location(code, site.callee)
        assert call is not None and call.length == 5
        assert call.offset == CALL_OFFSETS[(version, site.op)]
        slots = spill_slots(code)
        assert all(reg in slots for reg in ACCESSOR_ARGUMENTS)
        assert (slots["rdi"], slots["rsi"], slots["rcx"]) == (-0x28, -0x30, -0x3C)


def test_handler_entries_skip_the_short_prologue_and_keep_the_arguments() -> None:
    funcs = _functions("fast-disasm-10.2.2.txt")
    read = entry_location(parse_disassembly(funcs["e1000_mmio_read"]), arguments=3)
    write = entry_location(parse_disassembly(funcs["e1000_mmio_write"]))
    assert read is not None and (read.offset, read.length) == (35, 5)
    assert write is not None and (write.offset, write.length) == (39, 5)


def test_no_location_when_an_argument_register_is_written_first() -> None:
    text = (
        "   0x0000000000001000 <+0>:\t55\tpush   %rbp\n"
        "   0x0000000000001001 <+1>:\t48 89 c7\tmov    %rax,%rdi\n"
        "   0x0000000000001004 <+4>:\t25 ff 7f 00 00\tand    $0x7fff,%eax\n"
    )
    assert entry_location(parse_disassembly(text)) is None


def test_the_write_accessor_has_no_entry_location_so_its_call_is_used() -> None:
    """Why the accessors are traced at a call: the write accessor (like some handlers)
    overwrites an argument register before any instruction of 5 bytes."""
    funcs = _functions("fast-accessors-10.2.2.txt")
    code = parse_disassembly(funcs["memory_region_write_accessor"])
    assert entry_location(code) is None
    assert value_location(code, "memory_region_shift_write_access") is not None


def test_spills_after_the_first_call_do_not_count() -> None:
    text = (
        "   0x0000000000001000 <+0>:\t48 89 7d d8\tmov    %rdi,-0x28(%rbp)\n"
        "   0x0000000000001004 <+4>:\te8 00 00 00 00\tcall   0x1009 <f>\n"
        "   0x0000000000001009 <+9>:\t48 89 75 d0\tmov    %rsi,-0x30(%rbp)\n"
    )
    assert spill_slots(parse_disassembly(text)) == {"rdi": -0x28}

"""Fast-tracepoint locations chosen from recorded disassembly of the debug QEMU 10.2.2."""

from __future__ import annotations

from pathlib import Path

from qtrace.launch.fast.locate import (
    VALUE_CALLS,
    entry_location,
    parse_disassembly,
    value_location,
)

RECORDED = Path(__file__).parent / "recorded" / "fast-disasm-10.2.2.txt"


def _functions() -> dict[str, str]:
    parts = RECORDED.read_text().split("Dump of assembler code for function ")[1:]
    return {part.split(":", 1)[0]: part for part in parts}


def test_handler_entries_skip_the_short_prologue_and_keep_the_arguments() -> None:
    funcs = _functions()
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


def test_the_read_value_is_taken_at_the_accessors_shift_call() -> None:
    call = VALUE_CALLS[0]
    insn = value_location(parse_disassembly(_functions()[call.accessor]), call.callee)
    assert insn is not None and insn.offset == 249 and call.value_register == "rcx"

"""Choosing fast-tracepoint locations from a function's disassembly (per build).

Why: the agent's jump into its pad overwrites 5 bytes, so it needs an instruction of at
least 5 bytes; a function's first instructions are shorter (``push %rbp``, ``mov %rsp,%rbp``).
A handler's arguments are wanted in their registers (rdi, rsi, rdx, rcx), so the location
is the first long-enough instruction before anything writes one of them. For a read's value
the location is a call whose argument register carries the value (data: :data:`VALUE_CALLS`).
The input is gdb's ``disassemble /r`` text, so this is pure and tested from recorded output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ARG_REGISTERS",
    "Instruction",
    "VALUE_CALLS",
    "ValueCall",
    "entry_location",
    "parse_disassembly",
    "value_location",
]

JUMP_BYTES = 5
ARG_REGISTERS = ("rdi", "rsi", "rdx", "rcx")
_ALIASES = {
    "rdi": ("rdi", "edi", "di", "dil"),
    "rsi": ("rsi", "esi", "si", "sil"),
    "rdx": ("rdx", "edx", "dx", "dl", "dh"),
    "rcx": ("rcx", "ecx", "cx", "cl", "ch"),
}
_LINE = re.compile(
    r"^\s*(?:=>\s*)?0x(?P<addr>[0-9a-f]+)\s+<\+(?P<off>\d+)>:\s+(?P<bytes>(?:[0-9a-f]{2}\s)+)\s*"
    r"(?P<text>.*)$"
)


@dataclass(frozen=True)
class Instruction:
    """One instruction: where it is, how long, its text (AT&T)."""

    address: int
    offset: int
    length: int
    text: str

    def writes(self, register: str) -> bool:
        """Does it write ``register`` (its destination, the last operand, or a call)?"""
        if self.text.startswith("call"):
            return True
        operands = self.text.split(None, 1)[1] if " " in self.text else ""
        dest = operands.rsplit(",", 1)[-1].strip()
        return dest.lstrip("%") in _ALIASES[register]


@dataclass(frozen=True)
class ValueCall:
    """A call inside a generic accessor that passes a handler's returned value on."""

    accessor: str
    callee: str
    value_register: str


# memory_region_read_accessor (system/memory.c; softmmu/memory.c in 7.2) hands the value
# the read callback returned to memory_region_shift_read_access(value, shift, mask, tmp).
VALUE_CALLS = (
    ValueCall("memory_region_read_accessor", "memory_region_shift_read_access", "rcx"),
)


def parse_disassembly(text: str) -> list[Instruction]:
    """Instructions of gdb's ``disassemble /r FUNC`` output."""
    out: list[Instruction] = []
    for line in text.splitlines():
        match = _LINE.match(line.replace("\t", " "))
        if match:
            raw = match.group("bytes").split()
            out.append(
                Instruction(
                    int(match.group("addr"), 16),
                    int(match.group("off")),
                    len(raw),
                    match.group("text").strip(),
                )
            )
    return out


def entry_location(instructions: list[Instruction], arguments: int = 4) -> Instruction | None:
    """The first instruction of at least 5 bytes with the first ``arguments`` argument
    registers still as the caller passed them; ``None`` when there is none."""
    wanted = ARG_REGISTERS[:arguments]
    for insn in instructions:
        if insn.offset > 0 and insn.length >= JUMP_BYTES:
            return insn
        if insn.text.startswith(("j", "ret")) or any(insn.writes(r) for r in wanted):
            return None
    return None


def value_location(instructions: list[Instruction], callee: str) -> Instruction | None:
    """The call of ``callee`` (a 5-byte direct call) inside the accessor."""
    for insn in instructions:
        if insn.text.startswith("call") and f"<{callee}>" in insn.text:
            return insn if insn.length >= JUMP_BYTES else None
    return None

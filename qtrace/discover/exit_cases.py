"""Where ``kvm_cpu_exec`` handles each KVM exit, found in the source of the QEMU at hand.

The ``case KVM_EXIT_...:`` labels of the ``switch (run->exit_reason)`` move between QEMU
versions (kvm-all.c:2958 in 7.2, :3248 in 10.2.2 for MMIO), so they are located by reading
the source, never hard-coded. Pure text processing: testable on any file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ExitCase", "find_function_body", "locate_exit_cases", "KVM_ALL_PATH", "REQUIRED_EXITS"]

KVM_ALL_PATH = "accel/kvm/kvm-all.c"
REQUIRED_EXITS = (
    "KVM_EXIT_IO",
    "KVM_EXIT_MMIO",
    "KVM_EXIT_SHUTDOWN",
    "KVM_EXIT_SYSTEM_EVENT",
    "KVM_EXIT_INTERNAL_ERROR",
)

_CASE = re.compile(r"^\s*case\s+(KVM_EXIT_\w+)\s*:")
_SWITCH = re.compile(r"\bswitch\s*\(\s*run->exit_reason\s*\)")


@dataclass(frozen=True)
class ExitCase:
    """The case labels that share one body, and the first line of that body (1-based)."""

    labels: tuple[str, ...]
    label_line: int
    body_line: int


def find_function_body(lines: list[str], name: str) -> tuple[int, int]:
    """0-based (first, last) line indexes of a C function definition's body."""
    signature = re.compile(r"^[A-Za-z_][\w\s\*]*\b" + re.escape(name) + r"\s*\(")
    for index, line in enumerate(lines):
        if signature.match(line) and not line.rstrip().endswith(";"):
            depth = 0
            opened = False
            for end in range(index, len(lines)):
                text = _strip_comments_and_strings(lines[end])
                depth += text.count("{") - text.count("}")
                opened = opened or "{" in text
                if opened and depth == 0:
                    return index, end
            break
    raise ValueError(f"no definition of {name}() found")


def _strip_comments_and_strings(line: str) -> str:
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])*'", "''", line)
    line = re.sub(r"/\*.*?\*/", "", line)
    return line.split("//", 1)[0]


def _is_code(line: str) -> bool:
    text = _strip_comments_and_strings(line).strip()
    return (
        bool(text)
        and not _CASE.match(line)
        and text not in ("{", "}")
        and not text.startswith(("/*", "*", "#"))
    )


def locate_exit_cases(source: str, function: str = "kvm_cpu_exec") -> list[ExitCase]:
    """Every group of ``case KVM_EXIT_*:`` labels in the exit-reason switch of ``function``."""
    lines = source.splitlines()
    first, last = find_function_body(lines, function)
    switch_at = next((i for i in range(first, last + 1) if _SWITCH.search(lines[i])), None)
    if switch_at is None:
        raise ValueError(f"{function}() has no switch (run->exit_reason)")
    cases: list[ExitCase] = []
    index = switch_at + 1
    while index <= last:
        match = _CASE.match(lines[index])
        if not match:
            index += 1
            continue
        label_line = index
        labels = [match.group(1)]
        index += 1
        while index <= last and (_CASE.match(lines[index]) or not _is_code(lines[index])):
            more = _CASE.match(lines[index])
            if more:
                labels.append(more.group(1))
            index += 1
        cases.append(ExitCase(tuple(labels), label_line + 1, index + 1))
    return cases

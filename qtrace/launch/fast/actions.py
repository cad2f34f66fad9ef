"""What the agent does at each hit: a few values and the chain of return addresses, in trace
state variables, collected as 13-byte ``V`` blocks instead of the 2.4 KB register block.

Why: any register a ``collect`` names (even inside a memory expression: ``$rbp - 40``)
makes the agent store its whole register block, about 2.4 KB a hit, and a raw stack block
costs 3.5 KB more; ``teval`` reads registers and memory without storing them. So each hit
runs ``teval``s that set trace state variables and ``collect``s only those: about 60 bytes
of values and 13 bytes per return address (measured: 6,031 -> about 700 bytes a hit on the
e1000 probe).

The chain is walked inside the agent, which reads memory without fault protection, so each
step is guarded: a frame pointer is followed only out of a frame whose return address lies
in QEMU's own code (the debug build keeps frame pointers) or, through TCG's frame rule, in
its generated code (no frame pointer: the caller's frame is :data:`TCG_FRAME` bytes up);
a return into anything else (libc's ``start_thread``, glib) ends it. Two quirks of gdb 13.1
and its agent, measured: ``teval $v = x`` aborts gdb ("expression has min height < 0"),
so a variable is set as ``$v += x - $v``; and the first ``teval`` of a tracepoint has no
effect, so each list starts with one that does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CodeRanges", "STACK_LEVELS", "TCG_FRAME", "hit_actions", "variables"]

STACK_LEVELS = 24
"""Return addresses followed per hit: the deepest stacks seen (TCG, 20 frames) and room."""
TCG_FRAME = 0x4C0
"""The frame of TCG's generated code (measured on 10.2.2): its caller's return address is at
``frame + 16 + TCG_FRAME - 8`` and its saved frame pointer at ``frame + 16 + TCG_FRAME - 16``,
``frame`` being the frame pointer of the helper it called."""
VALUES = ("mr", "off", "size", "val", "shift", "mask", "sp")
"""The values a hit records besides its chain (a read leaves ``shift``/``mask`` unset)."""
_PREFIX = "q_"


@dataclass(frozen=True)
class CodeRanges:
    """Where QEMU's own code and TCG's generated code are (``(0, 0)``: none, KVM)."""

    text: tuple[int, int]
    generated: tuple[int, int] = (0, 0)


def variables(levels: int = STACK_LEVELS) -> list[str]:
    """Every trace state variable the actions use, without ``$``, in definition order."""
    chain = [f"{c}{k}" for k in range(1, levels + 1) for c in ("r", "g")]
    frames = [f"f{k}" for k in range(levels + 1)]
    return [_PREFIX + n for n in ("nop", *VALUES, *chain, *frames)]


def _set(name: str, expr: str) -> str:
    var = f"${_PREFIX}{name}"
    return f"teval {var} += ({expr}) - {var}"


def hit_actions(
    kind: str,
    slots: dict[str, int],
    ranges: CodeRanges,
    value_register: str = "",
    shift_register: str = "",
    mask_register: str = "",
    levels: int = STACK_LEVELS,
) -> list[str]:
    """The action lines of one tracepoint: ``read``/``write`` at an accessor (its spill
    ``slots``: register -> offset from rbp), or ``arm`` (the start marker: the hit alone)."""
    lines = [_set("nop", "0")]
    if kind == "arm":
        return [*lines, _set("sp", "$rsp"), f"collect ${_PREFIX}sp"]

    def slot(register: str, width: str) -> str:
        return f"*(unsigned {width} *)($rbp + {slots[register]})"

    lines += [
        _set("mr", slot("rdi", "long")),
        _set("off", slot("rsi", "long")),
        _set("size", slot("rcx", "int")),
        _set("sp", "$rsp"),
        _set("f0", "$rbp"),
    ]
    collected = ["mr", "off", "size", "sp", "val"]
    if kind == "read":
        lines.append(_set("val", f"${value_register}"))
    else:
        lines += [
            _set("val", f"*(unsigned long *)${value_register}"),
            _set("shift", f"${shift_register}"),
            _set("mask", f"${mask_register}"),
        ]
        collected += ["shift", "mask"]
    lines += _chain(ranges, levels)
    collected += [f"{c}{k}" for k in range(1, levels + 1) for c in ("r", "g")]
    lines.append("collect " + ", ".join(f"${_PREFIX}{n}" for n in collected))
    return lines


def _chain(ranges: CodeRanges, levels: int) -> list[str]:
    def inside(var: str, bounds: tuple[int, int]) -> str:
        lo, hi = bounds
        return f"({var} >= {lo:#x} && {var} < {hi:#x})"

    lines: list[str] = []
    for k in range(1, levels + 1):
        frame, ret = f"${_PREFIX}f{k - 1}", f"${_PREFIX}r{k}"
        in_text, in_generated = inside(ret, ranges.text), inside(ret, ranges.generated)
        lines += [
            _set(f"r{k}", f"{frame} != 0 ? *(unsigned long *)({frame} + 8) : 0"),
            _set(f"g{k}", f"{in_generated} ? *(unsigned long *)({frame} + {TCG_FRAME + 8:#x}) : 0"),
            _set(
                f"f{k}",
                f"{in_text} ? *(unsigned long *)({frame}) : ({in_generated} ? "
                f"*(unsigned long *)({frame} + {TCG_FRAME:#x}) : 0)",
            ),
        ]
    return lines

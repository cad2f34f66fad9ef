"""Brendan Gregg's folded stacks: ``root;...;leaf count``, one line per distinct stack.

Each access is one sample of its stack (outermost frame first, frames as
``function (file:line)``); a line's count is how many accesses had that stack, so
``flamegraph.pl`` or speedscope's import draws where device emulation spends its calls.
Lines are sorted, so an export is the same bytes for the same trace.
"""

from __future__ import annotations

from collections import Counter

from qtrace.export.stacks import stack_labels
from qtrace.trace import Trace

__all__ = ["folded_counts", "render"]


def folded_counts(trace: Trace) -> Counter[tuple[str, ...]]:
    """How many accesses had each stack (frames outermost first)."""
    return Counter(stack_labels(trace, access.stack) for access in trace.accesses)


def render(trace: Trace) -> str:
    """The folded lines of ``trace``'s accesses (empty text for a trace without any)."""
    lines = sorted(f"{';'.join(stack)} {count}" for stack, count in folded_counts(trace).items())
    return "".join(line + "\n" for line in lines)

"""Stack frames as the exports name them: ``function (file:line)``, outermost first."""

from __future__ import annotations

from qtrace.trace import Frame, Trace

__all__ = ["NO_STACK", "frame_label", "stack_labels"]

NO_STACK = "(no stack recorded)"
"""The one frame of an access whose record names no stack (a trace cut short, a synthetic one)."""


def frame_label(frame: Frame) -> str:
    """``e1000_mmio_read (hw/net/e1000.c:1291)``; without a line ``func (file)``; without a
    file the function alone (``??`` for TCG's generated code).

    Characters the folded format reserves (``;`` separates frames, a newline ends a line)
    never occur in C symbols or paths; they are replaced all the same, so a label is always
    one folded frame.
    """
    if frame.file and frame.line is not None:
        label = f"{frame.func} ({frame.file}:{frame.line})"
    elif frame.file:
        label = f"{frame.func} ({frame.file})"
    else:
        label = frame.func
    return label.replace(";", ":").replace("\n", " ")


def stack_labels(trace: Trace, stack_id: str | None) -> tuple[str, ...]:
    """The frames of stack ``stack_id``, outermost (the thread's start) first; a stack the
    trace does not hold is :data:`NO_STACK`."""
    stack = trace.stacks.get(stack_id) if stack_id is not None else None
    if stack is None or not stack.frames:
        return (NO_STACK,)
    return tuple(frame_label(frame) for frame in reversed(stack.frames))

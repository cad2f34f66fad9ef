"""Every frame of a trace's stacks annotated, and the ones the layer rules miss.

Shared by the tests that hold the layer rules to committed and fresh captures: a frame
with no layer or no explanation is a gap in qtrace/annotate's rules.
"""

from __future__ import annotations

from qtrace.annotate import UNKNOWN_LAYER, annotate_stack
from qtrace.annotate.layers import AnnotatedFrame
from qtrace.trace import Trace


COROUTINE_BOTTOM = "coroutine_trampoline"


def _above_coroutine_bottom(frames: tuple[AnnotatedFrame, ...]) -> tuple[AnnotatedFrame, ...]:
    """A coroutine's stack ends in glibc's makecontext entry and what lies beyond it on the
    coroutine's own stack: frames gdb cannot name, below coroutine_trampoline (left out)."""
    funcs = [f.func for f in frames]
    if COROUTINE_BOTTOM not in funcs:
        return frames
    return frames[: funcs.index(COROUTINE_BOTTOM) + 1]


def annotated_frames(trace: Trace) -> list[AnnotatedFrame]:
    """The frames of every distinct stack, annotated for the trace's QEMU version and accel
    (a coroutine's stack down to coroutine_trampoline)."""
    return [
        frame
        for stack in trace.stacks.values()
        for frame in _above_coroutine_bottom(
            annotate_stack(
                stack, qemu_version=trace.header.qemu_version, accel=trace.header.accel
            ).frames
        )
    ]


def unexplained(frames: list[AnnotatedFrame]) -> list[tuple[str, str]]:
    """(function, location) of each frame without a layer or an explanation, sorted, once."""
    return sorted(
        {(f.func, f.location) for f in frames if f.layer.id == UNKNOWN_LAYER or not f.explain}
    )

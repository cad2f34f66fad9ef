"""speedscope's JSON file format (https://www.speedscope.app/file-format-schema.json).

One ``sampled`` profile of the capture's accesses in ``seq`` order: each access is a sample
of its stack (frame indices outermost first; frames named ``function (file:line)``, with
``file`` and ``line`` also given), and consecutive accesses with the same stack are one
sample weighted by their number (unit ``none``). speedscope's time-order view is then the
capture's sequence of accesses, its left-heavy and sandwich views the totals per stack and
per function.
"""

from __future__ import annotations

import json

from qtrace import __version__
from qtrace.export.stacks import NO_STACK, frame_label
from qtrace.trace import Frame, Trace

__all__ = ["SCHEMA_URL", "speedscope_file", "render"]

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"

JsonObject = dict[str, object]


def speedscope_file(trace: Trace) -> JsonObject:
    """``trace``'s accesses as a speedscope file object."""
    frames: list[JsonObject] = []
    index_of: dict[str, int] = {}

    def frame_index(label: str, frame: Frame | None) -> int:
        if label not in index_of:
            index_of[label] = len(frames)
            entry: JsonObject = {"name": label}
            if frame is not None and frame.file:
                entry["file"] = frame.file
                if frame.line is not None:
                    entry["line"] = frame.line
            frames.append(entry)
        return index_of[label]

    def sample_of(stack_id: str | None) -> list[int]:
        stack = trace.stacks.get(stack_id) if stack_id is not None else None
        if stack is None or not stack.frames:
            return [frame_index(NO_STACK, None)]
        return [frame_index(frame_label(f), f) for f in reversed(stack.frames)]

    samples: list[list[int]] = []
    weights: list[int] = []
    previous: str | None | object = object()
    for access in trace.accesses:
        if access.stack == previous and samples:
            weights[-1] += 1
            continue
        previous = access.stack
        samples.append(sample_of(access.stack))
        weights.append(1)
    header = trace.header
    name = f"{header.device} accesses (QEMU {header.qemu_version}, {header.accel}, {header.guest})"
    return {
        "$schema": SCHEMA_URL,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
        "name": name,
        "activeProfileIndex": 0,
        "exporter": f"qtrace {__version__}",
    }


def render(trace: Trace) -> str:
    """The JSON text of :func:`speedscope_file` (one line, newline-terminated)."""
    return json.dumps(speedscope_file(trace), separators=(",", ":")) + "\n"

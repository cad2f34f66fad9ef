"""Reading build progress out of the log stream: stage markers and ninja's step counter.

The scripts in ``docker/`` print ``==> stage: NAME``; ninja prints ``[812/1802] ...``.
Pure functions, so the CLI's progress bar is tested without building anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["BuildProgress", "parse_progress_line", "STAGES"]

STAGES = ("base image", "packages", "source", "configure", "compile", "finish")

_STAGE = re.compile(r"^==> stage: (?P<stage>[\w -]+?)\s*$")
_NINJA = re.compile(r"^\[(?P<done>\d+)/(?P<total>\d+)\]\s")


@dataclass(frozen=True)
class BuildProgress:
    """One thing the log told us: a new stage, or ninja's step counter."""

    stage: str | None = None
    step: int | None = None
    total: int | None = None


def parse_progress_line(line: str) -> BuildProgress | None:
    """Progress carried by one log line, or ``None`` for ordinary output."""
    line = line.rstrip("\r\n")
    match = _STAGE.match(line)
    if match:
        return BuildProgress(stage=match.group("stage"))
    match = _NINJA.match(line)
    if match:
        return BuildProgress(step=int(match.group("done")), total=int(match.group("total")))
    return None

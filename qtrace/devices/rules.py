"""Frame rules: which layer of QEMU a stack frame belongs to, and what it does there.

One rule format serves QEMU's shared layers (``qtrace/annotate/rules/layers.toml``) and each
device pack's own frames (the ``[[rule]]`` tables of its ``pack.toml``), so a pack's rule is
written exactly like a core one. Applying the rules is the annotate stage's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from qtrace.errors import ReportError
from qtrace.trace import Frame

__all__ = ["FrameRule", "parse_frame_rules"]


@dataclass(frozen=True)
class FrameRule:
    """Globs on function name and file, an optional accelerator, and what they mean."""

    layer: str
    explain: str
    funcs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    accel: str | None = None

    def matches(self, frame: Frame, accel: str | None) -> bool:
        """Whether every condition of this rule holds for ``frame``."""
        if self.accel is not None and self.accel != accel:
            return False
        if self.funcs and not any(fnmatchcase(frame.func, g) for g in self.funcs):
            return False
        if self.files:
            if frame.file is None:
                return False
            if not any(fnmatchcase(frame.file, g) for g in self.files):
                return False
        return True


def _globs(value: object, what: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ReportError(f"{where}: rule field {what!r} must be a string or a list of strings")


def parse_frame_rules(raw: Sequence[dict[str, Any]], where: str) -> list[FrameRule]:
    """Rules from the ``[[rule]]`` tables of a data file (``where`` names it in errors).

    Raises:
        ReportError: a rule lacks ``layer`` or ``explain``, or has neither ``func`` nor ``file``.
    """
    rules = []
    for entry in raw:
        try:
            rule = FrameRule(
                layer=str(entry["layer"]),
                explain=str(entry["explain"]),
                funcs=_globs(entry.get("func"), "func", where),
                files=_globs(entry.get("file"), "file", where),
                accel=entry.get("accel"),
            )
        except KeyError as exc:
            raise ReportError(f"{where}: a rule lacks {exc}") from exc
        if not rule.funcs and not rule.files:
            raise ReportError(f"{where}: rule for {rule.layer!r} has neither func nor file")
        rules.append(rule)
    return rules

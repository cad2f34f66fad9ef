"""Pure classification of gdb/MI records (as parsed by pygdbmi), tested from recorded lines.

pygdbmi turns each MI line into a dict; these helpers answer the few questions the
controller asks of them, so the controller holds no string matching of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "STOP_WITHOUT_REASON",
    "Stop",
    "is_result_for",
    "result_error",
    "as_stop",
    "replies_in",
    "REPLY_PREFIX",
]

REPLY_PREFIX = "qtrace-reply: "
MiRecord = dict[str, Any]


@dataclass(frozen=True)
class Stop:
    """A ``*stopped`` record: why the inferior stopped, and its exit code if it exited."""

    reason: str
    exit_code: int | None = None
    signal: str | None = None


def is_result_for(record: MiRecord, token: int) -> bool:
    """Is this the result record that answers the command sent with ``token``?"""
    return record.get("type") == "result" and record.get("token") == token


def result_error(record: MiRecord) -> str | None:
    """The error message of an ``^error`` result, else ``None``."""
    if record.get("type") == "result" and record.get("message") == "error":
        payload = record.get("payload") or {}
        return str(payload.get("msg", "unknown gdb error"))
    return None


STOP_WITHOUT_REASON = "no-reason"
"""The reason of a bare ``*stopped`` (no payload at all). gdb sends one when it has lost its
inferior: QEMU's threads exited, ``waitpid`` found no child left ("No unwaited-for children
left"), and QEMU's exit status is gone with it. Seen about once in twenty KVM probe captures,
right after the guest wrote to isa-debug-exit."""


def as_stop(record: MiRecord) -> Stop | None:
    """The ``*stopped`` notification as a :class:`Stop`, or ``None`` for other records."""
    if record.get("type") != "notify" or record.get("message") != "stopped":
        return None
    payload = record.get("payload") or {}
    reason = str(payload.get("reason", STOP_WITHOUT_REASON if not payload else "unknown"))
    code = payload.get("exit-code")
    exit_code = (
        int(code, 8) if isinstance(code, str) else (0 if reason == "exited-normally" else None)
    )
    signal = payload.get("signal-name")
    return Stop(reason=reason, exit_code=exit_code, signal=str(signal) if signal else None)


def replies_in(records: list[MiRecord]) -> list[dict[str, Any]]:
    """The JSON replies the collector printed (``qtrace-reply: {...}`` console lines)."""
    replies = []
    for record in records:
        if record.get("type") == "console" and isinstance(record.get("payload"), str):
            text = record["payload"].strip()
            if text.startswith(REPLY_PREFIX):
                replies.append(json.loads(text[len(REPLY_PREFIX) :]))
    return replies

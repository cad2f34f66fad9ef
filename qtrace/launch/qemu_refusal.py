"""Why QEMU refused to start, in its own words: the error lines of ``qemu.log`` and a hint.

When QEMU rejects its command line (a device without the backend it needs, a property it
does not accept, a device the machine cannot hold) it prints ``error_report`` lines,
``qemu-system-x86_64: -device nvme,...: serial property not set``, and exits before the
guest runs. A capture that then only reported a symptom ("no start line" on the serial
port) would hide the cause; :func:`find_refusal` picks QEMU's lines out of the log (purely,
tested from recorded text) and adds what to do about them, from the table below and from
the devices ``qtrace/devices/start.toml`` knows cannot start here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qtrace.devices import unstartable_reason

__all__ = ["Refusal", "find_refusal", "refusal_message"]

MAX_LINES = 4
"""At most this many of QEMU's error lines are quoted (a vhost-user device prints a chain)."""

# What error_report() prints: "<program>: [<location>: ]<message>", the program being
# QEMU's binary name; before QEMU knows it (firmware loading) just "qemu". warn_report and
# info_report print "warning: " / "info: " before the message (after the location): those
# are not refusals.
_ERROR_LINE = re.compile(r"^(?:qemu-system-[\w-]+|qemu): (?P<text>.+)$")
_NOT_ERROR = re.compile(r"(?:^|: )(?:warning|info): ")

_START_RULES = (
    "QEMU needs a property or a backend qtrace did not give the device: set it in the "
    "device's pack (qtrace/devices/<device>/pack.toml, [start] properties or args), or, for "
    "every device with such a property, add a rule to qtrace/devices/start.toml"
)

# (what QEMU said, what to do), first match wins.
_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"not a valid device model name|Device '[^']*' not found"),
        "This QEMU has no such device: `qtrace devices` lists the ones it has.",
    ),
    (
        re.compile(r"could not load PC BIOS|failed to find romfile|Could not open option rom"),
        "The image lacks the firmware QEMU loads: rebuild it with `qtrace build --force`.",
    ),
    (
        re.compile(r"Assertion .* failed|assertion failed", re.IGNORECASE),
        "QEMU aborted on an assertion while creating the device: a QEMU bug, or a property "
        "value it does not check before using it (see the -device line in manifest.json).",
    ),
    (
        re.compile(r"Could not open '/dev/|No such file or directory|Permission denied"),
        "The device needs something of the host (a device node, a kernel module) the "
        "capture container does not have.",
    ),
    (
        re.compile(
            r"cannot reside on|can only be|only be attached|must have address|must be "
            r"(?:plugged|attached)|is not a PCI Express|requires? a PCI Express|Bus '[^']*' "
            r"(?:not found|is full|does not support)|No '[^']*' bus found"
        ),
        "The device cannot sit where the capture put it: try the other machine "
        "(--machine q35 or pc) or topology (--topology root-port on q35, or root-bus).",
    ),
    (
        re.compile(
            r"propert(?:y|ies)\b.*\b(?:not set|must be set|is required|required)|must specify|"
            r"is mandatory|missing|not specified|must be (?:set|given|specified)|"
            r"expects a valid|couldn't find|requires? an? \w+ (?:attribute|property)",
            re.IGNORECASE,
        ),
        _START_RULES + ".",
    ),
)


@dataclass(frozen=True)
class Refusal:
    """QEMU's reasons for not starting, and what to do.

    Attributes:
        lines: QEMU's own error lines, without the program name (``-device nvme,...:
            serial property not set``), in order, repeats dropped.
        hint: what to try, for the user.
        known: ``start.toml``'s reason when it lists the device as unstartable here.
    """

    lines: tuple[str, ...]
    hint: str
    known: str | None = None

    @property
    def message(self) -> str:
        """One line for a status or an exception: ``QEMU refused to start: <its words>``."""
        return "QEMU refused to start: " + " | ".join(self.lines)


def _error_lines(qemu_log_text: str) -> list[str]:
    lines: list[str] = []
    for raw in qemu_log_text.splitlines():
        match = _ERROR_LINE.match(raw.strip())
        if (
            match
            and not _NOT_ERROR.search(match.group("text"))
            and match.group("text") not in lines
        ):
            lines.append(match.group("text"))
    return lines[:MAX_LINES]


def find_refusal(
    qemu_log_text: str,
    device: str | None = None,
    machine: str | None = None,
    topology: str = "root-bus",
) -> Refusal | None:
    """QEMU's error lines in ``qemu_log_text`` and a hint, or ``None`` when it has none.

    Call it for a QEMU that exited before its guest ran: its log then holds only what QEMU
    said while it read the command line and created the devices.

    Args:
        qemu_log_text: ``qemu.log`` (QEMU's stdout and stderr).
        device: the captured device; with ``machine``, ``start.toml``'s list of devices
            that cannot start here gives the hint when it names the device.
        machine: the machine type (``pc``, ``q35``).
        topology: where the device sat (``root-bus``, ``root-port``).
    """
    lines = _error_lines(qemu_log_text)
    if not lines:
        return None
    known = unstartable_reason(device, machine or "", topology) if device is not None else None
    if known is not None:
        hint = f"{device} cannot start in a capture: it {known}."
    else:
        text = "\n".join(lines)
        hint = next(
            (hint for pattern, hint in _HINTS if pattern.search(text)),
            "See qemu.log in the run directory, and the QEMU command line in manifest.json.",
        )
    return Refusal(tuple(lines), hint, known)


def refusal_message(
    qemu_log_text: str,
    device: str | None = None,
    machine: str | None = None,
    topology: str = "root-bus",
) -> str | None:
    """:func:`find_refusal` as one text, ``QEMU refused to start: <its words>. <hint>``, for
    a caller that has one string to fill (a status reason); ``None`` without error lines."""
    refusal = find_refusal(qemu_log_text, device, machine, topology)
    return None if refusal is None else f"{refusal.message}. {refusal.hint}"

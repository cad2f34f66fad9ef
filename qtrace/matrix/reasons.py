"""The named reason for a matrix run that did not end ok: a short, specific phrase.

A capture that fails says why in its own words (the end record's or the error's reason, a
hint, QEMU's output in ``qemu.log``); the matrix wants one short phrase per run and a
category to group runs by. QEMU's own message comes first: when QEMU refused to create the
device (``qemu-system-x86_64: -device nvme,...: serial property not set``) that message *is*
the reason, whatever symptom the capture saw after it (no serial output). Messages that mean
the device needs something no container has, host hardware (``vfio-pci``) or a backend
process (``vhost-user-*``), are named so from the table below; and a device the devices'
registry lists as unstartable in a capture (``qtrace.devices.start``'s ``[[unstartable]]``)
is named by the registry's own words, which come first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Category", "NamedReason", "qemu_message", "short_reason"]

MAX_PHRASE = 160
"""Longer phrases are cut (with an ellipsis); the full text stays in the result's detail."""


class Category(StrEnum):
    """What kind of reason: the reasons section of the table groups runs by it."""

    HOST_HARDWARE = "needs host hardware"
    BACKEND = "needs an external backend"
    WRONG_PLACE = "not on this machine or topology"
    UNSTARTABLE = "cannot start in a capture"
    QEMU_REFUSES = "QEMU refuses the device"
    CRASH = "QEMU crashed"
    KVM_ERROR = "KVM internal error"
    TIMEOUT = "timeout"
    GUEST_HANG = "guest hang"
    GUEST = "the probe guest failed"
    DISCOVERY = "discovery failed"
    USAGE = "qtrace refused the request"
    ENVIRONMENT = "environment"
    QTRACE_BROKEN = "qtrace does not start"
    OTHER = "other"


@dataclass(frozen=True)
class NamedReason:
    phrase: str
    category: Category


# QEMU's message about the device: `qemu-system-x86_64: -device SPEC: MESSAGE`, or
# `qemu-system-x86_64: MESSAGE` (warnings are skipped).
_QEMU_LINE = re.compile(
    r"(?:qemu-system-[\w-]+: (?:-device \S*?: )?|-device \S*?: )(?P<msg>(?!warning:).+)"
)
_ASSERTION = re.compile(
    r"(?P<where>[\w./-]+:\d+): (?P<func>\w+): Assertion [`'](?P<expr>.+?)' failed"
)
_GLIB_ASSERTION = re.compile(r"ERROR:(?P<where>[\w./-]+:\d+):(?P<func>\w+): (?P<what>.+)")

# The probe's generic DONE fail codes (qtrace/guests/probe/*.c) in words; the device
# sequences' own codes (nvme-identify-status, ...) are specific enough as they are.
_PROBE_CODES = {
    "target-not-type0-or-1": "a CardBus (type 2) header; the probe drives type 0 and 1 functions",
    "target-absent": "nothing answered at the device's address",
    "target-not-found": "the device was not found on the bus",
    "ecam-no-response": "ECAM configuration space did not answer",
}

# qtrace's own process died on its imports: the tree is broken (mid-edit), not the device.
_BROKEN = re.compile(
    r"\b(?:ImportError|ModuleNotFoundError|SyntaxError|IndentationError): .*", re.DOTALL
)

# QEMU's refusal -> what the device lacks. Ordered; the first match names the category.
_NEEDS: tuple[tuple[re.Pattern[str], Category, str], ...] = (
    (re.compile(r"No provided host device", re.I), Category.HOST_HARDWARE, "a host PCI device"),
    (re.compile(r"vhostdev", re.I), Category.HOST_HARDWARE, "a host vDPA device"),
    (re.compile(r"evdev", re.I), Category.HOST_HARDWARE, "a host input device (evdev)"),
    (re.compile(r"missing wwpn", re.I), Category.HOST_HARDWARE, "a host vhost-scsi target"),
    (re.compile(r"/dev/vhost|/dev/vfio", re.I), Category.HOST_HARDWARE, "a host vhost device"),
    (re.compile(r"requires a Xen guest", re.I), Category.HOST_HARDWARE, "the Xen hypervisor"),
    (
        re.compile(
            r"chardev is mandatory|missing chardev|vhost_backend_init failed"
            r"|specify a 'chardev'|No socket specified|fd parameter not specified",
            re.I,
        ),
        Category.BACKEND,
        "a backend process",
    ),
)


def qemu_message(text: str) -> str | None:
    """QEMU's first error message in ``text`` (qemu.log, or a reason quoting it), without
    the program name and the ``-device`` option it repeats; ``None`` if there is none."""
    for line in text.splitlines():
        for part in line.split(" | "):
            match = _QEMU_LINE.search(part.strip())
            if match:
                return " ".join(match["msg"].split())
    return None


def _cut(text: str, limit: int = MAX_PHRASE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _first_sentence(text: str) -> str:
    match = re.match(r"(.+?[.;])(\s|$)", text.strip())
    return (match[1] if match else text).strip().rstrip(".;")


def _crash(*texts: str) -> NamedReason | None:
    """A crash named by its assertion (QEMU's own words) or else by its signal."""
    for text in texts:
        if match := _ASSERTION.search(text):
            return NamedReason(
                _cut(f"assertion failed in {match['func']} ({match['where']}): {match['expr']}"),
                Category.CRASH,
            )
        if match := _GLIB_ASSERTION.search(text):
            return NamedReason(
                _cut(f"{match['what']} in {match['func']} ({match['where']})"), Category.CRASH
            )
    for text in texts:
        if match := re.search(r"\b(SIG(?:SEGV|ABRT|BUS|FPE|ILL))\b", text):
            return NamedReason(f"QEMU crashed ({match[1]})", Category.CRASH)
        if "died without exiting" in text:
            return NamedReason("QEMU died without exiting (killed by a signal)", Category.CRASH)
    return None


def _refusal(message: str) -> NamedReason:
    for pattern, category, what in _NEEDS:
        if pattern.search(message):
            return NamedReason(_cut(f"{category.value} ({what}): {message}"), category)
    return NamedReason(_cut(f"QEMU refuses it: {message}"), Category.QEMU_REFUSES)


# The devices' registry's words for a device no capture can start -> its category.
_UNSTARTABLE: tuple[tuple[re.Pattern[str], Category], ...] = (
    (re.compile(r"\bhost\b|/dev/|\bXen\b", re.I), Category.HOST_HARDWARE),
    (re.compile(r"process|server|socket", re.I), Category.BACKEND),
    (re.compile(r"machine|topology|root bus|root complex", re.I), Category.WRONG_PLACE),
)


def _unstartable(why: str) -> NamedReason:
    for pattern, category in _UNSTARTABLE:
        if pattern.search(why):
            return NamedReason(_cut(why), category)
    return NamedReason(_cut(why), Category.UNSTARTABLE)


def short_reason(
    status: str,
    reason: str | None,
    *,
    hint: str | None = None,
    qemu_log: str = "",
    accesses: int = 0,
    exit_code: int | None = None,
    unstartable: str | None = None,
) -> NamedReason:
    """The named reason of a run that did not end ok.

    Args:
        status: the run's status (``error``, ``timeout``, ``guest-hang``, ...).
        reason: the capture's reason (summary or end record), or the error line
            ``qtrace capture`` printed when it stopped before capturing.
        hint: the capture's hint, if any.
        qemu_log: the text of the capture's ``qemu.log`` ("" when there is none).
        accesses: accesses recorded before the end.
        exit_code: the exit code of ``qtrace capture``.
        unstartable: why the devices' registry says this device cannot start in a capture
            (on this machine and topology), if it says so; it then is the reason.
    """
    text = reason or ""
    # Not the device's doing first: they stop the matrix, whatever the device.
    if match := _BROKEN.search(text):
        return NamedReason(_cut(f"qtrace does not start: {match[0]}"), Category.QTRACE_BROKEN)
    if exit_code == 3:
        return NamedReason(_cut(_first_sentence(text) or "environment"), Category.ENVIRONMENT)
    if unstartable:
        return _unstartable(unstartable)
    crash = _crash(text, qemu_log)
    if crash is not None:
        return crash
    if "KVM internal error" in text:
        match = re.search(r"KVM internal error \(([^)]*)\)", text)
        return NamedReason(
            f"KVM internal error ({match[1]})" if match else "KVM internal error",
            Category.KVM_ERROR,
        )
    message = (qemu_message(qemu_log) if accesses == 0 else None) or qemu_message(text)
    if status == "error" and message is not None and accesses == 0:
        return _refusal(message)
    if status == "timeout":
        return NamedReason(
            _cut(f"{_first_sentence(text) or 'timed out'} ({accesses} accesses)"), Category.TIMEOUT
        )
    if status == "guest-hang":
        where = re.search(r"no progress for (\d+) s: (.+?)\.", text)
        phrase = f"{where[2]} ({where[1]} s without progress)" if where else _first_sentence(text)
        return NamedReason(_cut(f"guest hang: {phrase}"), Category.GUEST_HANG)
    if exit_code == 2:
        return NamedReason(_cut(_first_sentence(text) or "usage error"), Category.USAGE)
    if re.search(r"\bbackend process\b", text):  # qtrace's own (qtrace.launch.backends)
        return NamedReason(_cut(_first_sentence(text)), Category.BACKEND)
    if re.search(r"could not find|discover|MemoryRegionOps|no handlers", text, re.I):
        return NamedReason(_cut(f"discovery: {_first_sentence(text)}"), Category.DISCOVERY)
    if match := re.search(r"the guest reported: DONE fail ?(.*)", text):
        code = match[1].strip() or "no reason given"
        said = _PROBE_CODES.get(code)
        return NamedReason(
            _cut(f"probe failed: {said} ({code})" if said else f"probe failed: {code}"),
            Category.GUEST,
        )
    if "serial output" in text or "DONE line" in text:
        return NamedReason(_cut(f"probe: {_first_sentence(text)}"), Category.GUEST)
    return NamedReason(_cut(_first_sentence(text) or hint or f"ended {status}"), Category.OTHER)

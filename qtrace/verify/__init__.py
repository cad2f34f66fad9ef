"""Checking QEMU against the reference emulator.

Two ways: replay of a captured trace (:func:`verify_file`, :func:`replay`, with the
volatile-register rules of :mod:`qtrace.verify.volatile` and the event attribution
of :mod:`qtrace.verify.events`), and the live differential test
against QEMU under qtest (:func:`run_live` with a
:class:`~qtrace.verify.qemu_qtest.QemuQtest`; steps in :mod:`qtrace.verify.steps`, fixed
scenarios in :mod:`qtrace.verify.scenarios`).
"""

from qtrace.verify.live import Divergence, LiveResult, run_live
from qtrace.verify.replay import SUPPORTED_DEVICES, replay, verify_file
from qtrace.verify.result import (
    EventMismatch,
    Mismatch,
    PriorAccess,
    UnimplementedUse,
    VerifyResult,
)
from qtrace.verify.volatile import VOLATILE, VolatileRule

__all__ = [
    "SUPPORTED_DEVICES",
    "VOLATILE",
    "Divergence",
    "EventMismatch",
    "LiveResult",
    "Mismatch",
    "PriorAccess",
    "UnimplementedUse",
    "VerifyResult",
    "VolatileRule",
    "replay",
    "run_live",
    "verify_file",
]

"""Checking QEMU against a device's reference model (in the device's pack).

Two ways: replay of a captured trace (:func:`verify_file`, :func:`replay`, with the
volatile-register rules of :mod:`qtrace.verify.volatile` and the event attribution
of :mod:`qtrace.verify.events`), and the live differential test
against QEMU under qtest (:func:`run_live` with a
:class:`~qtrace.verify.qemu_qtest.QemuQtest`; steps in :mod:`qtrace.verify.steps`).
What is device-specific (model, qtest setup, scenarios, volatile rules, replay quirks)
comes from the device's pack through :func:`verify_device`.
"""

from qtrace.verify.live import Divergence, LiveResult, run_live
from qtrace.verify.replay import replay, verify_file
from qtrace.verify.result import (
    EventMismatch,
    Mismatch,
    PriorAccess,
    UnimplementedUse,
    VerifyResult,
)
from qtrace.verify.support import (
    DeviceSupport,
    VerifyDevice,
    describe_comparisons,
    devices_with_model,
    verify_device,
)
from qtrace.verify.volatile import VolatileRule

__all__ = [
    "DeviceSupport",
    "Divergence",
    "EventMismatch",
    "LiveResult",
    "Mismatch",
    "PriorAccess",
    "UnimplementedUse",
    "VerifyDevice",
    "VerifyResult",
    "VolatileRule",
    "describe_comparisons",
    "devices_with_model",
    "replay",
    "run_live",
    "verify_device",
    "verify_file",
]

"""Checking QEMU against the reference emulator.

Today: replay of a captured trace (:func:`verify_file`, :func:`replay`) with the rules in
:mod:`qtrace.verify.replay` and the volatile-register table in
:mod:`qtrace.verify.volatile`. The results (:class:`VerifyResult`) are shaped so a
later live differential mode can report in the same terms.
"""

from qtrace.verify.replay import SUPPORTED_DEVICES, replay, verify_file
from qtrace.verify.result import Mismatch, PriorAccess, UnimplementedUse, VerifyResult
from qtrace.verify.volatile import VOLATILE, VolatileRule

__all__ = [
    "SUPPORTED_DEVICES",
    "VOLATILE",
    "Mismatch",
    "PriorAccess",
    "UnimplementedUse",
    "VerifyResult",
    "VolatileRule",
    "replay",
    "verify_file",
]

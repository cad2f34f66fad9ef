"""How a capture learns that it was asked to stop: Ctrl-C or a termination signal.

Library code installs no signal handlers (house style): the CLI turns SIGTERM and SIGHUP
into :class:`SignalInterrupt` (defined with the error tree, re-exported here), a
:class:`KeyboardInterrupt`, so the capture's one cleanup
path (stop QEMU, close the trace with an ``end`` record saying ``interrupted``, remove the
container) serves every way of being stopped. The end record names what stopped it.
"""

from __future__ import annotations

from qtrace.errors import SignalInterrupt

__all__ = ["SignalInterrupt", "interrupt_reason"]


def interrupt_reason(exc: KeyboardInterrupt) -> str:
    """The end record's reason for an interrupt: ``Ctrl-C`` or ``SIGTERM received``."""
    if isinstance(exc, SignalInterrupt):
        return f"{exc.signal_name} received"
    return "Ctrl-C"

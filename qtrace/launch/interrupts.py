"""How a capture learns that it was asked to stop: Ctrl-C or a termination signal.

Library code installs no signal handlers (house style): the CLI turns SIGTERM and SIGHUP
into :class:`SignalInterrupt`, a :class:`KeyboardInterrupt`, so the capture's one cleanup
path (stop QEMU, close the trace with an ``end`` record saying ``interrupted``, remove the
container) serves every way of being stopped. The end record names what stopped it.
"""

from __future__ import annotations

import signal

__all__ = ["SignalInterrupt", "interrupt_reason"]


class SignalInterrupt(KeyboardInterrupt):
    """A termination signal, delivered as an interrupt.

    Attributes:
        signal_name: e.g. ``SIGTERM``.
        exit_code: what the process exits with after cleaning up (128 + the signal's
            number, as a shell reports a process killed by it: 143 for SIGTERM).
    """

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(self.signal_name)


def interrupt_reason(exc: KeyboardInterrupt) -> str:
    """The end record's reason for an interrupt: ``Ctrl-C`` or ``SIGTERM received``."""
    if isinstance(exc, SignalInterrupt):
        return f"{exc.signal_name} received"
    return "Ctrl-C"

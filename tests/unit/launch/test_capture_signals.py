"""The CLI delivers SIGTERM/SIGHUP to a capture as an interrupt (library code installs no
handlers), once, and puts the previous handlers back."""

from __future__ import annotations

import os
import signal

import pytest

from qtrace.cli.capture import _signals_as_interrupts
from qtrace.launch.interrupts import SignalInterrupt, interrupt_reason


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_termination_signal_becomes_an_interrupt_naming_it(
    sig: signal.Signals, code: int
) -> None:
    before = signal.getsignal(sig)
    with pytest.raises(SignalInterrupt) as info:
        with _signals_as_interrupts():
            os.kill(os.getpid(), sig)
    assert isinstance(info.value, KeyboardInterrupt), "the capture's Ctrl-C cleanup handles it"
    assert (info.value.signal_name, info.value.exit_code) == (sig.name, code)
    assert interrupt_reason(info.value) == f"{sig.name} received"
    assert signal.getsignal(sig) == before


def test_a_second_signal_during_cleanup_is_not_raised() -> None:
    cleaned_up = False
    with pytest.raises(SignalInterrupt):
        with _signals_as_interrupts():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # arrives while the cleanup runs
                cleaned_up = True
    assert cleaned_up


def test_ctrl_c_keeps_its_own_reason() -> None:
    assert interrupt_reason(KeyboardInterrupt()) == "Ctrl-C"

"""The capture's watch step on a fake clock: every way a capture ends, without QEMU.

``step`` is pure, so time is just a number passed in; no test sleeps or reads a clock.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from qtrace.errors import GdbExited
from qtrace.launch.capture import _CaptureRun
from qtrace.launch.kvm_error import KVM_ERROR_HINT, KvmInternalError, parse_qemu_log
from qtrace.launch.mi import Stop
from qtrace.launch.watch import (
    HANG_HINT,
    CollectorAnswer,
    Do,
    Limits,
    Phase,
    Report,
    WatchState,
    start,
    step,
)

LIMITS = Limits(timeout_s=100.0, hang_timeout_s=30.0, kvm=True, max_hits=50)
RECORDED_LOG = Path(__file__).parent / "recorded" / "qemu-kvm-internal-error.log"


class FakeClock:
    """Seconds that advance only when told to."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def advance(self, seconds: float) -> float:
        self.now_s += seconds
        return self.now_s


def _run(
    state: WatchState, reports: list[Report], clock: FakeClock, every_s: float = 0.25
) -> list[tuple[WatchState, Do]]:
    out = []
    for report in reports:
        state, action = step(state, report, clock.advance(every_s), LIMITS)
        out.append((state, action.do))
    return out


def test_a_breakpoint_stop_asks_the_collector_and_arming_resumes_in_capturing() -> None:
    clock = FakeClock()
    state = start(clock.now_s, armed=False)
    assert state.phase is Phase.WAITING
    state, action = step(
        state, Report(records=1, stop=Stop("breakpoint-hit")), clock.advance(1), LIMITS
    )
    assert action.do is Do.ASK_COLLECTOR and state.phase is Phase.WAITING
    state, action = step(
        state, Report(records=1, collector=CollectorAnswer("arm")), clock.advance(0.1), LIMITS
    )
    assert action.do is Do.RESUME and state.phase is Phase.CAPTURING
    assert state.last_progress_s == clock.now_s, "arming counts as progress"


def test_max_hits_finishes_ok_and_an_unknown_stop_reason_resumes() -> None:
    clock = FakeClock()
    state = start(clock.now_s, armed=True)
    _, action = step(state, Report(collector=CollectorAnswer(None)), clock.advance(1), LIMITS)
    assert action.do is Do.RESUME
    state, action = step(
        state, Report(collector=CollectorAnswer("max-hits")), clock.advance(1), LIMITS
    )
    assert (action.do, action.status, action.reason) == (
        Do.FINISH,
        "ok",
        "stopped at --max-hits 50",
    )
    assert state.phase is Phase.ENDED
    assert step(state, Report(), clock.advance(1), LIMITS)[1].do is Do.POLL, (
        "an ended watch does nothing more"
    )


def test_qemu_exiting_is_judged_and_a_crash_signal_is_an_error() -> None:
    clock = FakeClock()
    _, action = step(
        start(clock.now_s, True), Report(stop=Stop("exited", exit_code=1)), clock.advance(1), LIMITS
    )
    assert action.do is Do.JUDGE_EXIT and action.exit_code == 1
    _, action = step(
        start(clock.now_s, True),
        Report(stop=Stop("signal-received", signal="SIGSEGV")),
        clock.advance(1),
        LIMITS,
    )
    assert (action.do, action.status, action.reason) == (
        Do.FINISH,
        "error",
        "QEMU stopped: signal-received SIGSEGV",
    )


def test_gdb_lost_abandons_and_the_host_closes_the_trace() -> None:
    clock = FakeClock()
    _, action = step(
        start(clock.now_s, True),
        Report(gdb_lost="gdb exited unexpectedly"),
        clock.advance(1),
        LIMITS,
    )
    assert (action.do, action.status, action.reason) == (
        Do.ABANDON,
        "error",
        "gdb exited unexpectedly",
    )


def test_progress_postpones_the_hang_and_silence_ends_it_with_the_kvm_hint() -> None:
    clock = FakeClock()
    state = start(clock.now_s, armed=True)
    # 29 s of records every second: never a hang.
    for records in range(1, 30):
        state, action = step(state, Report(records=records), clock.advance(1), LIMITS)
        assert action.do is Do.POLL
    # Then silence: liveness checks while quiet, then the hang at 30 s without progress.
    dos = []
    for _ in range(31):
        state, action = step(
            state,
            Report(records=29, qemu_alive=True if dos[-1:] == [Do.CHECK_ALIVE] else None),
            clock.advance(1),
            LIMITS,
        )
        dos.append(action.do)
        if action.do.ends:
            break
    assert Do.CHECK_ALIVE in dos
    assert action.do is Do.INTERRUPT and action.status == "guest-hang"
    assert "the guest stopped making progress" in (action.reason or "") and HANG_HINT in (
        action.hint or ""
    )


def test_a_guest_that_never_starts_is_said_so_and_tcg_gets_no_kvm_advice() -> None:
    clock = FakeClock()
    tcg = Limits(timeout_s=300.0, hang_timeout_s=30.0, kvm=False)
    state = start(clock.now_s, armed=False)
    # Before the start marker the firmware boots without recording anything: the hang
    # timeout is then at least start_timeout_s (120 s), not hang_timeout_s.
    state, action = step(state, Report(), clock.advance(31), tcg)
    assert not action.do.ends
    _, action = step(state, Report(), clock.advance(90), tcg)
    assert action.status == "guest-hang" and "never started" in (action.reason or "")
    assert "no progress for 120 s" in (action.reason or "")
    assert "--accel tcg" not in (action.reason or "")


def test_liveness_is_checked_only_when_quiet_and_not_more_often_than_asked() -> None:
    clock = FakeClock()
    state = start(clock.now_s, armed=True)
    results = _run(state, [Report(records=0)] * 40, clock)  # 10 s of silence, polled 4x a second
    checks = [i for i, (_, do) in enumerate(results) if do is Do.CHECK_ALIVE]
    assert checks, "quiet for longer than quiet_before_liveness_s"
    assert checks[0] * 0.25 >= LIMITS.quiet_before_liveness_s - 0.25
    assert all((b - a) * 0.25 > LIMITS.liveness_every_s - 0.25 for a, b in zip(checks, checks[1:]))


def test_a_dead_qemu_is_abandoned() -> None:
    clock = FakeClock()
    _, action = step(start(clock.now_s, True), Report(qemu_alive=False), clock.advance(6), LIMITS)
    assert action.do is Do.ABANDON and "QEMU died" in (action.reason or "")


def test_the_timeout_wins_over_progress() -> None:
    clock = FakeClock()
    state = start(clock.now_s, armed=True)
    action = None
    for records in range(1, 200):
        state, action = step(state, Report(records=records), clock.advance(1), LIMITS)
        if action.do.ends:
            break
    assert action is not None and (action.do, action.status) == (Do.INTERRUPT, "timeout")
    assert records == 101


def test_a_collector_write_failure_finishes_with_its_reason() -> None:
    clock = FakeClock()
    answer = CollectorAnswer("write-failed: [Errno 28] No space left on device")
    _, action = step(start(clock.now_s, True), Report(collector=answer), clock.advance(1), LIMITS)
    assert (action.do, action.status) == (Do.FINISH, "error")
    assert action.write_failure == "[Errno 28] No space left on device"
    assert "could not write the trace" in (action.reason or "")


def test_a_kvm_internal_error_ends_at_once_when_qemu_has_printed_its_dump() -> None:
    clock = FakeClock()
    error = parse_qemu_log(RECORDED_LOG.read_text())
    assert error is not None and error.dump_complete
    state, action = step(
        start(clock.now_s, True), Report(records=5, kvm_error=error), clock.advance(0.25), LIMITS
    )
    assert (action.do, action.status, action.hint) == (Do.KILL, "error", KVM_ERROR_HINT)
    assert "KVM internal error (Suberror: 1, emulation failure)" in (action.reason or "")
    assert state.phase is Phase.ENDED


def test_a_kvm_internal_error_waits_for_the_dump_but_not_for_ever() -> None:
    clock = FakeClock()
    seen = KvmInternalError(suberror=1)  # the collector's record; QEMU's dump not in the log yet
    state = start(clock.now_s, armed=True)
    state, action = step(state, Report(records=3, kvm_error=seen), clock.advance(0.25), LIMITS)
    assert action.do is Do.POLL and state.phase is Phase.FAILING
    ends = _run(state, [Report(records=3, kvm_error=seen)] * 20, clock)
    first_end = next(i for i, (_, do) in enumerate(ends) if do.ends)
    assert ends[first_end][1] is Do.KILL
    assert (first_end + 1) * 0.25 == pytest.approx(LIMITS.dump_wait_s), (
        "ends dump_wait_s after the error"
    )


def test_a_stop_without_reason_is_judged_as_an_exit_whose_status_gdb_lost() -> None:
    # gdb's bare *stopped after "No unwaited-for children left" (seen in a KVM probe capture).
    from qtrace.launch.mi import as_stop

    stop = as_stop({"type": "notify", "message": "stopped", "payload": None})
    assert stop is not None and stop.reason == "no-reason"
    clock = FakeClock()
    state, action = step(start(clock.now_s, True), Report(stop=stop), clock.advance(1), LIMITS)
    assert (action.do, action.exit_code, action.exit_status_lost) == (Do.JUDGE_EXIT, None, True)
    assert state.phase is Phase.ENDED
    other = as_stop({"type": "notify", "message": "stopped", "payload": {"frame": {}}})
    assert other is not None and other.reason == "unknown"


class _GdbThatDiesOnEveryCommand:
    """A gdb whose pipes close while a command is in flight (killed mid-question)."""

    def console(self, command: str) -> list[dict[str, object]]:
        raise GdbExited(f"gdb exited while running {command!r}")

    def command(self, command: str) -> list[dict[str, object]]:
        raise GdbExited(f"gdb exited while running {command!r}")


@pytest.mark.parametrize("ask", [_CaptureRun._ask_collector, _CaptureRun._resume])
def test_gdb_dying_during_a_command_is_reported_as_lost_not_raised(ask: object) -> None:
    """CI once killed gdb while 'qtrace on-stop' ran: the exception escaped the watch loop
    and the capture never returned. Now it becomes a gdb_lost report, which abandons."""
    run = SimpleNamespace(tail=SimpleNamespace(stats=SimpleNamespace(records=7)))
    run._gdb_lost = lambda exc: _CaptureRun._gdb_lost(run, exc)
    report = ask(run, _GdbThatDiesOnEveryCommand())
    assert report.records == 7 and "gdb exited while running" in (report.gdb_lost or "")
    _, action = step(start(0.0, True), report, 1.0, LIMITS)
    assert action.do is Do.ABANDON

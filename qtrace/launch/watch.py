"""The capture's watch step: what to do next, decided from what gdb and QEMU reported.

:func:`step` is a pure function of (state, report, now) -> (state, action): no I/O, no
clock of its own, so every ending of a capture (the guest's exit, ``--max-hits``, a
timeout, a hang, a dead QEMU or gdb, a KVM internal error, a collector that cannot write)
is unit-tested on a fake clock. The capture (``qtrace.launch.capture``) does the I/O: it
polls gdb, the trace and qemu.log, builds a :class:`Report`, calls :func:`step` and
carries out the :class:`Action`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from qtrace.launch.kvm_error import KVM_ERROR_HINT, KvmInternalError
from qtrace.launch.mi import STOP_WITHOUT_REASON, Stop
from qtrace.trace.kinds import CaptureStatus

__all__ = [
    "Phase",
    "Do",
    "Limits",
    "CollectorAnswer",
    "Report",
    "WatchState",
    "Action",
    "start",
    "step",
    "WRITE_FAILED",
    "HANG_HINT",
    "hang_reason",
]

WRITE_FAILED = "write-failed"
"""Prefix of the collector's stop reason when it could not write the trace (e.g. a full disk)."""

HANG_HINT = "Under nested KVM some guests never exit to QEMU again; try --accel tcg."


class Phase(Enum):
    """Where the capture is."""

    WAITING = "waiting"  # QEMU runs; collectors wait for the guest's start marker
    CAPTURING = "capturing"  # collectors armed
    FAILING = "failing"  # KVM internal error seen; QEMU is still printing its register dump
    ENDED = "ended"  # an ending action was returned; no further steps


class Do(Enum):
    """What the capture must do now."""

    POLL = "poll"  # nothing: observe again
    ASK_COLLECTOR = "ask-collector"  # a collector stopped QEMU: ask it why (`qtrace on-stop`)
    RESUME = "resume"  # let QEMU run on (-exec-continue)
    CHECK_ALIVE = "check-alive"  # quiet for a while: is QEMU's process still there?
    JUDGE_EXIT = "judge-exit"  # QEMU exited: judge its status by the guest plan, then finish
    FINISH = "finish"  # QEMU is stopped: write the end record (`qtrace finish`)
    INTERRUPT = "interrupt"  # QEMU runs: stop it, then finish
    KILL = "kill"  # QEMU is wedged where gdb cannot interrupt it: kill it, then finish
    ABANDON = "abandon"  # gdb or QEMU is gone: the host closes the trace itself

    @property
    def ends(self) -> bool:
        """Does this action end the capture?"""
        return self in (Do.JUDGE_EXIT, Do.FINISH, Do.INTERRUPT, Do.KILL, Do.ABANDON)


@dataclass(frozen=True)
class Limits:
    """The capture's bounds (seconds) and what the messages need to know."""

    timeout_s: float
    hang_timeout_s: float
    kvm: bool
    max_hits: int = 0
    # Before the guest's start marker nothing is recorded (the firmware boots), so "no
    # progress" can only mean "not started yet": a loaded host's nested KVM boots SeaBIOS
    # in 40-60 s (measured under a load average of 10 on 2 cores).
    start_timeout_s: float = 120.0
    quiet_before_liveness_s: float = 5.0
    liveness_every_s: float = 2.0
    # QEMU prints the register dump right after its "KVM internal error" line; if the
    # dump's last line never comes, end anyway after this long.
    dump_wait_s: float = 3.0


@dataclass(frozen=True)
class CollectorAnswer:
    """The collector's reply to ``qtrace on-stop``: why it stopped QEMU (None: no reason)."""

    reason: str | None


@dataclass(frozen=True)
class Report:
    """What gdb and QEMU reported since the last step.

    Attributes:
        records: trace records read so far (progress is a change of this count).
        stop: a ``*stopped`` record gdb sent, if any.
        collector: the answer to an ASK_COLLECTOR action.
        qemu_alive: the answer to a CHECK_ALIVE action.
        gdb_lost: gdb died (the message), so nothing can be asked of it any more.
        kvm_error: the KVM internal error QEMU or the collector reported, if any.
    """

    records: int = 0
    stop: Stop | None = None
    collector: CollectorAnswer | None = None
    qemu_alive: bool | None = None
    gdb_lost: str | None = None
    kvm_error: KvmInternalError | None = None


@dataclass(frozen=True)
class WatchState:
    """The watch's memory between steps (times are the caller's clock, in seconds)."""

    phase: Phase
    started_s: float
    last_progress_s: float
    last_alive_check_s: float
    records: int = 0
    failing_since_s: float | None = None


@dataclass(frozen=True)
class Action:
    """What to do; for ending actions, the end record's status and reason and a hint."""

    do: Do
    status: CaptureStatus | None = None
    reason: str | None = None
    hint: str | None = None
    exit_code: int | None = None
    exit_status_lost: bool = False  # QEMU is gone but gdb lost its exit status
    write_failure: str | None = None  # the run directory could not be written (why)


def start(now_s: float, armed: bool) -> WatchState:
    """The state right after QEMU was let run (armed: collectors are on from QEMU's start)."""
    return WatchState(Phase.CAPTURING if armed else Phase.WAITING, now_s, now_s, now_s)


def _end(state: WatchState, action: Action) -> tuple[WatchState, Action]:
    return replace(state, phase=Phase.ENDED), action


def step(
    state: WatchState, report: Report, now_s: float, limits: Limits
) -> tuple[WatchState, Action]:
    """Decide the next action. Pure: the same inputs give the same outputs.

    Order of precedence: gdb gone; the collector's answer; a stop gdb reported; a KVM
    internal error; a dead QEMU; the timeout; the hang timeout; a liveness check.
    """
    if state.phase is Phase.ENDED:
        return state, Action(Do.POLL)
    if report.gdb_lost is not None:
        return _end(state, Action(Do.ABANDON, CaptureStatus.ERROR, report.gdb_lost))
    if report.records != state.records:
        state = replace(state, records=report.records, last_progress_s=now_s)

    if report.collector is not None:
        return _collector_answer(state, report.collector, now_s, limits)
    if report.stop is not None:
        return _stopped(state, report.stop)

    if report.kvm_error is not None:
        if state.phase is not Phase.FAILING:
            state = replace(state, phase=Phase.FAILING, failing_since_s=now_s)
        since = state.failing_since_s if state.failing_since_s is not None else now_s
        if report.kvm_error.dump_complete or now_s - since >= limits.dump_wait_s:
            # QEMU paused the VM; gdb's -exec-interrupt gets no answer then (seen under
            # this machine's KVM: the capture waited out every timeout), so kill it.
            return _end(
                state,
                Action(
                    Do.KILL, CaptureStatus.ERROR, report.kvm_error.describe(), hint=KVM_ERROR_HINT
                ),
            )
        return state, Action(Do.POLL)

    if report.qemu_alive is False:
        # QEMU died (e.g. SIGKILL) and gdb did not report it.
        return _end(
            state,
            Action(
                Do.ABANDON, CaptureStatus.ERROR, "QEMU died without exiting (killed by a signal?)"
            ),
        )

    if now_s - state.started_s > limits.timeout_s:
        return _end(
            state,
            Action(
                Do.INTERRUPT, CaptureStatus.TIMEOUT, f"--timeout {limits.timeout_s:.0f} s reached"
            ),
        )
    waiting = state.phase is Phase.WAITING
    hang_s = (
        max(limits.hang_timeout_s, limits.start_timeout_s) if waiting else limits.hang_timeout_s
    )
    if now_s - state.last_progress_s > hang_s:
        reason = hang_reason(hang_s, waiting, limits.kvm)
        return _end(state, Action(Do.INTERRUPT, CaptureStatus.GUEST_HANG, reason, hint=reason))

    quiet_s = now_s - state.last_progress_s
    if (
        quiet_s > limits.quiet_before_liveness_s
        and now_s - state.last_alive_check_s > limits.liveness_every_s
    ):
        return replace(state, last_alive_check_s=now_s), Action(Do.CHECK_ALIVE)
    return state, Action(Do.POLL)


def hang_reason(hang_s: float, waiting: bool, kvm: bool) -> str:
    """The words of a ``guest-hang`` end (both collectors): how long nothing happened,
    whether the guest had started (``waiting``: not yet), and under KVM the way out."""
    where = "the guest never started" if waiting else "the guest stopped making progress"
    hint = HANG_HINT if kvm else None
    return f"no progress for {hang_s:.0f} s: {where}." + (f" {hint}" if hint else "")


def _collector_answer(
    state: WatchState, answer: CollectorAnswer, now_s: float, limits: Limits
) -> tuple[WatchState, Action]:
    why = answer.reason or ""
    if why == "arm":
        return replace(state, phase=Phase.CAPTURING, last_progress_s=now_s), Action(Do.RESUME)
    if why == "max-hits":
        return _end(
            state, Action(Do.FINISH, CaptureStatus.OK, f"stopped at --max-hits {limits.max_hits}")
        )
    if why.startswith(WRITE_FAILED):
        detail = why[len(WRITE_FAILED) :].lstrip(": ") or "a write error"
        return _end(
            state,
            Action(
                Do.FINISH,
                CaptureStatus.ERROR,
                f"the collector could not write the trace: {detail}",
                write_failure=detail,
            ),
        )
    return state, Action(Do.RESUME)


def _stopped(state: WatchState, stop: Stop) -> tuple[WatchState, Action]:
    if stop.reason == "breakpoint-hit":
        return state, Action(Do.ASK_COLLECTOR)
    if stop.reason.startswith("exited"):
        return _end(state, Action(Do.JUDGE_EXIT, exit_code=stop.exit_code))
    if stop.reason == STOP_WITHOUT_REASON:
        # gdb lost QEMU (its exit status with it): judge by what the guest itself reported.
        return _end(state, Action(Do.JUDGE_EXIT, exit_code=None, exit_status_lost=True))
    return _end(
        state,
        Action(
            Do.FINISH,
            CaptureStatus.ERROR,
            f"QEMU stopped: {stop.reason} {stop.signal or ''}".strip(),
        ),
    )

"""The fast run's hang check (:mod:`qtrace.launch.fast.progress`): the agent's count of hits
standing still for the hang timeout ends the capture ``guest-hang``, with the breakpoint
collector's words; before the guest's start marker the wait is the firmware's longer one."""

from __future__ import annotations

from qtrace.launch.fast.progress import Progress
from qtrace.launch.watch import HANG_HINT


def test_a_count_that_stands_still_past_the_hang_timeout_is_a_hang() -> None:
    progress = Progress(hang_timeout_s=45.0, kvm=True)
    assert progress.hung(1000.0, armed=True) is None  # nothing seen yet: nothing to judge
    progress.seen(10, 0.0)
    progress.seen(12, 3.0)  # the last move
    progress.seen(12, 40.0)
    assert progress.hung(48.0, armed=True) is None
    reason = progress.hung(48.5, armed=True)
    assert reason == f"no progress for 45 s: the guest stopped making progress. {HANG_HINT}"


def test_before_the_start_marker_the_firmwares_wait_applies() -> None:
    progress = Progress(hang_timeout_s=45.0, kvm=False)
    progress.seen(5, 0.0)
    assert progress.hung(100.0, armed=False) is None
    assert progress.hung(121.0, armed=False) == "no progress for 120 s: the guest never started."


def test_a_moving_count_or_no_hang_timeout_is_no_hang() -> None:
    progress = Progress(hang_timeout_s=20.0, kvm=True)
    for second in range(100):
        progress.seen(second, float(second))
        assert progress.hung(float(second) + 0.5, armed=True) is None
    off = Progress(hang_timeout_s=0.0, kvm=True)
    off.seen(1, 0.0)
    assert off.hung(10_000.0, armed=True) is None

"""Is the guest still doing anything? The fast run's answer to the breakpoint collector's
hang timeout.

Why: QEMU is never stopped by a fast run, so nothing tells the host a guest stalled (under
nested KVM some guests never exit to QEMU again: the linux guest's kernel, measured, made
its last exit 3 s into the run); the run would wait out its whole ``--timeout``. Progress is
the agent's count of hits (every tracepoint's, the start marker's and the firmware's
included, and under KVM every exit): read from the host while QEMU runs, or at each drain.
While the guest has not reached its start marker (the firmware boots) the wait is at least
``start_timeout_s``, as the breakpoint collector waits then. Pure: the caller supplies the
clock and the counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from qtrace.launch.watch import hang_reason

__all__ = ["Progress"]


@dataclass
class Progress:
    """The last time the agent's count of hits moved, and whether the wait is over."""

    hang_timeout_s: float
    kvm: bool
    start_timeout_s: float = 120.0
    count: int = -1
    since_s: float = 0.0

    def seen(self, count: int, now_s: float) -> None:
        """The agent has counted ``count`` hits since the run began, at ``now_s``."""
        if count != self.count:
            self.count, self.since_s = count, now_s

    def hung(self, now_s: float, armed: bool) -> str | None:
        """The ``guest-hang`` reason once nothing moved for long enough (``armed``: the
        guest reached its start marker, as far as the run has decoded), else ``None``."""
        if self.count < 0 or self.hang_timeout_s <= 0:
            return None
        wait_s = self.hang_timeout_s if armed else max(self.hang_timeout_s, self.start_timeout_s)
        if now_s - self.since_s <= wait_s:
            return None
        return hang_reason(wait_s, not armed, self.kvm)

"""The fast collector's self-checks: what the agent counted against what was decoded.

A fast capture can lose hits where the breakpoint collector cannot (a full trace buffer,
frames the agent wrote as zeros, blocks that do not decode); these checks go into the
trace's ``end`` record and the capture summary, and a failed one names the way to a
complete capture (``--collector breakpoint``) instead of leaving the trace silently short.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["FALLBACK_HINT", "OUT_OF_SPACE_HINT", "FastChecks"]

FALLBACK_HINT = "rerun with --collector breakpoint for a complete capture"
OUT_OF_SPACE_HINT = f"Bound the run with --max-hits, or {FALLBACK_HINT}."
"""A fast run the disk could not hold: the breakpoint collector writes as it goes."""


@dataclass(frozen=True)
class FastChecks:
    """Counts of one fast run. ``hits_by_agent`` is the frames the agent created (its
    status line's ``tcreated``: every hit that passed its tracepoint's condition); frames
    are the ones in the saved file."""

    hits_by_agent: int = 0
    frames_saved: int = 0
    frames_decoded: int = 0
    zeroed: int = 0
    undecodable: int = 0
    buffer_full: bool = False
    without_values: int = 0
    other_regions: int = 0
    beyond_max_hits: int = 0  # decoded, and left out: past --max-hits (not a loss)
    segments: int = 0  # how many times the buffer was drained into the trace
    # Decoded and not recorded, by design (not a loss): the device's hits before the guest's
    # start marker (firmware's config accesses), and INTx changes that another path than
    # pci_set_irq made (the breakpoint collector leaves them out too).
    before_arming: int = 0
    irq_other_paths: int = 0
    # KVM exits (kvm_exits: traced, under KVM): the ones the breakpoint collector leaves out
    # too (a quiet port's, reasons kvm_cpu_exec's switch has no case for), and string port
    # writes whose data was longer than the block collected (their record has no ``data``).
    kvm_exits: bool = False
    quiet_exits: int = 0
    exits_other_reasons: int = 0
    exits_without_data: int = 0

    def plus(self, other: FastChecks) -> FastChecks:
        """The checks of two segments of one run together: counts add up, a buffer that
        filled in either filled."""
        summed = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name not in ("buffer_full", "kvm_exits")
        }
        return FastChecks(buffer_full=self.buffer_full or other.buffer_full,
                          kvm_exits=self.kvm_exits or other.kvm_exits, **summed)  # fmt: skip

    @property
    def ok(self) -> bool:
        """Every hit the agent counted was decoded."""
        return not self.problems()

    def problems(self) -> list[str]:
        """One sentence per failed check, each saying what was lost."""
        out: list[str] = []
        if self.buffer_full:
            out.append("the trace buffer filled: tracing stopped before the guest ended")
        if self.hits_by_agent != self.frames_saved:
            out.append(
                f"the agent counted {self.hits_by_agent} hits but saved {self.frames_saved} frames"
            )
        if self.zeroed:
            out.append(f"{self.zeroed} frames came back zeroed (their access is lost)")
        if self.undecodable:
            out.append(f"{self.undecodable} frames did not decode")
        if self.other_regions:
            out.append(
                f"{self.other_regions} frames name a MemoryRegion or PCIDevice that is not "
                "the device's (the agent's condition admits only the device's: the frames "
                "were misread)"
            )
        if self.without_values:
            out.append(
                f"{self.without_values} frames lack the values their access is read from "
                "(left out of the trace)"
            )
        return out

    def record(self) -> dict[str, object]:
        """The ``end`` record's ``fast_checks`` field (and the summary's)."""
        fields: dict[str, object] = {
            "ok": self.ok,
            "hits_by_agent": self.hits_by_agent,
            "frames_saved": self.frames_saved,
            "frames_decoded": self.frames_decoded,
            "zeroed": self.zeroed,
            "undecodable": self.undecodable,
            "buffer_full": self.buffer_full,
            "without_values": self.without_values,
            "other_regions": self.other_regions,
            "beyond_max_hits": self.beyond_max_hits,
            "segments": self.segments,
            "before_arming": self.before_arming,
            "irq_other_paths": self.irq_other_paths,
            "kvm_exits": self.kvm_exits,
        }
        if self.kvm_exits:
            fields.update(quiet_exits=self.quiet_exits,
                          exits_other_reasons=self.exits_other_reasons,
                          exits_without_data=self.exits_without_data)  # fmt: skip
        if not self.ok:
            fields["problems"] = self.problems()
            fields["hint"] = FALLBACK_HINT
        return fields

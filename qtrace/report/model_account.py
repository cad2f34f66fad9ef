"""The reference model's account of a capture's accesses, for the reports' "model" column.

Why in the report: ``qtrace verify DEVICE --trace FILE --explain`` tells, for each access,
why a read returned its value and what a write did, from the model's own state changes
(:class:`~qtrace.verify.explain.Explainer`). A reader of a report asks the same question of
the register table, so a report of a device with a model replays its capture through the
explainer once and each register row carries the account of its last access. A device
without a model, or a trace the model cannot replay, gets no column and the report says
why; the report itself never fails because of the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from qtrace.errors import QtraceError, UsageError
from qtrace.trace import Trace
from qtrace.verify import replay, verify_device
from qtrace.verify.explain import AccessExplanation, Explainer

__all__ = ["ModelAccounts", "model_accounts"]

# A register row's account keeps at most this many lines (value reasons first, then what
# the access did): a Linux capture's busiest registers accumulate long effect lists.
ACCOUNT_LINES = 6


@dataclass(frozen=True)
class ModelAccounts:
    """What the model said about a capture: an account per access, and the replay's counts.

    Attributes:
        model: The device pack whose model replayed the capture (``e1000``).
        reads_compared: Reads the replay compared with QEMU's values.
        masked: Of those, reads that agreed only under a volatile rule (a bit QEMU sets
            from time or the host, docs/refemu.md).
        mismatches: Of those, reads where the model disagreed (each account says so).
        by_seq: The account of each access, by its ``seq``.
        unavailable: Why there are no accounts (no model, or the replay failed); empty
            when there are.
    """

    model: str
    reads_compared: int = 0
    masked: int = 0
    mismatches: int = 0
    by_seq: Mapping[int, AccessExplanation] | None = None
    unavailable: str = ""

    def lines(self, seq: int) -> tuple[str, ...]:
        """The account of access ``seq`` as short lines: why the value, then what it did
        (``does:`` before the first effect), cut at :data:`ACCOUNT_LINES` with a count."""
        found = (self.by_seq or {}).get(seq)
        if found is None:
            return ()
        effects = (f"does: {e}" if i == 0 else e for i, e in enumerate(found.effects))
        lines = [*found.value, *effects]
        if len(lines) > ACCOUNT_LINES:
            rest = len(lines) - ACCOUNT_LINES + 1
            lines = [*lines[: ACCOUNT_LINES - 1], f"(and {rest} more: qtrace verify --explain)"]
        return tuple(lines)


def model_accounts(trace: Trace, last_only: bool = True) -> ModelAccounts | None:
    """Replay ``trace`` through its device's model with the explainer; the accounts of
    each register's last access (what the report shows), or of every access.

    Returns:
        ``None`` when the captured device has no model; otherwise the accounts, or a
        :class:`ModelAccounts` whose ``unavailable`` says why the replay could not give them.
    """
    try:
        target = verify_device(trace.header.device)
    except UsageError:  # no pack, or a pack without a model
        return None
    # A register row carries its last access's account (report.model._register_rows): only
    # those are written, the replay goes through every access.
    last = {(a.space, a.device, a.region, a.offset): a.seq for a in trace.accesses}
    try:
        explainer = Explainer(target, only=set(last.values()) if last_only else None)
        result = replay(trace, target, observer=explainer)
        explainer.mark(result)
    except QtraceError as error:
        return ModelAccounts(target.name, unavailable=str(error))
    by_seq = {e.seq: e for e in explainer.explanations if e.kind == "access"}
    return ModelAccounts(
        target.name, result.reads_compared, result.masked, len(result.mismatches), by_seq
    )

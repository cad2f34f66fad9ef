"""``Explainer(target, only=seqs)`` (d36049d): the model's account written for some
accesses only, as the report asks for each register row's last access.

Why it must not change an account: the model's state and provenance follow every access
either way, and an account names earlier accesses (who set a bit, what a read adopted
from firmware). So the account of an access must not depend on whether the accounts of
earlier accesses were written; each is compared with the unrestricted explainer's, on
committed e1000 captures replayed as qtrace.report.model_account replays them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import cache
from pathlib import Path

import pytest

from qtrace.report.model import report_from_trace
from qtrace.report.model_account import model_accounts
from qtrace.trace import Trace, read_trace
from qtrace.verify import replay, verify_device
from qtrace.verify.explain import AccessExplanation, Explainer

CAPTURES = Path(__file__).parents[3] / "reports" / "captures"
TRACES = ("e1000-kvm-probe", "e1000-kvm-probe-rx")  # the probe; the probe receiving frames


@cache
def _trace(name: str) -> Trace:
    return read_trace(CAPTURES / name)


def _explanations(name: str, only: Collection[int] | None) -> list[AccessExplanation]:
    trace = _trace(name)
    target = verify_device(trace.header.device)
    explainer = Explainer(target, only=only)
    explainer.mark(replay(trace, target, observer=explainer))
    return explainer.explanations


@cache
def _every_account(name: str) -> tuple[AccessExplanation, ...]:
    return tuple(_explanations(name, None))


def _by_seq(explanations: Collection[AccessExplanation]) -> dict[int, AccessExplanation]:
    return {e.seq: e for e in explanations if e.kind == "access"}


def _last_per_register(trace: Trace) -> set[int]:
    """Each register's last access, as the report asks (rows checked below)."""
    return set({(a.space, a.device, a.region, a.offset): a.seq for a in trace.accesses}.values())


SELECTIONS: dict[str, Callable[[Trace], set[int]]] = {
    "each register's last access": _last_per_register,
    "the last access only": lambda t: {t.accesses[-1].seq},
    "the first access only": lambda t: {t.accesses[0].seq},
    "every third access": lambda t: {a.seq for a in t.accesses[::3]},
    "every read": lambda t: {a.seq for a in t.accesses if a.op == "read"},
    "every configuration access": lambda t: {a.seq for a in t.accesses if a.space == "pci-config"},
    "no access": lambda t: set(),
}


@pytest.mark.parametrize("name", TRACES)
@pytest.mark.parametrize("selection", SELECTIONS)
def test_a_restricted_explainer_accounts_for_exactly_the_accesses_asked(
    name: str, selection: str
) -> None:
    only = SELECTIONS[selection](_trace(name))
    restricted = _by_seq(_explanations(name, only))
    assert set(restricted) == only
    every = _by_seq(_every_account(name))
    for seq, account in restricted.items():
        assert account == every[seq], seq


def test_the_accounts_of_events_are_the_same_with_or_without_the_restriction() -> None:
    """Only accesses are left out; work no access caused (here: a frame the host
    delivered) is still accounted for."""
    name = "e1000-kvm-probe-rx"
    events = [e for e in _every_account(name) if e.kind != "access"]
    restricted = _explanations(name, _last_per_register(_trace(name)))
    assert events and [e for e in restricted if e.kind != "access"] == events


@pytest.mark.parametrize("name", TRACES)
def test_each_register_row_of_the_report_carries_its_last_access_account(name: str) -> None:
    """The report writes accounts only for the rows' last accesses (model_accounts): each
    row's is the one the unrestricted replay gives for that access, none is missing, and
    the replay's counts do not change."""
    trace = _trace(name)
    whole = model_accounts(trace, last_only=False)
    last = model_accounts(trace)
    assert whole is not None and last is not None
    rows = report_from_trace(trace, name=name).registers
    assert rows and all(row.account and row.account == whole.lines(row.last_seq) for row in rows)
    assert (last.reads_compared, last.masked, last.mismatches) == (
        whole.reads_compared, whole.masked, whole.mismatches)  # fmt: skip

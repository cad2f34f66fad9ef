"""Explanation anchors: parsed from the rules format and checked against a (fake) source tree.

The integration test (tests/integration/test_rule_anchors.py) runs the same checker on the
real QEMU trees; this one shows on a tree small enough to read that each kind of anchor
fails when the source says otherwise, and that a version range limits where it is checked.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from qtrace.annotate import DirectorySourceProvider
from qtrace.devices.rules import Anchor, VersionRange, anchor_problems, parse_frame_rules
from qtrace.errors import ReportError

FAKE_C = """\
/* do_io: a comment naming never_called() and SECRET does not count */
static uint64_t do_io(CPUState *cpu, int size)
{
    LOCK_GUARD();
    s->indirect(cpu);
    return dispatch(cpu, size) + MAGIC;
}

static void
other(void)
{
}
"""


@pytest.fixture
def tree(tmp_path: Path) -> DirectorySourceProvider:
    (tmp_path / "accel").mkdir()
    (tmp_path / "accel" / "io.c").write_text(FAKE_C, encoding="utf-8")
    (tmp_path / "stubs").mkdir()
    (tmp_path / "stubs" / "io.c").write_text(
        "void other(void)\n{\n    abort();\n}\n", encoding="utf-8"
    )
    return DirectorySourceProvider(tmp_path)


FILES = ["accel/io.c", "stubs/io.c"]


def _anchors(toml: str) -> tuple[Anchor, ...]:
    """The anchors of the one rule in ``toml``."""
    rules = parse_frame_rules(tomllib.loads(toml)["rule"], "test")
    assert len(rules) == 1
    return rules[0].anchors


def _problems(tree: DirectorySourceProvider, toml: str) -> list[str]:
    """Every problem of the rule's anchors against the fake tree."""
    return [p for a in _anchors(toml) for p in anchor_problems(a, tree, FILES)]


RULE = '[[rule]]\nfunc = ["do_io", "do_io_*"]\nlayer = "x"\nexplain = "e"\n'


@pytest.mark.parametrize(
    "anchor",
    [
        'anchor = { calls = ["LOCK_GUARD", "dispatch"] }',
        'anchor = { contains = ["MAGIC"], lacks = ["never_called", "SECRET"] }',
        'anchor = { defined_in = "accel/*.c" }',
        (
            'anchor = [{ calls = ["dispatch"] }, '
            '{ func = "other", defined_in = "accel/io.c", lacks = ["abort"] }]'
        ),
    ],
)
def test_anchors_that_the_source_bears_out_hold(tree: DirectorySourceProvider, anchor: str) -> None:
    assert _problems(tree, RULE + anchor) == []


@pytest.mark.parametrize(
    ("anchor", "problem"),
    [
        (
            'anchor = { calls = ["never_called"] }',
            "does not call never_called",
        ),  # only in a comment
        ('anchor = { calls = ["indirect"] }', "does not call indirect"),  # a pointer, not a call
        ('anchor = { calls = ["do_io"] }', "does not call do_io"),  # its own name is no call
        ('anchor = { contains = ["SECRET"] }', "lacks 'SECRET'"),
        ('anchor = { lacks = ["LOCK_GUARD"] }', "contains 'LOCK_GUARD'"),
        ('anchor = { defined_in = "system/io.c" }', "defined in accel/io.c, not system/io.c"),
        ('anchor = { func = "gone", calls = ["x"] }', "gone is not defined"),
        # no defined_in: the stub's body is checked too, and it calls abort
        ('anchor = { func = "other", lacks = ["abort"] }', "other (stubs/io.c) contains 'abort'"),
    ],
)
def test_anchors_the_source_contradicts_say_what_went_stale(
    tree: DirectorySourceProvider, anchor: str, problem: str
) -> None:
    problems = _problems(tree, RULE + anchor)
    assert len(problems) == 1 and problem in problems[0], problems


def test_an_anchor_without_func_checks_the_rules_first_function() -> None:
    (anchor,) = _anchors(RULE + 'anchor = { calls = ["x"] }')
    assert anchor.func == "do_io"
    both = _anchors(RULE + 'anchor = { func = ["a", "b"], calls = ["x"] }')
    assert [a.func for a in both] == ["a", "b"]


@pytest.mark.parametrize(
    ("spec", "inside", "outside"),
    [
        (">=9.0", ["9.0", "9.1.2", "10.0.13", "10.2.2"], ["7.2", "8.2.10"]),
        ("<10.2", ["7.2", "10.0.13", "10.1"], ["10.2", "10.2.2", "11.0"]),
        (">=8.1, <10.2", ["8.1", "10.0.13"], ["7.2", "8.0.5", "10.2.2"]),
    ],
)
def test_version_ranges(spec: str, inside: list[str], outside: list[str]) -> None:
    versions = VersionRange.parse(spec, "test")
    assert [v for v in inside if v not in versions] == []
    assert [v for v in outside if v in versions] == []


def test_a_versioned_anchor_applies_only_inside_its_range() -> None:
    (anchor,) = _anchors(RULE + 'anchor = { calls = ["x"], versions = "<10.2" }')
    assert anchor.applies_to("10.0.13") and anchor.applies_to("7.2")
    assert not anchor.applies_to("10.2.2")
    (always,) = _anchors(RULE + 'anchor = { calls = ["x"] }')
    assert always.applies_to("7.2") and always.applies_to("10.2.2")


@pytest.mark.parametrize(
    "anchor",
    [
        'anchor = { calls = ["x"], bogus = 1 }',  # unknown key
        "anchor = { }",  # checks nothing
        'anchor = { versions = ">=9.0" }',  # checks nothing either
        'anchor = { calls = ["x"], versions = "9.0" }',  # no operator
        'anchor = { calls = ["x"], versions = ">=10.2, <9.0" }',  # empty range
        'anchor = { func = "do_io_*", calls = ["x"] }',  # a glob is no function
        'anchor = "calls x"',
    ],
)
def test_malformed_anchors_are_report_errors(anchor: str) -> None:
    with pytest.raises(ReportError):
        _anchors(RULE + anchor)


def test_a_rule_whose_first_func_is_a_glob_needs_an_explicit_anchor_func() -> None:
    with pytest.raises(ReportError):
        _anchors(
            '[[rule]]\nfunc = "kvm_*"\nlayer = "x"\nexplain = "e"\nanchor = { calls = ["x"] }\n'
        )

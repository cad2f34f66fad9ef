"""pytest imports test files by basename (rootdir-relative "prepend" mode): two test files
with the same name in different folders stop the whole run at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).parents[2]


def test_test_file_basenames_are_unique() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert not [name for name, count in names.items() if count > 1]


def test_property_tests_run_under_the_suites_hypothesis_profile() -> None:
    from hypothesis import HealthCheck, settings

    assert settings.default.deadline is None
    assert HealthCheck.too_slow in settings.default.suppress_health_check


def test_unit_test_folders_mirror_the_stages() -> None:
    """tests/unit/<stage>/ for each qtrace stage (project/: checks over the whole tree)."""
    stages = {p.name for p in (TESTS.parent / "qtrace").iterdir() if (p / "__init__.py").is_file()}
    folders = {p.name for p in (TESTS / "unit").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders - {"project"} <= stages, sorted(folders - {"project"} - stages)

"""The package type-checks under ``mypy --strict`` (configured in pyproject.toml), and
all code passes ruff's default rules plus the line-length rule (``E4,E7,E9,F,E501``;
the length, 100, is in pyproject.toml): no unused imports, undefined names or other
pyflakes errors, no ambiguous names, no line longer than 100.

gdbscripts/ is left out of the type check: it runs in gdb's own interpreter against the
``gdb`` module, which has no type stubs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[3]


def test_mypy_strict_passes_on_the_package() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "qtrace"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_default_rules_and_line_length_pass_everywhere() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--select",
            "E4,E7,E9,F,E501",
            "qtrace",
            "gdbscripts",
            "benchmarks",
            "tests",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

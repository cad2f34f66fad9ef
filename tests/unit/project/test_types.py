"""The package type-checks under ``mypy --strict`` (configured in pyproject.toml), and
no code has unused imports, undefined names or other pyflakes errors (ruff ``F``).

gdbscripts/ is left out: it runs in gdb's own interpreter against the ``gdb`` module,
which has no type stubs.
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


def test_no_pyflakes_errors_anywhere() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--select",
            "F",
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

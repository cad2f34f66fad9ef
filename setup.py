"""Build hook: the wheel carries ``gdbscripts/`` and ``docker/`` as package data.

Both folders stay at the top of the checkout, where they are edited and reviewed (their
source of truth). Building a wheel copies them, byte for byte, into the package as
``qtrace/_data/gdbscripts`` and ``qtrace/_data/docker``, where ``qtrace.paths`` finds them in
an installed qtrace. An editable install (``pip install -e .``) copies nothing: qtrace then
runs from the checkout and uses the folders themselves. Everything else about the package is
in ``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLED = ("gdbscripts", "docker")
"""Top-level folders the wheel carries under ``qtrace/_data/``."""

HERE = Path(__file__).resolve().parent


def copy_bundled(source_root: Path, data_dir: Path) -> list[Path]:
    """Copy each :data:`BUNDLED` folder of ``source_root`` into ``data_dir``; returns the files
    written. Bytecode caches are left out; file modes are kept."""
    written: list[Path] = []
    for name in BUNDLED:
        target = data_dir / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            source_root / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        written += sorted(p for p in target.rglob("*") if p.is_file())
    return written


class BuildPyWithBundledFolders(build_py):
    """``build_py`` that also copies :data:`BUNDLED` into the build's ``qtrace/_data``."""

    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):
            self._bundled = copy_bundled(HERE, Path(self.build_lib) / "qtrace" / "_data")

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *map(str, getattr(self, "_bundled", []))]


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPyWithBundledFolders})

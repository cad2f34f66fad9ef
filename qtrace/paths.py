"""Where qtrace's own files live: the checkout's data folders and the user's cache.

``docker/``, ``gdbscripts/`` and the guest sources are mounted into containers, so they must
be real folders on the host; qtrace is installed editable (``pip install -e .``) from its
checkout, and these helpers find them next to the package.
"""

from __future__ import annotations

import os
from pathlib import Path

from qtrace.errors import EnvironmentProblem

__all__ = ["repo_root", "docker_dir", "gdbscripts_dir", "guests_dir", "cache_dir"]


def repo_root() -> Path:
    """The checkout qtrace runs from (the parent of the ``qtrace`` package)."""
    return Path(__file__).resolve().parent.parent


def _existing(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise EnvironmentProblem(
            f"{what} folder {path} is missing.",
            hint="qtrace must run from its source checkout: `pip install -e .` inside it.",
        )
    return path


def docker_dir() -> Path:
    """Scripts and package lists that build the image."""
    return _existing(repo_root() / "docker", "The image definition")


def gdbscripts_dir() -> Path:
    """The collector that runs inside gdb."""
    return _existing(repo_root() / "gdbscripts", "The gdb collector")


def guests_dir() -> Path:
    """Guest sources (probe, linux initramfs recipe) built inside the image."""
    return _existing(repo_root() / "qtrace" / "guests", "The guest sources")


def cache_dir() -> Path:
    """Per-user cache: build logs and downloaded wheels (``$QTRACE_CACHE_DIR`` overrides)."""
    base = os.environ.get("QTRACE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "qtrace"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path

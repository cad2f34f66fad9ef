"""Where qtrace's own files live: the folders it mounts into containers, and the user's cache.

Four folders go into containers: ``docker/`` (the image recipe, mounted into the build's
stages), ``gdbscripts/`` (the collector gdb runs), ``qtrace/guests/`` (the guest sources,
built in the capture's container) and ``qtrace/backends/`` (the stub backend processes some
devices need beside QEMU, run in the capture's container). In a source checkout ``docker/``
and ``gdbscripts/`` sit beside the package and are used as they are, so an edit shows at
once. An installed qtrace
(a wheel: ``pip install .``, ``pipx install .``) carries copies of them as package data,
``qtrace/_data/docker`` and ``qtrace/_data/gdbscripts``, put there at build time by the build
hook in ``setup.py``; they are read through :mod:`importlib.resources` and, since a container
can mount only a real folder the Docker daemon can see, copied once into the cache
(:func:`cache_dir`), into ``data/<version>-<digest of the files>/``. The copies hold the same
bytes, so an image's cache key (:mod:`qtrace.image.cache_key`, a digest of the recipe's
files) is the same from a wheel as from the checkout, and images built by either are reused
by both.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from qtrace import __version__
from qtrace.errors import EnvironmentProblem

__all__ = [
    "checkout_root",
    "docker_dir",
    "gdbscripts_dir",
    "guests_dir",
    "backends_dir",
    "cache_dir",
    "bundled_tree_digest",
]

BUNDLED_FOLDER = "_data"
"""The folder of the ``qtrace`` package in which a wheel carries ``docker/`` and
``gdbscripts/`` (see ``setup.py``)."""

_SKIP = {"__pycache__"}


def checkout_root() -> Path | None:
    """The source checkout qtrace runs from, or ``None`` for an installed qtrace."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "gdbscripts").is_dir():
        return root
    return None


def cache_dir() -> Path:
    """Per-user cache: build logs, downloaded wheels, the mountable copies of qtrace's
    folders (``$QTRACE_CACHE_DIR`` overrides; else ``$XDG_CACHE_HOME/qtrace`` or
    ``~/.cache/qtrace``)."""
    base = os.environ.get("QTRACE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "qtrace"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _files(tree: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    """(relative path, file) for every file under ``tree``, sorted; caches left out."""
    out: list[tuple[str, Traversable]] = []
    for child in tree.iterdir():
        if child.name in _SKIP or child.name.endswith(".pyc"):
            continue
        if child.is_dir():
            out += _files(child, f"{prefix}{child.name}/")
        else:
            out.append((f"{prefix}{child.name}", child))
    return sorted(out, key=lambda item: item[0])


def bundled_tree_digest(tree: Traversable) -> str:
    """Digest of a folder's files (relative paths and bytes), which names its cached copy."""
    digest = hashlib.sha256()
    for relative, file in _files(tree):
        digest.update(relative.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _mountable(tree: Traversable, name: str) -> Path:
    """A real folder with ``tree``'s files: the cached copy, made on first use.

    The copy is written beside its final name and renamed into place, so a copy cut short
    is never used and two qtrace processes making it at once both end with a whole one.
    Shell scripts keep an executable bit (they are also run with ``bash``).
    """
    target = cache_dir() / "data" / f"{__version__}-{bundled_tree_digest(tree)}" / name
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide it from a container's other users
    try:
        for relative, file in _files(tree):
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(file.read_bytes())
            if relative.endswith(".sh"):
                path.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent copy that won: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _folder(name: str, what: str) -> Path:
    """``docker`` or ``gdbscripts``: the checkout's folder, else the wheel's copy, cached."""
    root = checkout_root()
    if root is not None:
        return root / name
    bundled = resources.files("qtrace") / BUNDLED_FOLDER / name
    if not bundled.is_dir():
        raise EnvironmentProblem(
            f"{what} ({name}/) is missing from this qtrace installation.",
            hint="Reinstall qtrace from its wheel or source (pip install .), not a bare copy "
            "of the qtrace package.",
        )
    return _mountable(bundled, name)


def docker_dir() -> Path:
    """Scripts and package lists that build the image."""
    return _folder("docker", "The image definition")


def gdbscripts_dir() -> Path:
    """The collector that runs inside gdb."""
    return _folder("gdbscripts", "The gdb collector")


def guests_dir() -> Path:
    """Guest sources (probe, linux initramfs recipe) built inside the image."""
    if checkout_root() is not None:
        return Path(__file__).resolve().parent / "guests"
    return _mountable(resources.files("qtrace.guests"), "guests")


def backends_dir() -> Path:
    """The stub backend processes (:mod:`qtrace.backends`), run inside the capture container."""
    if checkout_root() is not None:
        return Path(__file__).resolve().parent / "backends"
    return _mountable(resources.files("qtrace.backends"), "backends")

"""Cache keys for built images: what went into an image decides whether it can be reused.

The key covers the image recipe (every file in ``docker/``), the QEMU source (the Debian
version, or a content hash of a local tree) and the build options. Changing any of them
makes a new key, so a stale image is never mistaken for a current one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["recipe_digest", "tree_digest", "cache_key"]

# Folders of a source tree that are outputs or VCS state, not source.
_SKIP_DIRS = {".git", "build", "__pycache__", ".cache"}


def _hash_files(paths: Iterable[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def recipe_digest(recipe: Path, names: tuple[str, ...]) -> str:
    """Digest of the named recipe files only, so a change to another stage's script keeps
    this stage's image."""
    return cache_key(*(f"{name}:{(recipe / name).read_bytes().hex()}" for name in names))


def tree_digest(source_dir: Path) -> str:
    """Content hash of a local QEMU tree (build outputs and .git left out)."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(source_dir):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                files.append(path)
    return _hash_files(files, source_dir)


def cache_key(*parts: str) -> str:
    """Combine the ingredients of an image into one short key."""
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return digest[:16]

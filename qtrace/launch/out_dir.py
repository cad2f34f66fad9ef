"""The run directory rule: a capture writes only into a new or an empty directory.

Evidence of two runs must never mix (a stale ``serial.log`` or ``trace.jsonl`` next to a
new manifest would be read as this run's), so ``--out`` must be a path that does not exist
yet (it is created, with its parents) or an empty directory. Anything else is refused
before anything is written, with what was wrong and what to do.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from qtrace.errors import UsageError

__all__ = ["check_out_dir", "create_out_dir", "remove_created", "OUT_DIR_RULE"]

OUT_DIR_RULE = "--out must be a directory that does not exist yet (it is created) or an empty one"
_HINT = (
    "Pass a new path with --out "
    "(or leave --out out: captures/<device>-<accel>-<utc>/ is new each run)."
)


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path("/")


def check_out_dir(path: Path) -> None:
    """Refuse an output path a capture cannot own; writes nothing.

    Raises:
        UsageError: the path is a file, a non-empty directory, or cannot be created or
            written (read-only filesystem, no permission, a parent that is a file).
    """
    if path.is_symlink() and not path.exists():
        raise UsageError(f"--out {path} is a dangling symbolic link; {OUT_DIR_RULE}.", hint=_HINT)
    if path.exists() and not path.is_dir():
        raise UsageError(
            f"--out {path} is an existing file, not a directory; {OUT_DIR_RULE}.", hint=_HINT
        )
    if path.is_dir():
        entries = sorted(p.name for p in path.iterdir())
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise UsageError(
                f"--out {path} is not empty ({len(entries)} entries: {shown}); {OUT_DIR_RULE}, "
                "so that the evidence of two runs never mixes.",
                hint=_HINT + " Or remove that directory first.",
            )
        _require_writable(path, path)
        return
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise UsageError(
            f"--out {path} cannot be created: {ancestor} is a file, not a directory.", hint=_HINT
        )
    _require_writable(ancestor, path)


def _require_writable(directory: Path, wanted: Path) -> None:
    if os.access(directory, os.W_OK | os.X_OK):
        return
    try:  # access() says no; ask the filesystem why (read-only, or permissions)
        statvfs = os.statvfs(directory)
        read_only = bool(statvfs.f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    why = "is on a read-only filesystem" if read_only else "is not writable by this user"
    raise UsageError(
        f"--out {wanted} cannot be written: {directory} {why}.",
        hint=_HINT + " Pick a writable place.",
    )


def create_out_dir(path: Path) -> list[Path]:
    """Create the run directory (and its parents); returns what was created, outermost first.

    Raises:
        UsageError: creating it failed after all (a race, a full disk); nothing is left.
    """
    created = [p for p in (*reversed(path.parents), path) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        remove_created(created)
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise UsageError(
            f"--out {path} cannot be created: {exc.strerror}.",
            hint="Free space there or pick another --out." if full else _HINT,
        ) from exc
    return created


def remove_created(created: list[Path]) -> None:
    """Remove the directories :func:`create_out_dir` made, if they are still empty."""
    for directory in reversed(created):
        try:
            directory.rmdir()
        except OSError:
            return

"""Links from a frame to QEMU's source on gitlab.com, at the exact release tag."""

from __future__ import annotations

import re

from qtrace.annotate.source import is_tree_path

__all__ = ["QEMU_SOURCE_BASE", "qemu_tag", "source_url"]

QEMU_SOURCE_BASE = "https://gitlab.com/qemu-project/qemu/-/blob"

# "1:10.2.2+ds-1" (a Debian version) -> "10.2.2"; "7.2" -> "7.2.0" (QEMU tags have 3 parts).
_VERSION = re.compile(r"^(?:\d+:)?(\d+)\.(\d+)(?:\.(\d+))?")


def qemu_tag(version: str) -> str | None:
    """The QEMU git tag for a version string, or ``None`` if it is not a release number."""
    match = _VERSION.match(version.strip())
    if match is None:
        return None
    major, minor, micro = match.group(1), match.group(2), match.group(3) or "0"
    return f"v{major}.{minor}.{micro}"


def source_url(version: str, file: str | None, line: int | None) -> str | None:
    """The gitlab link for ``file:line`` in QEMU ``version``.

    Only paths relative to the QEMU source root get a link: paths of other projects
    (glibc's ``./nptl/...``, absolute paths) and frames without a file get ``None``.
    Debian's patches may shift a line or two from the upstream tag.
    """
    tag = qemu_tag(version)
    if tag is None or file is None or not is_tree_path(file):
        return None
    anchor = f"#L{line}" if line is not None else ""
    return f"{QEMU_SOURCE_BASE}/{tag}/{file}{anchor}"

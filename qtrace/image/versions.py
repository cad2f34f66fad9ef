"""QEMU versions: which ones Debian's source archive offers, and resolving a user's request.

Debian names versions like ``1:10.2.2+ds-1`` or ``1:7.2+dfsg-7+deb12u18``; users say
``10.2.2`` or ``7.2``. The list comes from ``apt-cache showsrc qemu`` inside the toolchain
image (stored as an image label), so it follows the archive, not a table in this file.
The index can list versions the archive no longer serves; the builder tries candidates
newest first and falls back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from qtrace.errors import UnknownQemuVersion

__all__ = ["DEFAULT_QEMU_VERSION", "upstream_version", "available_versions", "resolve_version"]

DEFAULT_QEMU_VERSION = "10.2.2"

_DEBIAN_VERSION = re.compile(
    r"^(?:\d+:)?(?P<upstream>\d+(?:\.\d+)*)(?:[+~][^-]*)?(?:-(?P<revision>.+))?$"
)


def upstream_version(debian_version: str) -> str | None:
    """``1:10.2.2+ds-1`` -> ``10.2.2``; ``None`` when the string is not a QEMU version."""
    match = _DEBIAN_VERSION.match(debian_version.strip())
    return match.group("upstream") if match else None


def _sort_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def available_versions(debian_versions: Iterable[str]) -> list[str]:
    """Distinct upstream versions, oldest first."""
    found = {v for v in (upstream_version(d) for d in debian_versions) if v}
    return sorted(found, key=_sort_key)


def resolve_version(requested: str, debian_versions: Iterable[str]) -> list[str]:
    """The Debian versions that provide ``requested``, best (newest revision) first.

    Raises:
        UnknownQemuVersion: no listed Debian version has that upstream version.
    """
    listed = list(debian_versions)
    candidates = [d for d in listed if upstream_version(d) == requested.strip()]
    if not candidates:
        raise UnknownQemuVersion(requested, available_versions(listed))
    # Later entries of apt's list are not ordered; prefer the one with the longest
    # revision string last-resort, but mostly there is just one per upstream version.
    return sorted(set(candidates), key=_revision_key, reverse=True)


def _revision_key(debian_version: str) -> tuple[tuple[int, ...], str]:
    numbers = tuple(int(n) for n in re.findall(r"\d+", debian_version))
    return numbers, debian_version

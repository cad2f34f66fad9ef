"""The QEMU source tree inside the capture container, read by discovery and the snippets.

The container itself is the shared :class:`~qtrace.docker_env.LabelledContainer` (one per
capture, kind ``capture``: it idles while qtrace builds the guest, reads the source and
runs gdb in it with ``exec``; no network, only ``/dev/kvm`` when KVM is used).
"""

from __future__ import annotations

from qtrace.docker_env import LabelledContainer
from qtrace.errors import LaunchFailure
from qtrace.image.layout import QEMU_SOURCE_ROOT

__all__ = ["ContainerSource"]


class ContainerSource:
    """The QEMU source tree inside the image, as a :class:`qtrace.discover.device.SourceReader`."""

    def __init__(self, container: LabelledContainer, root: str = QEMU_SOURCE_ROOT) -> None:
        self._container = container
        self._root = root.rstrip("/")
        self._cache: dict[str, str] = {}

    def read(self, path: str) -> str:
        if path not in self._cache:
            self._cache[path] = self._container.read_file(f"{self._root}/{path}")
        return self._cache[path]

    def grep(self, fixed_string: str, under: tuple[str, ...]) -> list[str]:
        result = self._container.exec(
            ["grep", "-rlF", "--include=*.c", "--include=*.h", "--", fixed_string, *under],
            workdir=self._root,
        )
        if result.exit_code not in (0, 1):
            raise LaunchFailure(f"grep in the QEMU source failed: {result.output.strip()[:200]}")
        return sorted(line.strip() for line in result.output.splitlines() if line.strip())

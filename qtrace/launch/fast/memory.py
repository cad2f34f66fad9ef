"""QEMU's memory read from the host while it runs: the agent's frame counter and its buffer.

Why: a long fast run drains the agent's buffer before it fills (:mod:`.run`). Knowing
when needs the agent's count of frames, which gdb cannot read while QEMU runs (the remote
target takes no command then) and which a ``docker exec`` per look would make slow.
Read through ``/proc/PID/mem`` of QEMU's process on the host (the collector runs as root,
with the ptrace right over the container's processes), a look costs microseconds and QEMU
is never stopped for it; a drain reads the buffer the same way, without a copy through a
file. When the host cannot read it (another pid namespace, no ptrace right), the run falls
back to timed drains and ``dd`` in the container; nothing else changes.
"""

from __future__ import annotations

import logging
import os

from qtrace.launch.kernel_events import find_qemu_pid

__all__ = ["HostMemory", "open_host_memory"]

logger = logging.getLogger(__name__)


class HostMemory:
    """Reads of one process's memory (``/proc/PID/mem``), from the host."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd: int | None = os.open(f"/proc/{pid}/mem", os.O_RDONLY)

    def read(self, address: int, size: int) -> bytes:
        """``size`` bytes at ``address``.

        Raises:
            OSError: the memory is not mapped, or the process is gone.
        """
        if self._fd is None:
            raise OSError(f"QEMU's memory (pid {self.pid}) is closed")
        data = os.pread(self._fd, size, address)
        if len(data) != size:
            raise OSError(f"read {len(data)} of {size} bytes at {address:#x} (pid {self.pid})")
        return data

    def u32(self, address: int) -> int:
        """The little-endian unsigned 32-bit integer at ``address``."""
        return int.from_bytes(self.read(address, 4), "little")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def open_host_memory(container_id: str, probe_address: int) -> HostMemory | None:
    """QEMU's memory in the container ``container_id``, if the host can read it (checked by
    reading 4 bytes at ``probe_address``); ``None`` otherwise, with the reason logged."""
    pid = find_qemu_pid(container_id)
    if pid is None:
        logger.debug("QEMU's process is not visible from here: drains are timed")
        return None
    try:
        memory = HostMemory(pid)
    except OSError as exc:
        logger.debug("cannot open QEMU's memory (pid %d): %s", pid, exc)
        return None
    try:
        memory.u32(probe_address)
    except OSError as exc:
        logger.debug("cannot read QEMU's memory (pid %d): %s", pid, exc)
        memory.close()
        return None
    return memory

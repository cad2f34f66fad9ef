"""Reading a process's memory from the host (qtrace.launch.fast.memory), on this test
process itself: the fast run reads QEMU's frame counter and buffer the same way, and falls
back to timed drains when the host cannot; both sides of that choice are checked here
without QEMU."""

from __future__ import annotations

import ctypes
import os
import secrets

import pytest

from qtrace.launch.fast import memory
from qtrace.launch.fast.memory import HostMemory, open_host_memory

KNOWN = bytes(range(0x41, 0x41 + 24))


def test_host_memory_reads_the_bytes_at_an_address() -> None:
    buffer = ctypes.create_string_buffer(KNOWN, len(KNOWN))
    mem = HostMemory(os.getpid())
    try:
        assert mem.read(ctypes.addressof(buffer), len(KNOWN)) == KNOWN
        assert mem.read(ctypes.addressof(buffer) + 5, 3) == KNOWN[5:8]
    finally:
        mem.close()


def test_u32_reads_a_little_endian_counter() -> None:
    """The agent's frame counter is a u32 (run.FRAMES_CREATED)."""
    counter = ctypes.c_uint32(0x8008_0783)
    mem = HostMemory(os.getpid())
    try:
        assert mem.u32(ctypes.addressof(counter)) == counter.value
        counter.value = 36_812  # the process changes it: the next look sees the new count
        assert mem.u32(ctypes.addressof(counter)) == 36_812
    finally:
        mem.close()


def test_reading_an_unmapped_address_raises_oserror() -> None:
    mem = HostMemory(os.getpid())
    try:
        with pytest.raises(OSError):
            mem.read(0, 4)
    finally:
        mem.close()


def test_a_closed_memory_raises_oserror_and_closes_again_quietly() -> None:
    counter = ctypes.c_uint32(7)
    mem = HostMemory(os.getpid())
    mem.close()
    with pytest.raises(OSError, match="closed"):
        mem.u32(ctypes.addressof(counter))
    mem.close()  # a second close is harmless (the run closes it after its last drain)


def test_a_container_with_no_qemu_process_has_no_host_memory() -> None:
    """The usual fallback: QEMU runs in another pid namespace, or not at all."""
    assert open_host_memory(secrets.token_hex(32), probe_address=0) is None


def test_host_memory_is_offered_only_when_its_probe_read_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The process is found (here: this one) but a read is what says the host may look:
    an unreadable probe address gives the timed fallback, a readable one the memory."""
    monkeypatch.setattr(memory, "find_qemu_pid", lambda container_id: os.getpid())
    assert open_host_memory("c0ffee", probe_address=0) is None
    counter = ctypes.c_uint32(41)
    got = open_host_memory("c0ffee", probe_address=ctypes.addressof(counter))
    assert got is not None
    try:
        assert got.pid == os.getpid() and got.u32(ctypes.addressof(counter)) == counter.value
    finally:
        got.close()


def test_a_process_that_cannot_be_opened_has_no_host_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pid no process has: /proc/PID/mem does not exist (a process gone between look-ups).
    with open("/proc/sys/kernel/pid_max", encoding="ascii") as pid_max:
        unused = int(pid_max.read()) + 1
    monkeypatch.setattr(memory, "find_qemu_pid", lambda container_id: unused)
    assert open_host_memory("c0ffee", probe_address=0) is None

"""Devices QEMU serves only in part, captured for real with qtrace's stub backend beside QEMU.

A vhost-user device's virtqueues belong to a back-end process; ivshmem-doorbell gets its
shared memory and eventfds from an ivshmem server. The capture starts qtrace's stub
(``qtrace/backends/``) in its container before QEMU and stops it afterwards. Checked: the
capture ends ok with the register accesses going through the device's own discovered
handlers, the stub answered the front-end (its log shows the conversation), the summary says
what it served in QEMU's place, and it was stopped, also when the capture ended early.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from qtrace.launch.capture import CaptureResult
from qtrace.trace.codec import read_trace
from tests.integration.test_any_device import _ok_trace, _through_discovered_handlers

Capture = Callable[..., CaptureResult]


def _backend(result: CaptureResult) -> tuple[dict[str, Any], str]:
    """The one backend of the capture (from summary.json) and its log."""
    summary = json.loads((result.out_dir / "summary.json").read_text())
    (backend,) = summary["backends"]
    return backend, (result.out_dir / backend["log"]).read_text()


def _stopped(result: CaptureResult, backend: dict[str, Any], log: str) -> None:
    """Gone before the container was: ended on SIGTERM, its socket removed."""
    assert backend["ended"] == "terminated", backend
    assert log.rstrip().endswith("stopped (SIGTERM)"), log[-300:]
    assert not list(result.out_dir.glob("*.sock")), "the socket is removed on the way out"


def test_a_vhost_user_device_is_captured_with_the_stub_serving_its_queues(
    capture: Capture,
) -> None:
    result = capture("vhost-user-blk-pci", "kvm")
    trace = _ok_trace(result)
    _through_discovered_handlers(trace)
    handlers = {a.handler for a in trace.accesses}
    assert {"virtio_pci_common_read", "virtio_pci_device_read"} <= handlers, handlers
    backend, log = _backend(result)
    assert backend["name"] == "vhost-user" and "not by QEMU" in backend["serves"]
    # the front-end's handshake and its read of the block configuration, answered
    for request in ("GET_FEATURES", "GET_PROTOCOL_FEATURES", "SET_OWNER", "GET_CONFIG"):
        assert f"{request} " in log, request
    assert "-> reply" in log
    _stopped(result, backend, log)
    argv = json.loads((result.out_dir / "manifest.json").read_text())["argv"]
    assert any(arg.startswith("socket,id=qtrace-vhost-user0,path=") for arg in argv)


def test_ivshmem_doorbell_gets_memory_and_eventfds_from_the_stub_server(
    capture: Capture,
) -> None:
    result = capture("ivshmem-doorbell", "kvm")
    trace = _ok_trace(result)
    _through_discovered_handlers(trace)
    assert "ivshmem_io_read" in {a.handler for a in trace.accesses}
    # BAR 2 is the server's shared memory, mapped as RAM: no handler ever sees it
    shared = [r for r in trace.header.regions if r.bar == 2]
    assert shared and all(r.kind == "ram" for r in shared), shared
    assert not [a for a in trace.accesses if a.region in {r.name for r in shared}]
    backend, log = _backend(result)
    assert backend["name"] == "ivshmem-server" and "greeted (1 vectors)" in log
    _stopped(result, backend, log)


def test_the_stub_is_stopped_when_the_capture_ends_early(capture: Capture) -> None:
    result = capture("vhost-user-rng-pci", "kvm", max_hits=5)
    assert read_trace(result.out_dir / "trace.jsonl").end is not None
    backend, log = _backend(result)
    _stopped(result, backend, log)

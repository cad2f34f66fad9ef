"""Faults during a real capture: QEMU killed, Ctrl-C, timeout, bad device name.

After each: the trace is valid JSONL ending with an ``end`` record that says why, and
no container, gdb or QEMU is left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import pytest

from qtrace.image.builder import BuildResult
from qtrace.docker_env import KIND_LABEL, qtrace_containers
from qtrace.launch.capture import CaptureRequest, run_capture
from qtrace.trace import read_trace
from tests.integration.conftest import RecordingEvents, require_kvm

LONG_RUN_ROUNDS = 400_000  # quiet register reads: keeps the guest busy for a while


def _wait_for_accesses(trace: Path, at_least: int = 20, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if trace.exists() and trace.read_text().count('"type":"access"') >= at_least:
            return
        time.sleep(0.2)
    raise AssertionError(f"no accesses in {trace} after {timeout_s} s")


def _capture_containers(client: docker.DockerClient) -> list[docker.models.containers.Container]:
    return [c for c in qtrace_containers(client) if c.labels.get(KIND_LABEL) == "capture"]


def _assert_nothing_running(client: docker.DockerClient) -> None:
    assert not _capture_containers(client)
    if not os.environ.get("CI"):
        return  # on a shared developer machine other captures may be running
    leftovers = subprocess.run(["pgrep", "-f", "qemu-system-x86_64"], capture_output=True, text=True).stdout.split()
    assert not leftovers, f"QEMU processes left on the host: {leftovers}"


@pytest.mark.parametrize(
    ("victim", "closed_by_host"),
    [
        # QEMU crashes: gdb reports the exit and the collector closes the trace, or QEMU
        # lingers as an unreaped zombie and the host notices and closes it.
        (["pkill", "-KILL", "-x", "qemu-system-x86"], None),
        (["pkill", "-KILL", "-x", "gdb"], True),  # gdb crashes: the host closes the trace
    ],
    ids=["qemu-killed", "gdb-killed"],
)
def test_killed_mid_capture_keeps_a_valid_trace(
    debug_image: BuildResult,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    victim: list[str],
    closed_by_host: bool | None,
) -> None:
    out = tmp_path / "killed"
    request = CaptureRequest(device="e1000", accel="tcg", out_dir=out, load_rounds=LONG_RUN_ROUNDS, timeout_s=120)
    results = []
    worker = threading.Thread(target=lambda: results.append(run_capture(request, RecordingEvents())))
    worker.start()
    _wait_for_accesses(out / "trace.jsonl")
    (container,) = _capture_containers(docker_client)
    code, output = container.exec_run(victim)
    assert code == 0, output
    worker.join(timeout=120)
    assert results, "capture did not return after the kill"
    assert results[0].elapsed_s < 60, "a dead QEMU is noticed well before the hang timeout"
    assert results[0].status == "error"
    trace = read_trace(out)
    assert trace.end is not None and trace.end.status == "error"
    if closed_by_host is not None:
        assert (trace.end.reason or "").endswith("(closed by the host)") == closed_by_host
    assert trace.accesses
    _assert_nothing_running(docker_client)


def test_ctrl_c_exits_130_and_keeps_what_was_captured(debug_image: BuildResult, docker_client: docker.DockerClient, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    qtrace = Path(sys.executable).with_name("qtrace")
    proc = subprocess.Popen(
        [str(qtrace), "capture", "e1000", "--accel", "tcg", "--out", str(out), "--probe-rounds", str(LONG_RUN_ROUNDS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_accesses(out / "trace.jsonl")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    trace = read_trace(out)
    assert trace.end is not None and trace.end.status == "interrupted"
    assert len(trace.accesses) >= 20
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    _assert_nothing_running(docker_client)


def test_timeout_ends_the_capture_with_status_timeout(debug_image: BuildResult, docker_client: docker.DockerClient, tmp_path: Path) -> None:
    require_kvm()
    out = tmp_path / "timeout"
    result = run_capture(
        CaptureRequest(device="e1000", accel="kvm", out_dir=out, load_rounds=LONG_RUN_ROUNDS * 10, timeout_s=12),
        RecordingEvents(),
    )
    assert result.status == "timeout"
    trace = read_trace(out)
    assert trace.end is not None and trace.end.status == "timeout"
    _assert_nothing_running(docker_client)


def test_bad_device_name_is_a_clear_usage_error(debug_image: BuildResult, docker_client: docker.DockerClient, tmp_path: Path) -> None:
    qtrace = Path(sys.executable).with_name("qtrace")
    proc = subprocess.run(
        [str(qtrace), "capture", "e1001", "--accel", "tcg", "--out", str(tmp_path / "bad")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 2
    assert "Unknown device 'e1001'" in proc.stderr and "e1000" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    _assert_nothing_running(docker_client)

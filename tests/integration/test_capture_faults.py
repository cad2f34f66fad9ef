"""Faults during a real capture: QEMU or gdb killed, Ctrl-C, SIGTERM/SIGHUP, timeout, bad
device name, an output directory a capture cannot own, a full disk, a cut-off trace, a KVM
internal error.

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
from collections.abc import Iterator
from contextlib import contextmanager
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
    leftovers = subprocess.run(
        ["pgrep", "-f", "qemu-system-x86_64"], capture_output=True, text=True
    ).stdout.split()
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
    request = CaptureRequest(
        device="e1000", accel="tcg", out_dir=out, load_rounds=LONG_RUN_ROUNDS, timeout_s=120
    )
    results = []
    worker = threading.Thread(
        target=lambda: results.append(run_capture(request, RecordingEvents()))
    )
    worker.start()
    _wait_for_accesses(out / "trace.jsonl")
    (container,) = _capture_containers(docker_client)
    code, output = container.exec_run(victim)
    assert code == 0, output
    worker.join(timeout=120)
    assert results, "capture did not return after the kill"
    assert results[0].status == "error", "a dead QEMU is an error, not a hang or a timeout"
    trace = read_trace(out)
    assert trace.end is not None and trace.end.status == "error"
    if closed_by_host is not None:
        assert (trace.end.reason or "").endswith("(closed by the host)") == closed_by_host
    assert trace.accesses
    _assert_nothing_running(docker_client)


def test_ctrl_c_exits_130_and_keeps_what_was_captured(
    debug_image: BuildResult, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    out = tmp_path / "interrupted"
    returncode, stderr = _signal_a_long_capture(out, signal.SIGINT)
    assert returncode == 130, stderr
    assert "Traceback" not in stderr
    trace = read_trace(out)
    assert trace.end is not None and trace.end.status == "interrupted"
    assert len(trace.accesses) >= 20
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    _assert_nothing_running(docker_client)


def test_timeout_ends_the_capture_with_status_timeout(
    debug_image: BuildResult, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    require_kvm()
    out = tmp_path / "timeout"
    result = run_capture(
        CaptureRequest(
            device="e1000", accel="kvm", out_dir=out, load_rounds=LONG_RUN_ROUNDS * 10, timeout_s=12
        ),
        RecordingEvents(),
    )
    assert result.status == "timeout"
    trace = read_trace(out)
    assert trace.end is not None and trace.end.status == "timeout"
    _assert_nothing_running(docker_client)


def test_bad_device_name_is_a_clear_usage_error(
    debug_image: BuildResult, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
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


# ----- termination signals (issue 9): like Ctrl-C, with the signal named -----


def _qtrace() -> str:
    return str(Path(sys.executable).with_name("qtrace"))


def _signal_a_long_capture(
    out: Path, sig: signal.Signals, own_session: bool = False
) -> tuple[int, str]:
    """Start a long TCG capture, send ``sig`` once it has recorded accesses, and return its
    exit code and stderr (it is killed if it does not end within 90 s)."""
    proc = subprocess.Popen(
        [_qtrace(), "capture", "e1000", "--accel", "tcg", "--out", str(out)]
        + ["--probe-rounds", str(LONG_RUN_ROUNDS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=own_session,
    )
    try:
        _wait_for_accesses(out / "trace.jsonl")
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stderr


@pytest.mark.parametrize(
    ("sig", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["SIGTERM", "SIGHUP"]
)
def test_termination_signals_end_the_capture_like_ctrl_c(
    debug_image: BuildResult,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    sig: signal.Signals,
    exit_code: int,
) -> None:
    out = tmp_path / "signalled"
    # A session of its own: the signal reaches qtrace alone, as from `timeout` or systemd.
    returncode, stderr = _signal_a_long_capture(out, sig, own_session=True)
    assert returncode == exit_code, stderr
    assert "Traceback" not in stderr
    assert sig.name in stderr
    trace = read_trace(out)
    assert trace.end is not None and trace.end.status == "interrupted"
    assert sig.name in (trace.end.reason or ""), "the end record says what stopped the capture"
    assert len(trace.accesses) >= 20
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and sig.name in summary["reason"]
    _assert_nothing_running(docker_client)


# ----- output directories a capture cannot own (issue 9) -----


def _refused(out: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [_qtrace(), "capture", "e1000", "--accel", "tcg", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "hint:" in proc.stderr and "--out" in proc.stderr
    return proc


def test_out_that_is_a_regular_file_is_refused_and_left_alone(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    proc = _refused(target)
    assert "is an existing file, not a directory" in proc.stderr
    assert target.read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    _assert_nothing_running(docker_client)


def test_non_empty_out_is_refused_and_nothing_is_written(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    (tmp_path / "old-trace.jsonl").write_text("{}\n")
    proc = _refused(tmp_path)
    assert "is not empty" in proc.stderr and "old-trace.jsonl" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old-trace.jsonl"]
    _assert_nothing_running(docker_client)


@contextmanager
def _tmpfs(mount: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``mount`` with ``options`` for the test's length (we are root)."""
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty read-only filesystem (we are root: permissions alone would not stop us)."""
    with _tmpfs(tmp_path / "ro", "ro,size=64k") as mount:
        yield mount


def test_unwritable_out_is_refused(read_only_dir: Path, docker_client: docker.DockerClient) -> None:
    proc = _refused(read_only_dir)
    assert "read-only filesystem" in proc.stderr
    proc = _refused(read_only_dir / "run")
    assert "read-only filesystem" in proc.stderr
    assert not list(read_only_dir.iterdir())
    _assert_nothing_running(docker_client)


# ----- a full disk during the capture (issue 9) -----


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB filesystem: room for the guest build and the start of the trace only."""
    with _tmpfs(tmp_path / "tiny", "size=256k") as mount:
        yield mount


def test_a_full_disk_ends_the_capture_clearly_and_keeps_a_readable_trace(
    debug_image: BuildResult, docker_client: docker.DockerClient, tiny_disk: Path
) -> None:
    proc = subprocess.run(
        [
            _qtrace(),
            "capture",
            "e1000",
            "--accel",
            "tcg",
            "--out",
            str(tiny_disk),
            "--probe-rounds",
            str(LONG_RUN_ROUNDS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "No space left on device" in proc.stderr
    assert f"qtrace show {tiny_disk}" in proc.stderr, "the hint says how to see what was kept"
    _assert_nothing_running(docker_client)
    trace = read_trace(tiny_disk)  # valid up to its last complete line
    assert len(trace.accesses) >= 20
    shown = subprocess.run(
        [_qtrace(), "show", str(tiny_disk)], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr


# ----- corrupt or cut-off traces (issue 9) -----


def test_show_names_the_bad_line_of_a_cut_off_trace(tmp_path: Path) -> None:
    source = Path(__file__).parents[2] / "reports" / "captures" / "e1000-tcg-probe" / "trace.jsonl"
    lines = source.read_text().splitlines(keepends=True)
    cut = tmp_path / "trace.jsonl"
    cut.write_text("".join(lines[:40]) + lines[40][:25])
    proc = subprocess.run(
        [_qtrace(), "show", str(cut)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"{cut}:41:" in proc.stderr and "ends in the middle of this record" in proc.stderr
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("".join(lines[:3]) + "not a record\n")
    proc = subprocess.run(
        [_qtrace(), "show", str(garbage)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert (
        proc.returncode == 1
        and f"{garbage}:4:" in proc.stderr
        and "one JSON object per line" in proc.stderr
    )


# ----- a KVM internal error ends the capture at once (issue 16) -----


def test_a_kvm_internal_error_ends_the_capture_with_that_error(
    debug_image: BuildResult, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """Under this machine's nested KVM the iPXE ROM makes KVM give up (emulation failure);
    QEMU pauses the guest. Before: 116 s, then ``guest-hang``. The hang timeout here is
    long, so an ending by hang detection would read ``guest-hang``, not the error."""
    require_kvm()
    out = tmp_path / "firmware"
    proc = subprocess.run(
        [
            _qtrace(),
            "capture",
            "e1000",
            "--guest",
            "firmware",
            "--out",
            str(out),
            "--hang-timeout",
            "600",
            "--timeout",
            "600",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert "KVM internal error" in (out / "qemu.log").read_text(), (
        "the fault this test is about did not happen"
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "KVM internal error (Suberror: 1, emulation failure)" in proc.stdout
    assert "--accel tcg" in proc.stderr
    trace = read_trace(out)
    assert trace.end is not None and trace.end.status == "error"
    assert "Suberror: 1" in (trace.end.reason or "") and "EIP=0x" in (trace.end.reason or "")
    assert "instruction bytes" in (trace.end.reason or "")
    assert any(e.reason == "KVM_EXIT_INTERNAL_ERROR" for e in trace.exits)
    assert json.loads((out / "summary.json").read_text())["status"] == "error"
    _assert_nothing_running(docker_client)

"""The capture's backend processes, run for real on this host: a container whose ``exec`` runs
the command here (a real subclass, only its I/O seam replaced) drives the same shell snippets
and the same stub a capture runs in its container. Started, ready when the socket exists,
stopped by SIGTERM, and the failures (a process that dies, a socket that never comes)
reported with the process's own output."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from qtrace.devices.start import BackendRun
from qtrace.docker_env import ContainerSpec, ExecResult, LabelledContainer
from qtrace.errors import LaunchFailure
from qtrace.launch.backends import BACKENDS_WORKDIR, BackendProcesses

BACKENDS = Path(__file__).resolve().parents[3] / "qtrace" / "backends"


class HostContainer(LabelledContainer):
    """Runs ``exec`` on this host, with the container's two paths mapped to directories."""

    def __init__(self, out_dir: Path, workdir: Path) -> None:
        super().__init__(client=None, spec=ContainerSpec(image="none"))  # type: ignore[arg-type]
        self.paths = {"/out": str(out_dir), BACKENDS_WORKDIR: str(workdir)}
        self.commands: list[list[str]] = []

    def _host(self, text: str) -> str:
        for inside, outside in self.paths.items():
            text = text.replace(inside, outside)
        return text

    def exec(self, command: Sequence[str], workdir: str | None = None) -> ExecResult:
        argv = [self._host(part) for part in command]
        self.commands.append(argv)
        done = subprocess.run(
            argv,
            check=False,
            cwd=self._host(workdir) if workdir else None,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return ExecResult(done.returncode, done.stdout + done.stderr)


@pytest.fixture
def host(tmp_path: Path) -> HostContainer:
    out, workdir = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    workdir.mkdir()
    (workdir / "qtrace_backends").symlink_to(BACKENDS)  # as the capture mounts it
    return HostContainer(out, workdir)


def _run(**fields: Any) -> BackendRun:
    base: dict[str, Any] = {
        "name": "vhost-user",
        "argv": (
            "python3",
            "-m",
            "qtrace_backends.vhost_user",
            "--socket",
            "/out/vu.sock",
            "--config",
        ),
        "socket": "/out/vu.sock",
        "log": "backend-vhost-user.log",
        "ready_timeout_s": 10.0,
        "serves": "the queues",
    }
    return BackendRun(**{**base, **fields})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # reaped by nobody here (no init process): a zombie counts as gone
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_a_backend_is_ready_before_qemu_and_gone_after(host: HostContainer, tmp_path: Path) -> None:
    with BackendProcesses(host, (_run(),), tmp_path / "out", "/out") as processes:
        (record,) = processes.records
        assert record.ended == "running" and record.pid is not None
        assert (tmp_path / "out" / "vu.sock").is_socket(), "ready means listening"
        assert _alive(record.pid)
    assert record.ended == "terminated"
    assert not _alive(record.pid)
    assert not (tmp_path / "out" / "vu.sock").exists()
    log = (tmp_path / "out" / "backend-vhost-user.log").read_text()
    assert "listening on" in log and "stopped (SIGTERM)" in log
    assert record.as_json()["serves"] == "the queues"


def test_a_backend_that_dies_fails_the_start_with_its_output(
    host: HostContainer, tmp_path: Path
) -> None:
    bad = _run(argv=("python3", "-m", "qtrace_backends.vhost_user", "--no-such-flag"))
    processes = BackendProcesses(host, (bad,), tmp_path / "out", "/out")
    with pytest.raises(LaunchFailure, match="ended before it listened") as failure:
        processes.__enter__()
    assert any("the following arguments are required" in line for line in failure.value.log_tail)
    assert processes.records[0].ended == "had exited"


def test_a_socket_that_never_comes_times_out_and_the_process_is_stopped(
    host: HostContainer, tmp_path: Path
) -> None:
    silent = _run(argv=("sleep", "30"), ready_timeout_s=0.3)
    processes = BackendProcesses(host, (silent,), tmp_path / "out", "/out")
    with pytest.raises(LaunchFailure, match="did not listen on"):
        processes.__enter__()
    (record,) = processes.records
    assert record.ended == "terminated" and record.pid is not None
    assert not _alive(record.pid)


def test_no_backend_runs_nothing(host: HostContainer, tmp_path: Path) -> None:
    with BackendProcesses(host, (), tmp_path / "out", "/out") as processes:
        assert processes.records == []
    assert host.commands == []

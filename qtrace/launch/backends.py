"""The backend processes a capture runs beside QEMU: started before it, stopped after it.

A device whose start data names a backend (:class:`qtrace.devices.start.BackendRun`: a
vhost-user stub, an ivshmem server) gets it as a process in the capture container, started
with ``docker exec`` in the background, its output in the run directory
(``backend-<name>.log``). QEMU starts only once the process's unix socket exists (QEMU's
client chardev fails at once on a missing one). :class:`BackendProcesses` is a context
manager on the capture's :class:`contextlib.ExitStack`, unwound after gdb (QEMU gone): its
shutdown ladder is SIGTERM, a wait, SIGKILL, and removing the container (the last rung of
every ladder) ends anything left. What happened to each process is kept for ``summary.json``.

The shell snippets are fixed strings; every variable part is passed as a positional
argument, never spliced into them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import docker.errors

from qtrace.devices.start import BackendRun
from qtrace.docker_env import LabelledContainer
from qtrace.errors import LaunchFailure, QtraceError

__all__ = [
    "BACKENDS_PACKAGE_MOUNT",
    "BACKENDS_WORKDIR",
    "STOP_WAIT_S",
    "BackendProcesses",
    "BackendRecord",
]

logger = logging.getLogger(__name__)

BACKENDS_WORKDIR = "/qtrace/backends"
"""Where the backend processes run: qtrace's own (:mod:`qtrace.backends`) are mounted below it
as the package ``qtrace_backends``, which ``python3 -m`` then finds."""
BACKENDS_PACKAGE_MOUNT = f"{BACKENDS_WORKDIR}/qtrace_backends"
STOP_WAIT_S = 5.0
"""How long a backend gets to end on SIGTERM before SIGKILL."""
_POLL_S = 0.05

# $1 the log file, the rest the command: run it detached from the exec, print its pid.
_START = 'log=$1; shift; "$@" >"$log" 2>&1 </dev/null & echo $!'
# Is pid $1 running? A zombie is not (the container's init reaps it, but maybe not yet).
_ALIVE = 'alive() { s=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${s#Z}" = "$s" ]; }; '
# $1 pid, $2 socket, $3 tries: 0 ready, 3 the process ended, 4 no socket in time.
_WAIT = _ALIVE + (
    'n=$3; while [ "$n" -gt 0 ]; do [ -S "$2" ] && exit 0; '
    'alive "$1" || exit 3; sleep {poll}; n=$((n-1)); done; exit 4'
).replace("{poll}", str(_POLL_S))
# $1 pid, $2 tries: 0 ended on SIGTERM, 2 had already ended, 9 killed.
_STOP = _ALIVE + (
    'alive "$1" && kill -TERM "$1" 2>/dev/null || exit 2; n=$2; while [ "$n" -gt 0 ]; do '
    'alive "$1" || exit 0; sleep {poll}; n=$((n-1)); done; '
    'kill -KILL "$1" 2>/dev/null; exit 9'
).replace("{poll}", str(_POLL_S))
_STOPPED = {0: "terminated", 2: "had exited", 9: "killed"}


@dataclass
class BackendRecord:
    """One backend process of a capture, for ``summary.json``."""

    name: str
    argv: tuple[str, ...]
    log: str
    serves: str
    pid: int | None = None
    ended: str = "not started"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "argv": list(self.argv),
            "log": self.log,
            "serves": self.serves,
            "pid": self.pid,
            "ended": self.ended,
        }


def _tries(seconds: float) -> int:
    return max(1, round(seconds / _POLL_S))


class BackendProcesses:
    """Start ``runs`` in ``container`` on enter (each ready before the next), stop them on exit.

    Args:
        container: the capture container.
        runs: what to run, from the device's start data.
        out_dir: the run directory on the host (``backend-<name>.log`` is read from it).
        mount_out: the run directory inside the container.
    """

    def __init__(
        self,
        container: LabelledContainer,
        runs: tuple[BackendRun, ...],
        out_dir: Path,
        mount_out: str,
    ) -> None:
        self._container = container
        self._runs = runs
        self._out_dir = out_dir
        self._mount_out = mount_out.rstrip("/")
        self.records = [BackendRecord(r.name, r.argv, r.log, r.serves) for r in runs]

    def __repr__(self) -> str:
        states = ", ".join(f"{r.name}: {r.ended}" for r in self.records)
        return f"<BackendProcesses {states or 'none'}>"

    def __enter__(self) -> Self:
        try:
            for run, record in zip(self._runs, self.records, strict=True):
                self._start(run, record)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self, run: BackendRun, record: BackendRecord) -> None:
        log = f"{self._mount_out}/{run.log}"
        started = self._container.exec(["sh", "-c", _START, "sh", log, *run.argv], BACKENDS_WORKDIR)
        try:
            record.pid = int(started.output.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise LaunchFailure(
                f"the {run.name} backend did not start: {started.output.strip()[:200]}",
                started.exit_code,
            ) from exc
        record.ended = "running"
        logger.debug("backend %s started: pid %d", run.name, record.pid)
        ready = self._container.exec(
            ["sh", "-c", _WAIT, "sh", str(record.pid), run.socket, str(_tries(run.ready_timeout_s))]
        )
        if ready.exit_code != 0:
            why = (
                "ended before it listened"
                if ready.exit_code == 3
                else f"did not listen on {run.socket} within {run.ready_timeout_s:g} s"
            )
            raise LaunchFailure(
                f"the {run.name} backend process {why}", ready.exit_code, self._log_tail(run.log)
            )

    def _log_tail(self, name: str) -> list[str]:
        try:
            return (self._out_dir / name).read_text(errors="replace").splitlines()[-20:]
        except OSError:
            return []

    def close(self) -> None:
        """Stop every running backend; idempotent. A stop that fails is logged: removing the
        container ends the process anyway."""
        for record in reversed(self.records):
            if record.pid is None or record.ended != "running":
                continue
            try:
                result = self._container.exec(
                    ["sh", "-c", _STOP, "sh", str(record.pid), str(_tries(STOP_WAIT_S))]
                )
                record.ended = _STOPPED.get(result.exit_code, f"stop answered {result.exit_code}")
            except (docker.errors.DockerException, QtraceError, OSError) as exc:
                logger.warning("stopping the %s backend failed: %s", record.name, exc)
                record.ended = "left to the container's removal"
            logger.debug("backend %s: %s", record.name, record.ended)

"""gdb under MI, running inside the capture container, driven with pygdbmi.

``GdbSession`` owns the gdb process (an exec in the container) and talks MI: every command
carries a token, and a reply is read only until its own result record (never pygdbmi's
read-and-wait, which costs ~0.2 s a call). All MI traffic is appended to ``gdb.log``.
Per-hit work never crosses this channel; it stays in the collector inside gdb.
"""

from __future__ import annotations

import itertools
import socket
import select
import shlex
from collections import deque
import logging
import time
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import IO, Any

from pygdbmi.IoManager import IoManager

from qtrace.errors import CollectorError, GdbExited, GdbTimeout, LaunchFailure, StateError
from qtrace.docker_env import LabelledContainer
from qtrace.launch.exec_pipes import ExecPipes
from qtrace.launch.mi import Stop, as_stop, is_result_for, replies_in, result_error

__all__ = ["GdbSession", "GdbState", "gdb_argv", "DEFAULT_COMMAND_TIMEOUT_S"]

logger = logging.getLogger(__name__)
# gdb's MI writes a breakpoint's command list as script={"cmd",...}, which pygdbmi's parser
# does not know: it logs one warning per character (about 50,000 for the fast collector's
# tracepoint actions) and goes on; the records the host reads are unaffected.
logging.getLogger("pygdbmi.gdbmiparser").setLevel(logging.ERROR)

DEFAULT_COMMAND_TIMEOUT_S = 60.0
_POLL_S = 0.1
TARGET_LINES_KEPT = 400  # enough for QEMU's register dump after "KVM internal error"


class GdbState(Enum):
    IDLE = "idle"
    RUNNING = "running"
    EXITED = "exited"


def gdb_argv(binary: str) -> list[str]:
    """The gdb command line (MI3, no init files, quiet)."""
    return ["gdb", "--nx", "--quiet", "--interpreter=mi3", binary]


class GdbSession:
    """One gdb process in the container; use as a context manager."""

    def __init__(
        self,
        container: LabelledContainer,
        binary: str,
        log_path: Path,
        environment: dict[str, str] | None = None,
        target_log: Path | None = None,
    ) -> None:
        self._container = container
        # Where the inferior's own output goes as well, when gdb runs it through a pipe
        # (the fast collector: QEMU's and gdbserver's stderr, into the capture's qemu.log).
        self._target_log: IO[str] | None = (
            target_log.open("a", encoding="utf-8") if target_log is not None else None
        )
        self._binary = binary
        # gdb's own environment (the AMX xstate shim's LD_PRELOAD, qtrace.launch.gdb_xstate)
        self._environment = dict(environment or {})
        self._log: IO[str] = log_path.open("a", encoding="utf-8")
        self._tokens = itertools.count(1)
        self._pipes: ExecPipes | None = None
        self._io: IoManager | None = None
        self._exec_id: str | None = None
        self.state = GdbState.IDLE
        # *stopped records may arrive in the same read as a command's result; keep them.
        self._stops: deque[Stop] = deque()
        # The inferior's own output when gdb runs it through a pipe (``target remote |
        # gdbserver ...``: QEMU's stderr reaches gdb's), its latest lines.
        self._target_lines: deque[str] = deque(maxlen=TARGET_LINES_KEPT)

    def __repr__(self) -> str:
        return f"<GdbSession {self._binary} {self.state.value}>"

    def __enter__(self) -> "GdbSession":
        api = self._container.client.api
        try:
            self._exec_id = api.exec_create(
                self._container.id,
                gdb_argv(self._binary),
                environment=self._environment or None,
                stdin=True,
                stdout=True,
                stderr=True,
                tty=False,
            )["Id"]
            sock = api.exec_start(self._exec_id, socket=True)
        except Exception as exc:
            self.close()
            raise LaunchFailure(f"could not start gdb in the container: {exc}") from exc
        # docker-py wraps the hijacked connection; the raw socket is what select() needs.
        raw = getattr(sock, "_sock", None)
        if not isinstance(raw, socket.socket):
            self.close()
            raise LaunchFailure("the Docker exec API did not hand over a socket for gdb's stdio")
        self._pipes = ExecPipes(raw)
        self._io = IoManager(
            self._pipes.stdin,
            self._pipes.stdout,
            self._pipes.stderr,
            time_to_check_for_additional_output_sec=0,
        )
        self.state = GdbState.RUNNING
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- MI -----

    def command(
        self, mi_command: str, timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        """Send one MI command and read until its result record; returns every record read.

        Raises:
            GdbTimeout: no result in time. CollectorError: gdb answered ``^error``.
        """
        io = self._require_io()
        token = next(self._tokens)
        line = f"{token}{mi_command}"
        self._log.write(f"-> {line}\n")
        io.write(line, timeout_sec=timeout_s, read_response=False)
        deadline = time.monotonic() + timeout_s
        records: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            batch = self._read(_POLL_S)
            records.extend(batch)
            for record in batch:
                if is_result_for(record, token):
                    error = result_error(record)
                    if error is not None:
                        raise CollectorError(f"gdb: {mi_command}: {error}")
                    return records
            if self._pipes is not None and self._pipes.closed.is_set() and not batch:
                raise GdbExited(f"gdb exited while running {mi_command!r}")
        raise GdbTimeout(f"gdb did not answer {mi_command!r} within {timeout_s:.0f} s")

    def console(
        self, cli_command: str, timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        """Run a gdb CLI command through MI; returns the collector's JSON replies, if any."""
        return replies_in(self.command(_console_command(cli_command), timeout_s))

    def console_text(
        self, cli_command: str, timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S
    ) -> str:
        """Run a gdb CLI command through MI; returns what it printed (its console stream),
        for commands whose answer is text (``disassemble``, ``tstatus``)."""
        records = self.command(_console_command(cli_command), timeout_s)
        return "".join(
            str(r.get("payload") or "") for r in records if r.get("type") == "console"
        )

    def wait_for_stop(self, timeout_s: float) -> Stop | None:
        """Wait up to ``timeout_s`` for a ``*stopped`` record; ``None`` if none came."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._stops:
                return self._stops.popleft()
            self._read(min(_POLL_S, max(0.0, deadline - time.monotonic())))
            if self._stops:
                return self._stops.popleft()
            if self._pipes is not None and self._pipes.closed.is_set():
                raise GdbExited("gdb exited unexpectedly")
            if time.monotonic() >= deadline:
                return None

    def target_output(self) -> str:
        """The latest lines gdb passed on from outside itself (``log`` and ``target``
        stream records): under gdbserver, QEMU's own stderr (``KVM internal error``)."""
        return "".join(self._target_lines)

    def interrupt(self) -> None:
        """Stop the running inferior (``-exec-interrupt``)."""
        self.command("-exec-interrupt", timeout_s=10)

    def _read(self, timeout_s: float) -> list[dict[str, Any]]:
        io = self._require_io()
        # Wait for output ourselves, then take what is there: pygdbmi's own timeout would
        # keep reading until it expires even after the record we wait for has arrived.
        assert self._pipes is not None
        ready, _, _ = select.select([self._pipes.stdout, self._pipes.stderr], [], [], timeout_s)
        if not ready:
            return []
        records: list[dict[str, Any]] = io.get_gdb_response(
            timeout_sec=0, raise_error_on_timeout=False
        )
        for record in records:
            self._log.write(f"<- {record}\n")
            if record.get("type") in ("log", "target") and record.get("payload"):
                self._target_lines.append(str(record["payload"]))
                if self._target_log is not None:
                    self._target_log.write(str(record["payload"]))
            stop = as_stop(record)
            if stop is not None:
                self._stops.append(stop)
        if records:
            self._log.flush()
            if self._target_log is not None:
                self._target_log.flush()
        return records

    def _require_io(self) -> IoManager:
        if self._io is None or self.state is not GdbState.RUNNING:
            raise StateError(self.state.value, GdbState.RUNNING.value)
        return self._io

    # ----- shutdown -----

    def close(self, exit_timeout_s: float = 5.0) -> None:
        """Ask gdb to exit (killing QEMU); the container's removal is the hard fallback."""
        if self.state is GdbState.RUNNING and self._io is not None:
            try:
                self._io.write("-gdb-exit", timeout_sec=1, read_response=False)
                deadline = time.monotonic() + exit_timeout_s
                while (
                    self._pipes is not None
                    and not self._pipes.closed.is_set()
                    and time.monotonic() < deadline
                ):
                    self._read(_POLL_S)
            except Exception as exc:  # gdb may already be gone; the container removal follows
                logger.debug("gdb exit: %s", exc)
        if self._pipes is not None:
            self._pipes.close()
            self._pipes = None
        self._io = None
        self.state = GdbState.EXITED
        if not self._log.closed:
            self._log.close()
        if self._target_log is not None and not self._target_log.closed:
            self._target_log.close()


def _console_command(cli_command: str) -> str:
    """The MI command that runs ``cli_command`` in gdb's console interpreter."""
    escaped = cli_command.replace("\\", "\\\\").replace('"', '\\"')
    return f'-interpreter-exec console "{escaped}"'


def shell_join(argv: Sequence[str]) -> str:
    """Quote an argv for gdb's ``-exec-arguments`` (gdb starts the inferior via a shell)."""
    return " ".join(shlex.quote(a) for a in argv)

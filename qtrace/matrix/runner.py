"""Running the matrix's captures side by side, each as its own ``qtrace capture`` process.

:func:`run_matrix` is the loop: at most ``jobs`` cells at once, each result handed to
``on_done`` in the calling thread as it finishes (the caller writes it out at once), and on
Ctrl-C (a ``KeyboardInterrupt`` in the calling thread) no new cell starts, the running
captures are asked to stop through ``interrupt`` and waited for, and the results that
finished are kept. :class:`CaptureProcesses` runs one cell as a subprocess in a session of
its own (so a terminal's Ctrl-C reaches only the matrix, which forwards it exactly once)
with a hard time limit: SIGTERM (qtrace cleans up and keeps what it captured), then SIGKILL.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from qtrace.matrix.cells import Cell
from qtrace.matrix.outcome import CaptureOutput
from qtrace.matrix.reasons import Category
from qtrace.matrix.results import RunResult

__all__ = ["CaptureProcesses", "MatrixRun", "capture_command", "run_matrix"]

logger = logging.getLogger(__name__)

STOP_GRACE_S = 60.0
"""How long a capture gets to clean up after SIGTERM or Ctrl-C before SIGKILL."""


def capture_command(
    cell: Cell,
    out_dir: Path,
    timeout_s: float,
    *,
    accel: str = "auto",
    python: str = sys.executable,
) -> list[str]:
    """The ``qtrace capture`` command line for one cell (JSON summary on stdout)."""
    argv = [python, "-m", "qtrace", "capture", cell.device, "--machine", cell.machine]
    if cell.topology is not None:
        argv += ["--topology", cell.topology]
    argv += ["--qemu-version", cell.qemu_version, "--accel", accel, "--timeout", f"{timeout_s:g}"]
    return [*argv, "--json", "--out", str(out_dir)]


class CaptureProcesses:
    """Runs captures as subprocesses and can interrupt every one still running."""

    def __init__(
        self,
        command: Callable[[Cell, Path], list[str]],
        captures_dir: Path,
        hard_limit_s: float,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._command = command
        self._captures_dir = captures_dir
        self._hard_limit_s = hard_limit_s
        # Wide lines: qtrace's error and hint lines are not wrapped when read back.
        self._env = {**(env if env is not None else os.environ), "COLUMNS": "1000"}
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen[str]] = set()

    def out_dir(self, cell: Cell) -> Path:
        return self._captures_dir / cell.slug

    def run(self, cell: Cell) -> CaptureOutput:
        out_dir = self.out_dir(cell)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        argv = self._command(cell, out_dir)
        logger.debug("running %s", argv)
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self._env,
            start_new_session=True,
        )
        with self._lock:
            self._live.add(proc)
        hard_limit: float | None = None
        try:
            try:
                stdout, stderr = proc.communicate(timeout=self._hard_limit_s)
            except subprocess.TimeoutExpired:
                hard_limit = self._hard_limit_s
                stdout, stderr = _stop(proc, signal.SIGTERM)
        finally:
            with self._lock:
                self._live.discard(proc)
        return CaptureOutput(
            exit_code=proc.returncode,
            stdout=stdout,
            stderr=stderr,
            out_dir=out_dir,
            seconds=time.monotonic() - started,
            hard_limit_s=hard_limit,
        )

    def interrupt(self) -> None:
        """Send SIGINT (Ctrl-C) once to every running capture; they clean up and exit."""
        with self._lock:
            live = list(self._live)
        for proc in live:
            try:
                proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass


def _stop(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[str, str]:
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate(timeout=STOP_GRACE_S)
        return stdout, stderr + "\nqtrace capture did not stop after SIGTERM: killed\n"


@dataclass
class MatrixRun:
    """What :func:`run_matrix` did: the results kept, and why it stopped early if it did."""

    results: list[RunResult] = field(default_factory=list)
    interrupted: bool = False
    aborted: str | None = None


_NOT_THE_DEVICE = {Category.ENVIRONMENT.value, Category.QTRACE_BROKEN.value}


def _environment_failure(result: RunResult) -> bool:
    """Docker gone, a full disk, or a qtrace that cannot even import (a tree mid-edit):
    every later capture would fail the same way, whatever the device."""
    return result.category in _NOT_THE_DEVICE


def run_matrix(
    cells: Sequence[Cell],
    jobs: int,
    execute: Callable[[Cell], RunResult],
    *,
    on_start: Callable[[Cell], None] | None = None,
    on_done: Callable[[RunResult], None] | None = None,
    interrupt: Callable[[], None] | None = None,
    abort_on: Callable[[RunResult], bool] = _environment_failure,
) -> MatrixRun:
    """Run ``execute`` over ``cells``, ``jobs`` at a time, in the order given.

    A result with status ``interrupted`` (the capture was stopped by the interrupt) is not
    kept, so a resumed run does it again. A result ``abort_on`` accepts (by default an
    environment failure or a qtrace that does not start) stops the matrix: no new cell
    starts, the result is not kept (it says nothing about the device) and
    :attr:`MatrixRun.aborted` says why.
    """
    run = MatrixRun()
    stopping = threading.Event()
    gate = threading.Lock()

    def task(cell: Cell) -> RunResult | None:
        with gate:
            if stopping.is_set():
                return None
            if on_start is not None:
                on_start(cell)
        result = execute(cell)
        if abort_on(result):
            stopping.set()  # before the next cell of this worker starts
        return result

    def collect(future: Future[RunResult | None]) -> None:
        if future.cancelled():
            return
        result = future.result()
        if result is None or result.status == "interrupted":
            return
        if abort_on(result):
            if run.aborted is None:
                run.aborted = f"{result.cell.key}: {result.reason or result.detail}"
            stopping.set()
            return
        run.results.append(result)
        if on_done is not None:
            on_done(result)

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="matrix") as pool:
        pending = {pool.submit(task, cell) for cell in cells}
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    collect(future)
                if stopping.is_set():
                    for future in pending:
                        future.cancel()
        except KeyboardInterrupt:
            run.interrupted = True
            stopping.set()
            for future in pending:
                future.cancel()
            if interrupt is not None:
                interrupt()
            for future in pending:
                if not future.cancelled():
                    _collect_quietly(future, collect)
    return run


def _collect_quietly(
    future: Future[RunResult | None], collect: Callable[[Future[RunResult | None]], None]
) -> None:
    """Wait for a capture that was running at the interrupt and keep its result if it
    finished anyway (a second Ctrl-C here stops waiting)."""
    try:
        future.result()
    except KeyboardInterrupt:
        return
    collect(future)

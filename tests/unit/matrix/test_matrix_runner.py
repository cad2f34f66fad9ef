"""Running cells side by side: order, the job limit, Ctrl-C, and environment failures."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from qtrace.matrix import Cell, RunResult, capture_command, plan_cells, run_matrix
from qtrace.matrix.cells import MachineSpec
from qtrace.matrix.runner import CaptureProcesses

CELLS = plan_cells([f"d{i}" for i in range(6)], [MachineSpec("pc")], ["10.2.2"])


def _result(cell: Cell, status: str = "ok", category: str | None = None) -> RunResult:
    return RunResult(cell.device, cell.machine, cell.qemu_version, status, category=category)


def test_capture_command_asks_for_json_in_the_cells_directory() -> None:
    argv = capture_command(Cell("nvme", "q35", "7.2", "root-port"), Path("/c/x"), 90, python="py")
    assert argv == [
        "py", "-m", "qtrace", "capture", "nvme", "--machine", "q35", "--topology", "root-port",
        "--qemu-version", "7.2", "--accel", "auto", "--timeout", "90", "--json", "--out", "/c/x",
    ]  # fmt: skip
    assert "--topology" not in capture_command(Cell("e1000", "pc", "10.2.2"), Path("x"), 1)


def test_at_most_jobs_run_at_once_and_every_result_is_handed_on() -> None:
    lock, running, peak = threading.Lock(), [0], [0]

    def execute(cell: Cell) -> RunResult:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return _result(cell)

    done: list[RunResult] = []
    run = run_matrix(CELLS, 2, execute, on_done=done.append)
    assert peak[0] == 2
    assert sorted(r.device for r in run.results) == [c.device for c in CELLS]
    assert done == run.results and not run.interrupted and run.aborted is None


@pytest.mark.parametrize("category", ["environment", "qtrace does not start"])
def test_an_environment_failure_stops_the_matrix_and_is_not_kept(category: str) -> None:
    def execute(cell: Cell) -> RunResult:
        if cell.device == "d1":
            return _result(cell, "error", category)
        return _result(cell)

    run = run_matrix(CELLS, 1, execute)
    assert [r.device for r in run.results] == ["d0"]
    assert run.aborted is not None and run.aborted.startswith("d1@pc/10.2.2")


def test_ctrl_c_keeps_finished_results_and_interrupts_the_running_ones() -> None:
    interrupted = threading.Event()

    def execute(cell: Cell) -> RunResult:
        if cell.device == "d0":
            return _result(cell)
        # Ctrl-C arrives while this capture runs; it ends "interrupted" once told to stop.
        threading.Timer(0.1, signal.raise_signal, (signal.SIGINT,)).start()
        if not interrupted.wait(timeout=10):
            return _result(cell)
        return _result(cell, "interrupted")

    run = run_matrix(CELLS, 1, execute, interrupt=interrupted.set)
    assert run.interrupted
    assert [r.device for r in run.results] == ["d0"]


def test_capture_processes_stop_a_command_at_the_hard_limit(tmp_path: Path) -> None:
    script = "import time, sys; print('{}'); sys.stdout.flush(); time.sleep(30)"
    processes = CaptureProcesses(
        lambda cell, out: [sys.executable, "-c", script], tmp_path, hard_limit_s=0.5
    )
    output = processes.run(CELLS[0])
    assert output.hard_limit_s == 0.5
    assert output.exit_code == -signal.SIGTERM
    assert output.out_dir == tmp_path / CELLS[0].slug


def test_capture_processes_pass_the_output_back(tmp_path: Path) -> None:
    script = "import sys; print('{\"status\": \"ok\"}'); print('error: x', file=sys.stderr)"
    processes = CaptureProcesses(
        lambda cell, out: [sys.executable, "-c", script], tmp_path, hard_limit_s=30
    )
    output = processes.run(CELLS[0])
    assert (output.exit_code, output.stdout.strip(), output.stderr.strip()) == (
        0,
        '{"status": "ok"}',
        "error: x",
    )
    assert output.hard_limit_s is None

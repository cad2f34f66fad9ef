"""The device matrix: every PCI device of a QEMU build captured on each machine, as a table.

``scripts/device_matrix.py`` drives it; this package holds the parts that need no Docker:
the cells of the matrix and their shards (:mod:`~qtrace.matrix.cells`), the result of one
capture read from what ``qtrace capture --json`` left behind (:mod:`~qtrace.matrix.outcome`),
the named reason for a run that did not end ok (:mod:`~qtrace.matrix.reasons`), the results
files (:mod:`~qtrace.matrix.results`), running captures side by side
(:mod:`~qtrace.matrix.runner`) and the merged table ``reports/devices.md``
(:mod:`~qtrace.matrix.table`). It reads captures only through the trace contract
(``qtrace.trace``) and runs them only through the ``qtrace capture`` command line.
"""

from qtrace.matrix.cells import Cell, MachineSpec, Shard, parse_machines, plan_cells
from qtrace.matrix.outcome import CaptureOutput, outcome
from qtrace.matrix.reasons import short_reason
from qtrace.matrix.results import (
    RESULTS_FORMAT,
    BackendSeen,
    RegionSeen,
    ResultsFile,
    RunResult,
    read_results,
    write_results,
)
from qtrace.matrix.runner import capture_command, run_matrix
from qtrace.matrix.table import Matrix, merge, render_markdown

__all__ = [
    "RESULTS_FORMAT",
    "CaptureOutput",
    "Cell",
    "MachineSpec",
    "Matrix",
    "BackendSeen",
    "RegionSeen",
    "ResultsFile",
    "RunResult",
    "Shard",
    "capture_command",
    "merge",
    "outcome",
    "parse_machines",
    "plan_cells",
    "read_results",
    "render_markdown",
    "run_matrix",
    "short_reason",
    "write_results",
]

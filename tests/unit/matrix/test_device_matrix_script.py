"""scripts/device_matrix.py starts, and its merge step writes the table from results files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qtrace.matrix import ResultsFile, RunResult, write_results

SCRIPT = Path(__file__).parents[3] / "scripts" / "device_matrix.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


def test_help_names_the_options_and_the_merge_step() -> None:
    proc = _run("--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--machines", "--devices", "--jobs", "--shard", "--results", "--resume"):
        assert option in proc.stdout
    assert "merge" in proc.stdout
    assert "usage:" in _run("merge", "--help").stdout


def test_merge_writes_the_markdown(tmp_path: Path) -> None:
    paths = []
    for k, device in enumerate(["e1000", "vfio-pci"], start=1):
        status = "ok" if device == "e1000" else "error"
        result = RunResult(device, "pc", "10.2.2", status, reason=None if k == 1 else "needs x")
        path = tmp_path / f"shard{k}.json"
        write_results(path, ResultsFile(planned=(result.cell,), results=(result,), shard=f"{k}/2"))
        paths.append(str(path))
    out = tmp_path / "devices.md"
    proc = _run("merge", *paths, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "1 of 2 PCI devices end ok on pc (50.0%)" in out.read_text()


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    assert _run("--shard", "3/2", "--results", str(tmp_path / "r.json")).returncode == 2
    assert _run("--jobs", "0").returncode == 2
    proc = _run("merge", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.md"))
    assert proc.returncode == 1 and "cannot read" in proc.stderr

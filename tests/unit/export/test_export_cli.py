"""``qtrace export``: writes next to the trace by default, to --out, or to stdout with -."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from format_rules import chrome_trace_problems, folded_problems, speedscope_problems
from qtrace.cli.app import app

ROOT = Path(__file__).resolve().parents[3]
CAPTURE = ROOT / "reports" / "captures" / "e1000-kvm-probe"
UNTIMED = ROOT / "reports" / "captures" / "e1000-q35-probe"  # made before records had t
runner = CliRunner()


def test_each_format_is_written_into_the_capture_directory(tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    capture.mkdir()
    shutil.copy(CAPTURE / "trace.jsonl", capture / "trace.jsonl")
    for fmt, name in (
        ("perfetto", "trace.perfetto.json"),
        ("folded", "trace.folded"),
        ("speedscope", "trace.speedscope.json"),
    ):
        result = runner.invoke(app, ["export", str(capture), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert str(capture / name) in result.stdout
    assert chrome_trace_problems(json.loads((capture / "trace.perfetto.json").read_text())) == []
    assert folded_problems((capture / "trace.folded").read_text()) == []
    assert speedscope_problems(json.loads((capture / "trace.speedscope.json").read_text())) == []


def test_out_names_the_file_and_dash_is_stdout(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    trace = UNTIMED / "trace.jsonl"
    result = runner.invoke(app, ["export", str(trace), "-f", "perfetto", "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert "synthetic" in result.stderr  # this committed trace predates the t field
    assert "open it: ui.perfetto.dev" in result.stderr
    assert json.loads(target.read_text())["otherData"]["device"] == "e1000"
    result = runner.invoke(app, ["export", str(trace), "-f", "folded", "-o", "-"])
    assert result.exit_code == 0 and folded_problems(result.stdout) == []
    assert result.stdout.count("\n") == len(set(result.stdout.splitlines()))


def test_a_bad_format_or_a_missing_capture_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(CAPTURE), "--format", "svg"])
    assert result.exit_code == 2 and "svg" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "none"), "--format", "folded"])
    assert result.exit_code != 0 and "Traceback" not in result.output

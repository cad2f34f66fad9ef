"""``qtrace verify e1000 --trace FILE [--json]`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner
from verify_traces import TraceBuilder, probe_guest_trace

from qtrace.cli.app import app

runner = CliRunner()


def test_matching_trace_exits_0_with_counts(tmp_path: Path) -> None:
    path = probe_guest_trace().save(tmp_path / "trace.jsonl")
    result = runner.invoke(app, ["verify", "e1000", "--trace", str(path)])
    assert result.exit_code == 0, result.output
    assert "accesses replayed" in result.stdout and "13" in result.stdout
    assert "no mismatch" in result.stdout


def test_altered_read_exits_4_naming_register_and_values(tmp_path: Path) -> None:
    t = probe_guest_trace()
    t.read(0x0008, 0x80080783 ^ 0x1)  # STATUS with FD flipped
    path = t.save(tmp_path / "trace.jsonl")
    result = runner.invoke(app, ["verify", "e1000", "--trace", str(path)])
    assert result.exit_code == 4
    assert "STATUS" in result.stderr
    assert "0x80080782" in result.stderr and "0x80080783" in result.stderr
    assert "STATUS" in result.stdout and "0x80080782" in result.stdout


def test_json_output_is_only_json(tmp_path: Path) -> None:
    t = probe_guest_trace().read(0x0008, 0x80080782)
    path = t.save(tmp_path / "trace.jsonl")
    result = runner.invoke(app, ["verify", "e1000", "--trace", str(path), "--json"])
    assert result.exit_code == 4
    data = json.loads(result.stdout)
    assert data["mismatch_count"] == 1 and data["accesses_replayed"] == 14
    [m] = data["mismatches"]
    assert (m["register"], m["expected"], m["actual"]) == ("STATUS", 0x80080782, 0x80080783)


def test_capture_directory_is_accepted(tmp_path: Path) -> None:
    probe_guest_trace().save(tmp_path / "trace.jsonl")
    result = runner.invoke(app, ["verify", "e1000", "--trace", str(tmp_path), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["ok"] is True


def test_unknown_device_is_a_usage_error(tmp_path: Path) -> None:
    path = TraceBuilder().save(tmp_path / "trace.jsonl")
    result = runner.invoke(app, ["verify", "rtl8139", "--trace", str(path)])
    assert result.exit_code == 2

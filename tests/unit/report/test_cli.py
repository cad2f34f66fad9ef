"""The show, report and diff commands through typer's CliRunner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from qtrace.cli.app import app

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"

runner = CliRunner()


def test_show_prints_summary_registers_and_annotated_stacks() -> None:
    result = runner.invoke(
        app, ["show", str(FIXTURES / "e1000-kvm-10.2.2")], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in (
        "EERD",
        "DATA=0x5634",
        "kvm_cpu_exec",
        "accelerator: KVM exit handling",
        "KVM_EXIT_MMIO x9",
        "KVM_EXIT_IO x4",
        "qemu_wait_io_event is not on the path",
    ):
        assert text in out, text


def test_show_missing_capture_exits_1_with_a_hint(tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", str(tmp_path)])
    assert result.exit_code == 1
    assert "error:" in result.stderr and "hint:" in result.stderr
    assert result.stdout == ""


def test_report_writes_the_requested_formats(
    fixture_capture: Callable[[str], Path], tmp_path: Path
) -> None:
    capture = fixture_capture("e1000-kvm-7.2")
    result = runner.invoke(
        app, ["report", str(capture), "--format", "md", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.md"]
    assert result.stdout.strip() == str(tmp_path / "out" / "report.md")
    result = runner.invoke(app, ["report", str(capture)])
    assert result.exit_code == 0
    assert (capture / "report.md").is_file() and (capture / "report.html").is_file()


def test_report_needs_a_capture_or_all() -> None:
    assert runner.invoke(app, ["report"]).exit_code == 2
    assert runner.invoke(app, ["report", str(FIXTURES / "e1000-kvm-7.2"), "--all"]).exit_code == 2


def test_report_all_uses_the_manifest(
    fixture_capture: Callable[[str], Path], tmp_path: Path
) -> None:
    fixture_capture("e1000-tcg-10.2.2")
    (tmp_path / "reports").mkdir()
    manifest = tmp_path / "reports" / "manifest.toml"
    manifest.write_text(
        'format = "qtrace-reports/1"\n[[report]]\nname = "t"\n'
        'capture = "captures/e1000-tcg-10.2.2"\ncommand = "qtrace capture x"\n',
        encoding="utf-8",
    )
    result = runner.invoke(app, ["report", "--all", "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "reports" / "t" / "report.html").is_file()
    assert (tmp_path / "reports" / "index.md").is_file()


def test_diff_json_is_the_only_stdout() -> None:
    result = runner.invoke(
        app, ["diff", str(FIXTURES / "e1000-kvm-7.2"), str(FIXTURES / "e1000-kvm-10.2.2"), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "mmio read"
    assert {"func": "flatview_read_continue_step", "status": "only in B"}.items() <= next(
        r for r in data["rows"] if r["func"] == "flatview_read_continue_step"
    ).items()


def test_diff_table_and_bad_kind() -> None:
    a, b = str(FIXTURES / "e1000-kvm-7.2"), str(FIXTURES / "e1000-kvm-10.2.2")
    result = runner.invoke(app, ["diff", a, b], env={"COLUMNS": "200"})
    assert (
        result.exit_code == 0
        and "file changed" in result.stdout
        and "softmmu/memory.c" in result.stdout
    )
    bad = runner.invoke(app, ["diff", a, b, "--kind", "pio write"])
    assert bad.exit_code == 1 and "pio write" in bad.stderr

"""``qtrace capture`` ends with the answer (issue 14 item 1): it writes report.md and report.html
into the run directory and prints, under its summary, the representative access's path, the
short findings and the report's path. Checked through the real CLI with the capture stage
replaced at its seam (``_run``) by a real capture's trace."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qtrace.cli import capture as capture_cli
from qtrace.cli.app import app
from qtrace.errors import ReportError
from qtrace.launch.capture import CaptureRequest, CaptureResult
from qtrace.trace.kinds import Accel, CaptureStatus

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "traces" / "e1000-kvm-10.2.2-threads"
ENV = {"COLUMNS": "160"}

runner = CliRunner()


def _captured(tmp_path: Path, status: CaptureStatus = CaptureStatus.OK) -> CaptureResult:
    out = tmp_path / "e1000-kvm-run"
    out.mkdir()
    for name in ("trace.jsonl", "source-snippets.json"):
        shutil.copy(FIXTURE / name, out / name)
    files = sorted(p.name for p in out.iterdir())
    summary = {
        "device": "e1000",
        "status": status,
        "reason": None if status is CaptureStatus.OK else "--timeout 3 s reached",
        "exit_reasons": {"KVM_EXIT_MMIO": 26},
        "files": files,
    }
    (out / "summary.json").write_text(json.dumps(summary))
    reason = None if status is CaptureStatus.OK else "--timeout 3 s reached"
    return CaptureResult(out, status, reason, Accel.KVM, 84, 16, 217, 9.5, summary)


@pytest.fixture()
def captured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CaptureResult:
    result = _captured(tmp_path)

    def run(request: CaptureRequest, build: bool, as_json: bool) -> CaptureResult:
        return result

    monkeypatch.setattr(capture_cli, "_run", run)
    return result


def test_capture_writes_the_reports_and_prints_the_answer(captured: CaptureResult) -> None:
    result = runner.invoke(app, ["capture", "e1000"], env=ENV)
    assert result.exit_code == 0, result.output
    html = captured.out_dir / "report.html"
    assert html.is_file() and (captured.out_dir / "report.md").is_file()
    out = result.stdout
    summary_at = out.index("KVM exits recorded")
    answer_at = out.index("One access, end to end: access 291")
    assert summary_at < answer_at, "the answer is under the summary"
    answer = out[answer_at:]
    for text in (
        "kvm_vcpu_thread_fn  accel/kvm/kvm-accel-ops.c:53",
        "kvm_cpu_exec  accel/kvm/kvm-all.c:3248",
        "memory_region_dispatch_read  system/memory.c:1485",
        "e1000_mmio_read  hw/net/e1000.c:1310",
        "synchronous",
        "coalesced        9 writes made no exit",
        "other threads    main loop: timer run e1000_mit_timer (armed on CPU 0/KVM)",
    ):
        assert text in answer, text
    assert answer.rstrip().splitlines()[-1] == f"report           {html}"
    summary = json.loads((captured.out_dir / "summary.json").read_text())
    assert {"report.md", "report.html", "trace.jsonl"} <= set(summary["files"])


def test_json_output_only_lists_the_new_files(captured: CaptureResult) -> None:
    before = dict(captured.summary)
    result = runner.invoke(app, ["capture", "e1000", "--json"], env=ENV)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["files"] == sorted([*before["files"], "report.html", "report.md"])
    assert {k: v for k, v in printed.items() if k != "files"} == {
        k: v for k, v in before.items() if k != "files"
    }
    assert (captured.out_dir / "report.html").is_file()


def test_a_capture_that_did_not_end_ok_still_gets_its_report_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed_out = _captured(tmp_path, CaptureStatus.TIMEOUT)
    monkeypatch.setattr(capture_cli, "_run", lambda request, build, as_json: timed_out)
    result = runner.invoke(app, ["capture", "e1000"], env=ENV)
    assert result.exit_code == 1
    assert (timed_out.out_dir / "report.html").is_file()
    assert "One access, end to end" in result.stdout
    assert (
        "the capture ended timeout: the report covers the 84 accesses recorded until then"
        in " ".join(result.stderr.split())
    )
    assert "the capture ended timeout: --timeout 3 s reached" in result.stderr


@pytest.mark.parametrize(
    "failure", [ReportError("report template x failed"), KeyError("a bug in the report")]
)
def test_a_report_that_cannot_be_made_is_a_warning_not_a_failure(
    captured: CaptureResult, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    def broken(capture: Path) -> None:
        raise failure

    monkeypatch.setattr(capture_cli, "build_report", broken)
    result = runner.invoke(app, ["capture", "e1000"], env=ENV)
    assert result.exit_code == 0, result.output
    err = " ".join(result.stderr.split())
    assert "warning: no report:" in err and f"qtrace report {captured.out_dir}" in err
    assert "One access" not in result.stdout and "KVM exits recorded" in result.stdout
    assert not (captured.out_dir / "report.html").exists()


def test_no_accesses_no_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = {"device": "e1000", "status": CaptureStatus.OK, "exit_reasons": {}}
    empty = CaptureResult(tmp_path, CaptureStatus.OK, None, Accel.TCG, 0, 0, 0, 1.0, summary)
    monkeypatch.setattr(capture_cli, "_run", lambda request, build, as_json: empty)
    result = runner.invoke(app, ["capture", "e1000"], env=ENV)
    assert result.exit_code == 0, result.output
    assert "One access" not in result.stdout and not (tmp_path / "report.html").exists()

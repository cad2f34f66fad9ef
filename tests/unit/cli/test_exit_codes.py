"""Exit codes come only from the error tree (issue 9 item 5): a command raises, the CLI's
one wrapper renders the error and exits with the class's ``exit_code``. Checked through the
real CLI with the stage (capture, doctor) replaced at its seam, and on the source: no command
module sets an exit code of its own."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qtrace.cli import capture as capture_cli
from qtrace.cli import doctor as doctor_cli
from qtrace.cli.app import app
from qtrace.doctor import Check
from qtrace.errors import (
    CaptureFailed,
    DiscoveryError,
    DoctorFailed,
    Interrupted,
    QtraceError,
    SignalInterrupt,
)
from qtrace.launch import capture as capture_module
from qtrace.launch.capture import CaptureRequest, CaptureResult
from qtrace.trace.kinds import Accel, CaptureStatus

runner = CliRunner()
CLI_DIR = Path(capture_cli.__file__).parent


def _result(status: CaptureStatus, tmp_path: Path, hint: str | None = None) -> CaptureResult:
    summary = {"device": "e1000", "status": status, "exit_reasons": {}}
    return CaptureResult(
        tmp_path, status, "--timeout 3 s reached", Accel.TCG, 0, 0, 0, 3.0, summary, hint=hint
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (CaptureStatus.OK, 0),
        (CaptureStatus.TIMEOUT, 1),
        (CaptureStatus.GUEST_HANG, 1),
        (CaptureStatus.ERROR, 1),
        (CaptureStatus.INTERRUPTED, 1),
    ],
)
def test_a_capture_status_other_than_ok_exits_1_after_the_summary(
    status: CaptureStatus, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        capture_cli,
        "_run",
        lambda request, build, as_json: _result(status, tmp_path, "try --accel tcg"),
    )
    result = runner.invoke(app, ["capture", "e1000", "--json"], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    assert f'"status": "{status}"' in result.stdout, "the summary is printed whatever the status"
    if code:
        assert f"the capture ended {status}: --timeout 3 s reached" in result.stderr
        assert "hint: try --accel tcg" in result.stderr


@pytest.mark.parametrize(
    ("interrupt", "code", "said"),
    [
        (KeyboardInterrupt(), 130, "interrupted: stopped and cleaned up."),
        (SignalInterrupt(signal.SIGTERM), 143, "interrupted by SIGTERM"),
        (SignalInterrupt(signal.SIGHUP), 129, "interrupted by SIGHUP"),
    ],
)
def test_an_interrupt_exits_128_plus_its_signal(
    interrupt: KeyboardInterrupt, code: int, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stopped(request: CaptureRequest, build: bool, as_json: bool) -> CaptureResult:
        raise interrupt

    monkeypatch.setattr(capture_cli, "_run", stopped)
    result = runner.invoke(app, ["capture", "e1000"], env={"COLUMNS": "200"})
    assert result.exit_code == code
    assert said in result.stderr and "Traceback" not in result.output


def test_interrupted_takes_its_code_from_the_signal() -> None:
    assert Interrupted().exit_code == 130
    assert Interrupted.from_interrupt(SignalInterrupt(signal.SIGTERM)).exit_code == 143
    assert Interrupted.from_interrupt(KeyboardInterrupt()).signal_name == "SIGINT"


def test_a_doctor_with_a_failing_check_exits_3_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = [
        Check("docker daemon", "ok", "reachable"),
        Check("kvm", "warning", "no /dev/kvm", "use --accel tcg"),
    ]
    monkeypatch.setattr(doctor_cli, "run_checks", lambda version: checks)
    result = runner.invoke(app, ["doctor", "--json"], env={"COLUMNS": "200"})
    assert result.exit_code == DoctorFailed(["kvm"]).exit_code == 3
    assert result.stdout.lstrip().startswith("{"), "with --json, stdout holds only the JSON"
    assert "kvm not ok" in result.stderr and "docker daemon" not in result.stderr


def test_a_doctor_with_every_check_ok_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        doctor_cli, "run_checks", lambda version: [Check("docker daemon", "ok", "reachable")]
    )
    assert runner.invoke(app, ["doctor"]).exit_code == 0


class _Source:
    def __init__(self, text: str) -> None:
        self._text = text

    def read(self, path: str) -> str:
        return self._text


@pytest.mark.parametrize(
    "text",
    ["int main(void) { return 0; }\n", "int kvm_cpu_exec(CPUState *cpu)\n{\n    return 0;\n}\n"],
)
def test_a_kvm_source_discovery_cannot_read_is_an_error_with_a_hint(text: str) -> None:
    with pytest.raises(DiscoveryError) as info:
        capture_module._exit_cases(_Source(text), "10.2.2")  # type: ignore[arg-type]
    assert "kvm_cpu_exec" in str(info.value) and "10.2.2" in str(info.value)
    assert "--accel tcg" in (info.value.hint or "")
    assert isinstance(info.value.__cause__, ValueError)


def test_every_exit_code_of_the_tree_is_in_the_documented_table() -> None:
    documented = {
        int(code)
        for code in re.findall(r"^(\d+)\s", (CLI_DIR / "app.py").read_text(), re.MULTILINE)
    }
    classes = [CaptureFailed, DiscoveryError, DoctorFailed, *_subclasses(QtraceError)]
    codes = {cls.exit_code for cls in classes if isinstance(cls.__dict__.get("exit_code", 1), int)}
    codes |= {Interrupted(sig).exit_code for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    assert codes <= documented, codes - documented


def _subclasses(cls: type[QtraceError]) -> list[type[QtraceError]]:
    found: list[type[QtraceError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_no_command_module_sets_an_exit_code_of_its_own() -> None:
    """Only app.py's wrapper turns an error into typer.Exit(code)."""
    offenders = [
        f"{path.name}: {line.strip()}"
        for path in sorted(CLI_DIR.glob("*.py"))
        if path.name != "app.py"
        for line in path.read_text().splitlines()
        if re.search(r"typer\.Exit\(\s*(code\s*=\s*)?[^)\s]", line)
        or re.search(r"sys\.exit\(", line)
    ]
    assert not offenders, offenders

"""``qtrace capture``'s summary names each backend process that served part of the device in
QEMU's place (a vhost-user device's virtqueues), so nobody reads the trace as the whole
device."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qtrace.cli import capture as capture_cli
from qtrace.cli.app import app
from qtrace.launch.capture import CaptureRequest, CaptureResult
from tests.unit.cli.test_capture_answer import ENV, _captured

SERVES = "virtqueues are served by qtrace's stub, not by QEMU"


def test_the_summary_says_what_a_backend_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _captured(tmp_path)
    backend = {"name": "vhost-user", "serves": SERVES, "log": "backend-vhost-user.log"}
    result = dataclasses.replace(plain, summary={**plain.summary, "backends": [backend]})
    (result.out_dir / "summary.json").write_text(json.dumps(result.summary))

    def run(request: CaptureRequest, build: bool, as_json: bool) -> CaptureResult:
        return result

    monkeypatch.setattr(capture_cli, "_run", run)
    out = CliRunner().invoke(app, ["capture", "e1000"], env=ENV).stdout
    assert "backend vhost-user" in out and SERVES in out and "backend-vhost-user.log" in out


def test_the_summary_shows_what_the_collector_noted_and_a_clean_run_shows_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _captured(tmp_path)
    first = "registers read through gdb from now on: ptrace's registers differ from gdb's"
    noted = {**plain.summary, "collector_errors": 2, "collector_error_messages": [first, "x"]}
    outputs = {}
    for name, summary in (("noted", noted), ("clean", plain.summary)):
        result = dataclasses.replace(plain, summary=summary)
        (result.out_dir / "summary.json").write_text(json.dumps(result.summary))

        def run(request: CaptureRequest, build: bool, as_json: bool) -> CaptureResult:
            return result  # noqa: B023 (called before the loop goes on)

        monkeypatch.setattr(capture_cli, "_run", run)
        outputs[name] = CliRunner().invoke(app, ["capture", "e1000"], env=ENV).stdout
    squashed = " ".join(outputs["noted"].split())
    assert "collector errors" in squashed and "registers read through gdb" in squashed
    assert "collector errors" not in outputs["clean"]

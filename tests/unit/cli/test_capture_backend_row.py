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

"""The CLI surface: help text, version, and error-to-exit-code mapping."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from qtrace import __version__
from qtrace.cli.app import app
from qtrace.cli.commands import COMMAND_MODULES

runner = CliRunner()


def test_version_and_top_level_help() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("build", "capture", "doctor", "devices", "report", "show", "diff", "verify"):
        assert command in result.output


@pytest.mark.parametrize("command", COMMAND_MODULES)
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["capture", "e1000", "--accel", "warp"], "--accel must be one of"),
        (["capture", "e1000", "--machine", "isapc"], "--machine must be one of"),
        (["capture", "e1000", "--guest", "windows"], "--guest must be one of"),
    ],
)
def test_bad_capture_options_exit_2_without_traceback(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output

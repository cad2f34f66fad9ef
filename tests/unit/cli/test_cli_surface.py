"""The CLI surface: help text, version, and error-to-exit-code mapping."""

from __future__ import annotations

from enum import StrEnum

import pytest
from typer.testing import CliRunner

from qtrace import __version__
from qtrace.cli.app import app
from qtrace.cli.commands import COMMAND_MODULES
from qtrace.trace.kinds import AccelChoice, Guest, Machine, Topology

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
        (["capture", "e1000", "--accel", "warp"], "'warp' is not one of 'kvm', 'tcg', 'auto'"),
        (["capture", "e1000", "--machine", "isapc"], "'isapc' is not one of 'pc', 'q35'"),
        (
            ["capture", "e1000", "--guest", "windows"],
            "'windows' is not one of 'probe', 'linux', 'firmware'",
        ),
        (
            ["capture", "e1000", "--topology", "tree"],
            "'tree' is not one of 'root-bus', 'root-port'",
        ),
        (["capture", "e1000e", "--topology", "root-port"], "does not have"),
    ],
)
def test_bad_capture_options_exit_2_without_traceback(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("option", "kind"),
    [
        ("--accel", AccelChoice),
        ("--machine", Machine),
        ("--topology", Topology),
        ("--guest", Guest),
    ],
)
def test_capture_help_lists_the_choices_from_the_shared_enums(
    option: str, kind: type[StrEnum]
) -> None:
    result = runner.invoke(app, ["capture", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if option in line)
    assert f"<{'|'.join(kind)}>" in line

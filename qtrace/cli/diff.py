"""``qtrace diff``: how two captures reached the device for one kind of access."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from qtrace.cli.app import qtrace_command
from qtrace.cli.console import console
from qtrace.report.diff import diff_captures
from qtrace.report.terminal import diff_renderables

__all__ = ["diff"]


@qtrace_command("diff")
def diff(
    a: Annotated[Path, typer.Argument(help="Capture A (directory or trace.jsonl).")],
    b: Annotated[Path, typer.Argument(help="Capture B (directory or trace.jsonl).")],
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help=(
                "Access kind to compare: 'mmio read', 'mmio write', 'pio read', "
                "'pci-config read', ..."
            ),
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print only JSON (format qtrace-diff/1) on stdout.")
    ] = False,
) -> None:
    """Align the stacks of one access kind by layer; show frames only one side has, and
    moved frames."""
    result = diff_captures(a, b, kind)
    if as_json:
        console.print_json(json.dumps(result.to_json()))
        return
    for renderable in diff_renderables(result):
        console.print(renderable)

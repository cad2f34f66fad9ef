"""``qtrace show``: a capture in the terminal (summary, registers, annotated stacks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qtrace.cli.app import qtrace_command
from qtrace.cli.console import console
from qtrace.report.model import build_report
from qtrace.report.terminal import show_renderables

__all__ = ["show"]


@qtrace_command("show")
def show(
    capture: Annotated[
        Path,
        typer.Argument(
            help="A capture directory (captures/<device>-<accel>-<stamp>/) or its trace.jsonl."
        ),
    ],
    stacks: Annotated[
        bool, typer.Option("--stacks/--no-stacks", help="Show the annotated stacks.")
    ] = True,
) -> None:
    """Show a capture: summary, what the trace shows, accesses per register, each distinct stack."""
    report = build_report(capture)
    for renderable in show_renderables(report, stacks=stacks):
        console.print(renderable)

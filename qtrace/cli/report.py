"""``qtrace report``: Markdown and HTML reports of a capture, or of every capture in the
manifest."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from qtrace.cli.app import qtrace_command
from qtrace.cli.console import console, err_console
from qtrace.errors import UsageError
from qtrace.report.manifest import regenerate_all
from qtrace.report.model import build_report
from qtrace.report.render import write_report

__all__ = ["report"]


class ReportFormat(str, Enum):
    md = "md"
    html = "html"
    both = "both"


@qtrace_command("report")
def report(
    capture: Annotated[
        Path | None,
        typer.Argument(help="A capture directory (captures/<device>-<accel>-<stamp>/)."),
    ] = None,
    fmt: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="md, html or both.")
    ] = ReportFormat.both,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (default: the capture directory)."),
    ] = None,
    all_reports: Annotated[
        bool,
        typer.Option(
            "--all", help="Regenerate every report listed in the manifest, and reports/index.md."
        ),
    ] = False,
    manifest: Annotated[
        Path,
        typer.Option(
            "--manifest", help="The reports manifest (format qtrace-reports/1) for --all."
        ),
    ] = Path("reports/manifest.toml"),
) -> None:
    """Write report.md / report.html for a capture, or with --all every report in the manifest."""
    if all_reports == (capture is not None):
        raise UsageError(
            "give either a CAPTURE directory or --all",
            hint="qtrace report captures/<dir>  |  qtrace report --all",
        )
    if all_reports:
        written = regenerate_all(manifest)
    else:
        assert capture is not None
        formats = ("md", "html") if fmt is ReportFormat.both else (fmt.value,)
        model = build_report(capture)
        target = out or (capture if capture.is_dir() else capture.parent)
        written = write_report(model, target, formats)
    for path in written:
        console.print(str(path), markup=False, highlight=False)
    err_console.print(f"[green]wrote {len(written)} file(s)[/]")

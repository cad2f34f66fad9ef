"""``qtrace export``: a capture as a file for Perfetto / Chromium's trace viewer, flamegraph.pl
or speedscope."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qtrace.cli.app import qtrace_command
from qtrace.cli.console import console, err_console
from qtrace.export import ExportFormat, default_file_name, export_trace, timestamps_note
from qtrace.trace import read_trace

__all__ = ["export"]


@qtrace_command("export")
def export(
    capture: Annotated[
        Path,
        typer.Argument(
            help="A capture directory (captures/<device>-<accel>-<stamp>/) or its trace.jsonl."
        ),
    ],
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            help=(
                "perfetto (Chrome JSON trace events: open in ui.perfetto.dev or Chromium's "
                "DevTools Performance panel), folded (folded stacks for flamegraph.pl) or "
                "speedscope (open in speedscope)."
            ),
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help=(
                "The file to write; - for stdout. Default: trace.perfetto.json, trace.folded "
                "or trace.speedscope.json in the capture directory."
            ),
        ),
    ] = None,
) -> None:
    """Export a capture for the viewers people already use.

    perfetto is a timeline: one track per QEMU host thread (CPU 0/KVM, CPU 0/TCG, the main
    loop), every KVM exit and device access as a slice with its value, register, handler and
    stack, interrupts and DMA as instants, and an arrow from each exit to the access it
    caused. folded and speedscope are flame graphs of the accesses' stacks, one sample per
    access, frames as function (file:line).

    Traces made before records carried their time (t) are laid out in capture order at a
    fixed spacing; the export's metadata says which it is.
    """
    trace = read_trace(capture)
    text = export_trace(trace, fmt)
    if out is not None and str(out) == "-":
        console.file.write(text)
        return
    directory = capture if capture.is_dir() else capture.parent
    target = out or directory / default_file_name(fmt)
    target.write_text(text, encoding="utf-8")
    console.print(str(target), markup=False, highlight=False, soft_wrap=True)
    if fmt is ExportFormat.PERFETTO:
        err_console.print(f"timestamps: {timestamps_note(trace)}", markup=False, highlight=False)
    err_console.print(f"[green]wrote {fmt} export ({len(text):,} bytes)[/]")
    hint = _OPEN_WITH[fmt].format(file=target)
    err_console.print(f"open it: {hint}", markup=False, highlight=False, soft_wrap=True)


_OPEN_WITH = {
    ExportFormat.PERFETTO: "ui.perfetto.dev (Open trace file), or Chromium's DevTools: "
    "Performance, Load profile",
    ExportFormat.FOLDED: "flamegraph.pl {file} > flame.svg, or speedscope {file}",
    ExportFormat.SPEEDSCOPE: "speedscope {file} (npm install -g speedscope), or speedscope.app",
}

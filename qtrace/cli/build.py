"""``qtrace build``: build (or reuse) the debug QEMU image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from qtrace.image.builder import BuildRequest, build_image
from qtrace.image.versions import DEFAULT_QEMU_VERSION
from qtrace.cli.app import qtrace_command
from qtrace.cli.console import console, err_console

__all__ = ["build"]


class _ProgressEvents:
    """Draws the build's stage and ninja's step counter with rich."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("starting", total=None)
        self._last_line = ""

    def stage(self, name: str) -> None:
        self._progress.update(self._task, description=f"[bold]{name}[/]", completed=0, total=None)
        self._progress.console.print(f"[cyan]stage[/] {name}")

    def step(self, done: int, total: int) -> None:
        self._progress.update(
            self._task, description="[bold]compile[/]", completed=done, total=total
        )

    def line(self, text: str) -> None:
        if text.startswith(("cached:", "qtrace:", "base image", "toolchain image")):
            self._progress.console.print(text, markup=False, highlight=False)


@qtrace_command("build")
def build(
    qemu_version: Annotated[
        str,
        typer.Option(
            "--qemu-version",
            help="QEMU version from Debian's source packages, e.g. 10.2.2, 10.0.13, 7.2.",
        ),
    ] = DEFAULT_QEMU_VERSION,
    source: Annotated[
        Path | None,
        typer.Option(
            "--source",
            help=(
                "Build this local QEMU source tree instead (its content hash is in the cache key)."
            ),
            exists=True,
            file_okay=False,
            dir_okay=True,
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", help="Parallel compile jobs (default: number of cores).")
    ] = os.cpu_count() or 1,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even when a cached image matches.")
    ] = False,
) -> None:
    """Build qemu-system-x86_64 with --enable-debug inside a Docker image (cached).

    The image qtrace/qemu:<version>-debug holds the debug binary, the QEMU source tree at
    /src/qemu (so gdb shows source lines), firmware, gdb and a C toolchain for guests. A
    second run with the same inputs returns at once and says "cached".
    """
    request = BuildRequest(qemu_version=qemu_version, source_dir=source, jobs=jobs, force=force)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        result = build_image(request, _ProgressEvents(progress))
    if result.cached:
        console.print(f"[green]cached[/]: {result.image} is up to date ({result.elapsed_s:.1f} s)")
    else:
        console.print(
            f"[green]built[/]: {result.image} in {result.elapsed_s:.0f} s (key {result.cache_key})"
        )
        if result.base_image:
            console.print(f"base image: {result.base_image}")
        if result.log_path:
            console.print(f"build log: {result.log_path}")

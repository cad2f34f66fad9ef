"""The root typer app: global options, the command modules, and errors to exit codes.

Exit codes (documented in the README). Each comes from the error tree (``exit_code`` of a
:mod:`qtrace.errors` class; Click's own usage errors are 2): a command never sets one itself,
it raises, and :func:`qtrace_command` renders the error and exits with its code.

====  ==========================================================
0     success
1     the work failed (build, capture status other than ok, report, ...)
2     usage: a bad option, an unknown device or QEMU version, an unusable ``--out``
3     environment: Docker, KVM, or the debug image is missing; a full disk; doctor not ok
4     verify: the reference model disagrees with QEMU
130   interrupted with Ctrl-C (after cleaning up)
129   ended by SIGHUP (after cleaning up)
143   ended by SIGTERM (after cleaning up)
====  ==========================================================
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer
from rich.logging import RichHandler

from qtrace import __version__
from qtrace.cli.console import err_console
from qtrace.errors import BuildError, Interrupted, LaunchFailure, QtraceError

__all__ = ["app", "main", "qtrace_command", "render_error", "reflow_help", "GlobalOptions"]

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    help="qtrace: see how QEMU emulates a device, from the guest's access through the KVM "
    "exit and QEMU's memory API down to the device's register handler.",
)


@dataclass(frozen=True)
class GlobalOptions:
    """Options every command can read from ``ctx.obj``."""

    verbose: int = 0
    quiet: bool = False


def _version_callback(value: bool) -> None:
    if value:
        err_console.print(f"qtrace {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Annotated[
        int, typer.Option("-v", "--verbose", count=True, help="More log output (-vv: debug).")
    ] = 0,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only warnings and errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    level = (
        logging.WARNING
        if quiet
        else (logging.INFO if verbose == 1 else logging.DEBUG if verbose > 1 else logging.WARNING)
    )
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )
    ctx.obj = GlobalOptions(verbose=verbose, quiet=quiet)


def render_error(exc: QtraceError) -> None:
    """One red line (yellow for an interrupt: nothing failed), the evidence the error
    carries, and a hint."""
    if isinstance(exc, Interrupted):
        err_console.print(f"[yellow]{exc.message}[/]")
    else:
        err_console.print(f"[bold red]error:[/] {exc.message}")
    tail: list[str] = []
    if isinstance(exc, (BuildError, LaunchFailure)):
        tail = exc.log_tail
    if tail:
        err_console.print("[dim]last log lines:[/]")
        for line in tail:
            err_console.print(f"  {line}", markup=False, highlight=False)
    if exc.hint:
        err_console.print(f"[yellow]hint:[/] {exc.hint}")


_LIST_ITEM = re.compile(r"^(?:[-*]|\d+[.)])\s")


def reflow_help(doc: str | None) -> str | None:
    """A command's docstring as help text that the terminal wraps: paragraphs (separated by
    a blank line) become one line each, list items (``- ``, ``* ``, ``1. ``) one line per
    item, so the source's line breaks never show up mid-sentence.

    typer's rich help keeps the single line breaks of every paragraph after the first, and
    of the first in the commands list; ``qtrace_command`` hands it this text instead. A
    paragraph that starts with ``\\b`` (click's "do not rewrap" mark) is kept as written, and
    text after ``\\f`` is dropped, as click does.
    """
    if not doc:
        return doc
    text = inspect.cleandoc(doc).partition("\f")[0].strip()
    paragraphs: list[str] = []
    for paragraph in re.split(r"\n[ \t]*\n", text):
        if paragraph.startswith("\b"):
            paragraphs.append(paragraph)
            continue
        lines: list[str] = []
        for line in paragraph.splitlines():
            line = line.strip()
            if not lines or _LIST_ITEM.match(line):
                lines.append(line)
            elif line:
                lines[-1] += " " + line
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def qtrace_command(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """Register a command on ``app`` and map its errors to their exit codes.

    Its help is the function's docstring, reflowed (:func:`reflow_help`).

    A :class:`KeyboardInterrupt` (Ctrl-C, or the CLI's :class:`~qtrace.errors.SignalInterrupt`)
    reaching here has been cleaned up after by the stage; it becomes an
    :class:`~qtrace.errors.Interrupted` (exit 128 + the signal).
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                return fn(*a, **kw)
            except KeyboardInterrupt as exc:
                error: QtraceError = Interrupted.from_interrupt(exc)
            except QtraceError as exc:
                error = exc
            render_error(error)
            raise typer.Exit(error.exit_code)

        kwargs.setdefault("help", reflow_help(fn.__doc__))
        app.command(*args, **kwargs)(wrapper)
        return fn

    return decorate


def main() -> None:
    """Console-script entry point."""
    app()


# The command modules add themselves to ``app`` when imported.
from qtrace.cli import commands  # noqa: E402,F401

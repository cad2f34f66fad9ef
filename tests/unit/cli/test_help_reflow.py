"""Every command's --help reads as paragraphs: no line break of the source shows up in the
rendered help unless the terminal's width forced one there.

The check: a docstring (or option help) line break is a pair (last word of a source line,
first word of the next one) inside a paragraph. In the help rendered at a fixed width, a
rendered line that ends with that word and is followed by a line starting with the other is
a break at the source's position; it is allowed only when the next word would not have fit
on the line (the line's text end + a space + the word passes the text area's right edge).
Rendered at a width no paragraph reaches, no source break may survive at all, and every
paragraph's words appear in order. ``test_the_check_catches_typers_own_rendering`` runs the
same check on a command registered without the reflow, so the check is not vacuous.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from qtrace.cli.app import app, reflow_help

runner = CliRunner()
WIDTHS = (80, 100, 120)
WIDE = 1000
_LIST_ITEM = re.compile(r"^(?:[-*]|\d+[.)])\s")


def _param_helps(command: Any) -> list[str]:
    """The help of each option and argument (typer brings its own copy of click)."""
    return [p.help for p in command.params if getattr(p, "help", None)]


def _docstring(name: str) -> str:
    info = next(c for c in app.registered_commands if (c.name or "") == name)
    assert info.callback is not None
    return inspect.cleandoc(info.callback.__doc__ or "")


def _breaks(text: str) -> set[tuple[str, str]]:
    """(last word of a line, first word of the next) for each line break inside a paragraph
    of ``text`` (a list item's start is an intended break)."""
    pairs: set[tuple[str, str]] = set()
    for paragraph in re.split(r"\n[ \t]*\n", inspect.cleandoc(text)):
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        for upper, lower in zip(lines, lines[1:]):
            if not _LIST_ITEM.match(lower):
                pairs.add((upper.split()[-1], lower.split()[0]))
    return pairs


def _unforced_breaks(output: str, width: int, pairs: set[tuple[str, str]]) -> list[str]:
    """Rendered line breaks at a source break that the width did not force."""
    found: list[str] = []
    lines = output.splitlines()
    for upper, lower in zip(lines, lines[1:]):
        text = upper.rstrip()
        if text.endswith("│"):  # a panel row: the text area ends before " │"
            edge, text = len(text) - 2, text[:-1].rstrip()
        else:
            edge = width - 1  # typer pads plain help text by one column on each side
        words, next_words = text.strip("│ ").split(), lower.strip().strip("│").split()
        if not words or not next_words or (words[-1], next_words[0]) not in pairs:
            continue
        if len(text) + 1 + len(next_words[0]) <= edge:
            found.append(f"{words[-1]!r} / {next_words[0]!r} (line {text.strip()!r})")
    return found


def _help(args: list[str], width: int, target: typer.Typer = app) -> str:
    result = runner.invoke(target, [*args, "--help"], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    return result.output


def _normal(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


COMMANDS = sorted(get_command(app).commands)  # type: ignore[attr-defined]


def _texts(name: str) -> list[str]:
    command = get_command(app).commands[name]  # type: ignore[attr-defined]
    return [_docstring(name), *_param_helps(command)]


def test_every_command_is_checked() -> None:
    assert {"build", "capture", "doctor", "export", "report", "show", "verify"} <= set(COMMANDS)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", COMMANDS)
def test_help_breaks_lines_only_where_the_width_forces_it(name: str, width: int) -> None:
    pairs = set().union(*(_breaks(t) for t in _texts(name)))
    assert _unforced_breaks(_help([name], width), width, pairs) == []


@pytest.mark.parametrize("name", COMMANDS)
def test_wide_help_keeps_each_paragraph_on_one_line_with_all_its_words(name: str) -> None:
    output = _help([name], WIDE)
    rendered = _normal(output)
    for text in _texts(name):
        for upper, lower in _breaks(text):
            assert f"{upper} {lower}" in output, (upper, lower)
        for paragraph in re.split(r"\n[ \t]*\n", inspect.cleandoc(text)):
            assert _normal(paragraph) in rendered, paragraph


@pytest.mark.parametrize("width", WIDTHS)
def test_top_level_help_lists_each_command_by_its_first_paragraph(width: int) -> None:
    output = _help([], width)
    pairs = set().union(*(_breaks(_docstring(name).split("\n\n")[0]) for name in COMMANDS))
    assert _unforced_breaks(output, width, pairs) == []


def test_the_check_catches_typers_own_rendering() -> None:
    doc = """Do a thing.

    This paragraph is written on several short lines, the way
    a docstring is, and typer's rich help keeps those breaks
    in every paragraph after the first one.
    """
    raw = typer.Typer(add_completion=False)
    raw.command("thing")(lambda: None)
    raw.registered_commands[0].help = doc
    raw.command("other")(lambda: None)
    pairs = _breaks(doc)
    assert _unforced_breaks(_help(["thing"], 120, raw), 120, pairs)
    raw.registered_commands[0].help = reflow_help(doc)
    assert _unforced_breaks(_help(["thing"], 120, raw), 120, pairs) == []


def test_reflow_keeps_paragraphs_and_list_items() -> None:
    doc = """First line
    continues.

    - one item
      wrapped
    - two

    \b
    kept
    as is
    \f
    hidden"""
    assert (
        reflow_help(doc) == "First line continues.\n\n- one item wrapped\n- two\n\n\b\nkept\nas is"
    )

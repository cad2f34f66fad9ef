"""Markdown and HTML from a :class:`~qtrace.report.model.CaptureReport`, with jinja2 templates.

Templates live in ``templates/`` as files. Output is deterministic: the same trace gives
byte-identical files (the only time shown is the capture's own start time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from qtrace.errors import ReportError
from qtrace.annotate import AnnotatedFrame
from qtrace.report.guide import Guide
from qtrace.report.model import CaptureReport, Finding, PathView, RegionsView
from qtrace.report.recorded import Recorded
from qtrace.report.sequence import to_mermaid, to_svg
from qtrace.report.versions import Comparison

__all__ = [
    "FORMATS",
    "finding_rows",
    "finding_text",
    "frame_location",
    "output_names",
    "path_sentences",
    "region_sentences",
    "size_text",
    "render_comparison",
    "render_guide",
    "render_html",
    "render_markdown",
    "write_comparison",
    "write_report",
]

FORMATS = ("md", "html")


def _md_cell(value: object) -> str:
    """Text safe inside a GitHub/GitLab Markdown table cell."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_code(value: object) -> str:
    """An inline code span (table-safe) that survives backticks in the text."""
    text = str(value).replace("|", "\\|").replace("\n", " ")
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _hex(value: int | None, size: int = 4) -> str:
    if value is None:
        return ""
    return f"0x{value:0{max(size, 1) * 2}x}"


def size_text(size_bytes: int) -> str:
    """``4096`` -> ``4 KiB``; sizes that are not whole KiB or MiB stay in bytes."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size_bytes >= scale and size_bytes % scale == 0:
            return f"{size_bytes // scale} {unit}"
    return f"{size_bytes} B"


def _contains(container: object, item: object) -> bool:
    """Jinja test ``x is contains(y)``: ``y in x``."""
    try:
        return item in container  # type: ignore[operator]
    except TypeError:
        return False


def _fail(message: str) -> str:
    """Template global: stop rendering instead of writing a sentence the template lacks."""
    raise ReportError(f"report template: {message}")


@cache
def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("qtrace.report", "templates"),
        autoescape=autoescape,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(cell=_md_cell, code=_md_code, hex=_hex, size=size_text)
    env.globals["fail"] = _fail
    env.tests["contains"] = _contains
    return env


def _render(template: str, report: CaptureReport, autoescape: bool) -> str:
    sequence = report.sequence
    flow = report.threads.request if report.threads is not None else None
    request = flow.sequence() if flow is not None else None
    try:
        return (
            _environment(autoescape)
            .get_template(template)
            .render(
                r=report,
                mermaid=to_mermaid(sequence) if sequence else "",
                svg=to_svg(sequence) if sequence else "",
                request_mermaid=to_mermaid(request) if request else "",
                request_svg=to_svg(request) if request else "",
                region_lines=region_sentences(report.regions) if report.regions else [],
                path_lines=path_sentences(report.path) if report.path else [],
            )
        )
    except jinja2.TemplateError as exc:
        raise ReportError(f"report template {template} failed: {exc}") from exc


def render_markdown(report: CaptureReport) -> str:
    """The report as Markdown for a code forge (tables, a Mermaid block)."""
    return _render("report.md.j2", report, autoescape=False)


def render_html(report: CaptureReport) -> str:
    """The report as one self-contained HTML file (inline CSS/JS/SVG, no external resources)."""
    return _render("report.html.j2", report, autoescape=True)


def finding_text(finding: Finding) -> str:
    """The sentence of one finding, as every view prints it (``templates/findings.j2``)."""
    try:
        module = _environment(False).get_template("findings.j2").module
        return str(module.finding_text(finding))  # type: ignore[attr-defined]
    except jinja2.TemplateError as exc:
        raise ReportError(f"report template findings.j2 failed: {exc}") from exc


def finding_rows(finding: Finding) -> list[tuple[str, str]]:
    """The short form of one finding, as ``qtrace capture`` prints it under its summary:
    (label, text) rows, e.g. ``("coalesced", "9 writes made no exit: ...")``; a row that
    continues the one before has the label "" (``templates/findings.j2``, ``finding_rows``)."""
    try:
        module: Any = _environment(False).get_template("findings.j2").module
        text = str(module.finding_rows(finding))
    except jinja2.TemplateError as exc:
        raise ReportError(f"report template findings.j2 failed: {exc}") from exc
    rows = []
    for line in text.splitlines():
        if line.strip():
            label, _, rest = line.partition("\t")
            rows.append((label.strip(), rest.strip()))
    return rows


def frame_location(frame: AnnotatedFrame, recorded: Recorded) -> str:
    """Where a stack frame is (``file:line``), as the views print it; a handler frame the
    collector named only (the fast collector's) says so instead of ``?``
    (``templates/recorded.j2``)."""
    if frame.file is not None or frame.pc is not None or not recorded.in_accessor:
        return frame.location
    try:
        module: Any = _environment(False).get_template("recorded.j2").module
        return str(module.handler_location(recorded))
    except jinja2.TemplateError as exc:
        raise ReportError(f"report template recorded.j2 failed: {exc}") from exc


def region_sentences(view: RegionsView) -> list[str]:
    """The regions section's sentences, as every view prints them (``templates/regions.j2``):
    where register names come from, one per RAM-backed region and per empty BAR, the I/O
    regions no access reached."""
    try:
        module: Any = _environment(False).get_template("regions.j2").module
        lines = [str(module.names_text(view))]
        lines += [str(module.ram_text(row, view.accel)) for row in view.ram_backed]
        lines += [str(module.empty_text(row)) for row in view.empty_containers]
        if view.io_regions:
            lines.append(str(module.untouched_text(view)))
        if view.uncounted:
            lines.append(str(module.uncounted_text(view)))
        return lines
    except jinja2.TemplateError as exc:
        raise ReportError(f"report template regions.j2 failed: {exc}") from exc


def path_sentences(view: PathView) -> list[str]:
    """The path section's sentences (``templates/path.j2``): per device on the path its
    config accesses, bus numbers and windows (where the trace has them); then whether its code
    is on the device's access stacks."""
    try:
        module: Any = _environment(False).get_template("path.j2").module
        lines = []
        for device in view.devices:
            lines.append(str(module.device_text(device)))
            if device.secondary_bus is not None and device.subordinate_bus is not None:
                lines.append(str(module.buses_text(device)))
            if device.windows:
                lines.append(str(module.windows_text(device)))
        lines.append(str(module.stacks_text(view)))
        return lines
    except jinja2.TemplateError as exc:
        raise ReportError(f"report template path.j2 failed: {exc}") from exc


def render_guide(guide: Guide, manifest_name: str = "manifest.toml") -> str:
    """The reports guide (``reports/README.md``) from the captures' evidence."""
    try:
        return (
            _environment(False).get_template("guide.md.j2").render(g=guide, manifest=manifest_name)
        )
    except jinja2.TemplateError as exc:
        raise ReportError(f"report template guide.md.j2 failed: {exc}") from exc


def render_comparison(
    comparison: Comparison, fmt: str, manifest_name: str = "manifest.toml"
) -> str:
    """A comparison of captures (``versions.md.j2`` / ``versions.html.j2``).

    Raises:
        ReportError: an unknown format, or the template failed.
    """
    if fmt not in FORMATS:
        raise ReportError(f"unknown report format {fmt!r}; use md or html")
    template = f"versions.{fmt}.j2"
    try:
        return (
            _environment(fmt == "html")
            .get_template(template)
            .render(c=comparison, manifest=manifest_name)
        )
    except jinja2.TemplateError as exc:
        raise ReportError(f"report template {template} failed: {exc}") from exc


def write_comparison(
    comparison: Comparison,
    out_dir: Path,
    formats: Iterable[str] = FORMATS,
    stem: str = "versions",
    manifest_name: str = "manifest.toml",
) -> list[Path]:
    """Render ``comparison`` into ``out_dir`` as ``<stem>.md``/``<stem>.html``; returns the files.

    Raises:
        ReportError: an unknown format, or the directory cannot be written.
    """
    return _write_formats(
        out_dir, formats, stem, lambda fmt: render_comparison(comparison, fmt, manifest_name)
    )


def output_names(formats: Iterable[str], stem: str = "report") -> list[str]:
    """File names :func:`write_report` writes for ``formats``."""
    return [f"{stem}.{f}" for f in FORMATS if f in set(formats)]


def write_report(
    report: CaptureReport, out_dir: Path, formats: Iterable[str] = FORMATS, stem: str = "report"
) -> list[Path]:
    """Render ``report`` in ``formats`` into ``out_dir`` as ``<stem>.md``/``<stem>.html``;
    returns the files written.

    Raises:
        ReportError: an unknown format, or the directory cannot be written.
    """
    renderers = {"md": render_markdown, "html": render_html}
    return _write_formats(out_dir, formats, stem, lambda fmt: renderers[fmt](report))


def _write_formats(
    out_dir: Path, formats: Iterable[str], stem: str, render: Callable[[str], str]
) -> list[Path]:
    """Write ``<stem>.<fmt>`` for each wanted format, in FORMATS order; returns the files."""
    wanted = set(formats)
    unknown = wanted - set(FORMATS)
    if unknown:
        raise ReportError(f"unknown report format(s): {', '.join(sorted(unknown))}; use md or html")
    written = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for fmt in FORMATS:
            if fmt in wanted:
                path = out_dir / f"{stem}.{fmt}"
                path.write_text(render(fmt), encoding="utf-8")
                written.append(path)
    except OSError as exc:
        raise ReportError(f"cannot write into {out_dir}: {exc.strerror}") from exc
    return written

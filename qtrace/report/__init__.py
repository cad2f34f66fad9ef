"""Reports of a capture: the model, Markdown/HTML (jinja2 templates), terminal views, diff.

:func:`build_report` turns a capture directory into a :class:`CaptureReport`;
:func:`write_report` renders it; :func:`regenerate_all` rebuilds every report the
``reports/manifest.toml`` lists; :func:`diff_captures` aligns two captures' stacks.
"""

from qtrace.report.diff import StackDiff, diff_captures
from qtrace.report.manifest import load_manifest, regenerate_all
from qtrace.report.model import CaptureReport, build_report, report_from_trace
from qtrace.report.render import render_html, render_markdown, write_report

__all__ = [
    "CaptureReport",
    "StackDiff",
    "build_report",
    "diff_captures",
    "load_manifest",
    "regenerate_all",
    "render_html",
    "render_markdown",
    "report_from_trace",
    "write_report",
]

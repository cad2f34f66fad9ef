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
    "build_report",
    "report_from_trace",
    "CaptureReport",
    "write_report",
    "render_markdown",
    "render_html",
    "regenerate_all",
    "load_manifest",
    "diff_captures",
    "StackDiff",
]

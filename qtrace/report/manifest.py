"""The reports manifest: which published report comes from which capture, made how.

``reports/manifest.toml`` (format ``qtrace-reports/1``)::

    format = "qtrace-reports/1"

    [[report]]
    name = "e1000-kvm-10.2.2"                 # output directory: reports/<name>/
    capture = "captures/e1000-kvm-20260101T000000Z"   # relative to the project root
    command = "qtrace capture --device e1000 --accel kvm --qemu-version 10.2.2"
    formats = ["md", "html"]                  # optional; default both
    title = "..."                             # optional; shown in the index
    output = "e1000/kvm-probe"                # optional; files reports/<output>.md/.html
                                              # (default reports/<name>/report.md/.html)

    [guide]                                   # optional: reports/README.md from the captures
    path = "README.md"
    kvm = "e1000-kvm-10.2.2"                  # roles -> report names (see qtrace.report.guide)

The project root is the directory that holds ``reports/`` (the manifest's grandparent);
absolute capture paths are used as they are. :func:`regenerate_all` rebuilds every report
in name order, the guide if there is one, and ``reports/index.md``; it is deterministic.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from qtrace.errors import QtraceError, ReportError
from qtrace.report.guide import GUIDE_ROLES, CaptureEvidence, build_guide, capture_evidence
from qtrace.report.model import CaptureReport, build_report
from qtrace.report.render import FORMATS, render_guide, write_report

__all__ = [
    "MANIFEST_FORMAT",
    "ManifestEntry",
    "Manifest",
    "load_manifest",
    "regenerate_all",
    "INDEX_FILE",
]

MANIFEST_FORMAT = "qtrace-reports/1"
INDEX_FILE = "index.md"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ManifestEntry:
    """One published report."""

    name: str
    capture: Path
    command: str
    formats: tuple[str, ...] = FORMATS
    title: str = ""
    output: str = ""

    @property
    def stem(self) -> str:
        """The files' path without suffix, relative to ``reports/``."""
        return self.output or f"{self.name}/report"

    def files(self) -> list[str]:
        """The report files, relative to ``reports/``."""
        return [f"{self.stem}.{fmt}" for fmt in self.formats]


@dataclass(frozen=True)
class Manifest:
    """The manifest file and its entries, sorted by name."""

    path: Path
    entries: tuple[ManifestEntry, ...]
    guide_path: str = ""
    guide_roles: tuple[tuple[str, str], ...] = ()

    @property
    def reports_dir(self) -> Path:
        return self.path.parent


def load_manifest(path: Path) -> Manifest:
    """Read and validate a reports manifest.

    Raises:
        ReportError: the file is missing, not TOML, or an entry is invalid.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(
            f"cannot read the reports manifest {path}: {exc.strerror}",
            hint="Create reports/manifest.toml (see `qtrace report --help`) or pass --manifest.",
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ReportError(f"{path}: not valid TOML: {exc}") from exc
    if data.get("format") != MANIFEST_FORMAT:
        raise ReportError(f"{path}: must declare format = {MANIFEST_FORMAT!r}")
    root = path.resolve().parent.parent
    entries: dict[str, ManifestEntry] = {}
    for number, raw in enumerate(data.get("report", []), start=1):
        where = f"{path}: report #{number}"
        missing = [
            k
            for k in ("name", "capture", "command")
            if not isinstance(raw.get(k), str) or not raw.get(k)
        ]
        if missing:
            raise ReportError(f"{where} lacks {', '.join(missing)}")
        name = raw["name"]
        if not _NAME.match(name):
            raise ReportError(f"{where}: name {name!r} must be a plain directory name")
        if name in entries:
            raise ReportError(f"{where}: name {name!r} is used twice")
        formats = tuple(raw.get("formats", FORMATS))
        bad = set(formats) - set(FORMATS)
        if bad or not formats:
            raise ReportError(f"{where}: formats must be a non-empty list of {', '.join(FORMATS)}")
        output = str(raw.get("output", ""))
        if output and not all(_NAME.match(part) for part in output.split("/")):
            raise ReportError(f"{where}: output {output!r} must be a relative path of plain names")
        capture = Path(raw["capture"])
        entries[name] = ManifestEntry(
            name=name,
            capture=capture if capture.is_absolute() else root / capture,
            command=raw["command"],
            formats=tuple(f for f in FORMATS if f in formats),
            title=str(raw.get("title", "")),
            output=output,
        )
    guide = data.get("guide", {})
    guide_path = str(guide.get("path", "README.md")) if guide else ""
    if guide_path and not all(_NAME.match(part) for part in guide_path.split("/")):
        raise ReportError(f"{path}: guide path {guide_path!r} must be a relative path of plain names")
    roles = tuple((role, str(guide[role])) for role in GUIDE_ROLES if guide.get(role))
    unknown = [role for role in roles if role[1] not in entries]
    if unknown:
        raise ReportError(f"{path}: the guide names reports the manifest lacks: {unknown}")
    extra = set(guide) - set(GUIDE_ROLES) - {"path"}
    if extra:
        raise ReportError(f"{path}: unknown guide keys {sorted(extra)}; roles are {', '.join(GUIDE_ROLES)}")
    return Manifest(path, tuple(entries[n] for n in sorted(entries)), guide_path, roles)


def _index(manifest: Manifest) -> str:
    lines = [
        "# qtrace reports",
        "",
        f"Generated by `qtrace report --all` from `{manifest.path.name}`. Do not edit: edit the manifest and regenerate.",
        "",
        "| report | files | capture command |",
        "|---|---|---|",
    ]
    for entry in manifest.entries:
        files = ", ".join(f"[{n.rsplit('/', 1)[-1]}]({n})" for n in entry.files())
        label = (entry.title or entry.name).replace("|", "\\|")
        command = entry.command.replace("|", "\\|")
        lines.append(f"| {label} | {files} | `{command}` |")
    return "\n".join(lines) + "\n"


def _write_guide(manifest: Manifest, reports: dict[str, CaptureReport]) -> Path:
    entries = {e.name: e for e in manifest.entries}
    roles: dict[str, CaptureEvidence | None] = {}
    for role, name in manifest.guide_roles:
        entry = entries[name]
        if name in reports:
            roles[role] = capture_evidence(role, name, f"{entry.stem}.md", reports[name], entry.capture)
    path = manifest.reports_dir / manifest.guide_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_guide(build_guide(roles), manifest.path.name), encoding="utf-8")
    return path


def regenerate_all(manifest_path: Path) -> list[Path]:
    """Rebuild every report the manifest lists, then the index; returns the files written.

    Raises:
        ReportError: the manifest is invalid, or one or more reports failed (all are tried).
    """
    manifest = load_manifest(manifest_path)
    written: list[Path] = []
    failures: list[str] = []
    reports: dict[str, CaptureReport] = {}
    for entry in manifest.entries:
        try:
            report = build_report(entry.capture, command=entry.command, name=entry.name)
            target = manifest.reports_dir / entry.stem
            written += write_report(report, target.parent, entry.formats, stem=target.name)
            reports[entry.name] = report
        except QtraceError as exc:  # a bad trace is one failed entry, not the end of --all
            failures.append(f"{entry.name}: {exc.message}")
    if manifest.guide_path:
        written.append(_write_guide(manifest, reports))
    index = manifest.reports_dir / INDEX_FILE
    index.write_text(_index(manifest), encoding="utf-8")
    written.append(index)
    if failures:
        raise ReportError(
            f"{len(failures)} of {len(manifest.entries)} reports failed: " + "; ".join(failures),
            hint="Check each failing entry's capture path in the manifest.",
        )
    return written

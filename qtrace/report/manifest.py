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

    [[comparison]]                            # optional: one path compared across captures
    name = "e1000-versions"
    title = "..."
    reports = ["e1000-kvm-7.2", "e1000-kvm-10.2.2"]   # report names, in column order
    kinds = ["mmio read", "mmio write"]       # access kinds to align
    output = "e1000/versions"                 # files reports/<output>.md/.html
    formats = ["md", "html"]                  # optional; default both

    [guide]                                   # optional: reports/README.md from the captures
    path = "README.md"
    kvm = "e1000-kvm-10.2.2"                  # roles -> report names (see qtrace.report.guide)
    versions = "e1000-versions"               # optional: a comparison the guide links to

The project root is the directory that holds ``reports/`` (the manifest's grandparent);
absolute capture paths are used as they are. :func:`regenerate_all` rebuilds every report
in name order, then every comparison (:mod:`qtrace.report.versions`), the guide if there is
one, and ``reports/index.md``; it is deterministic.
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from qtrace.errors import QtraceError, ReportError
from qtrace.report.guide import (
    GUIDE_ROLES,
    CaptureEvidence,
    build_guide,
    capture_evidence,
    versions_evidence,
)
from qtrace.report.model import CaptureReport, build_report
from qtrace.report.render import FORMATS, render_guide, write_comparison, write_report
from qtrace.report.versions import Comparison, build_comparison

__all__ = [
    "INDEX_FILE",
    "MANIFEST_FORMAT",
    "ComparisonEntry",
    "Manifest",
    "ManifestEntry",
    "load_manifest",
    "regenerate_all",
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
class ComparisonEntry:
    """One published comparison of several reports' captures (e.g. QEMU versions)."""

    name: str
    reports: tuple[str, ...]
    kinds: tuple[str, ...]
    output: str
    formats: tuple[str, ...] = FORMATS
    title: str = ""

    def files(self) -> list[str]:
        """The comparison files, relative to ``reports/``."""
        return [f"{self.output}.{fmt}" for fmt in self.formats]


@dataclass(frozen=True)
class Manifest:
    """The manifest file and its entries, sorted by name."""

    path: Path
    entries: tuple[ManifestEntry, ...]
    guide_path: str = ""
    guide_roles: tuple[tuple[str, str], ...] = ()
    comparisons: tuple[ComparisonEntry, ...] = ()
    guide_versions: str = ""

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
    comparisons = _comparisons(path, data.get("comparison", []), entries)
    guide = data.get("guide", {})
    guide_path = str(guide.get("path", "README.md")) if guide else ""
    if guide_path and not all(_NAME.match(part) for part in guide_path.split("/")):
        raise ReportError(
            f"{path}: guide path {guide_path!r} must be a relative path of plain names"
        )
    roles = tuple((role, str(guide[role])) for role in GUIDE_ROLES if guide.get(role))
    unknown = [role for role in roles if role[1] not in entries]
    if unknown:
        raise ReportError(f"{path}: the guide names reports the manifest lacks: {unknown}")
    versions = str(guide.get("versions", ""))
    if versions and versions not in {c.name for c in comparisons}:
        raise ReportError(f"{path}: the guide's versions = {versions!r} names no [[comparison]]")
    extra = set(guide) - set(GUIDE_ROLES) - {"path", "versions"}
    if extra:
        raise ReportError(
            f"{path}: unknown guide keys {sorted(extra)}; roles are {', '.join(GUIDE_ROLES)}"
        )
    return Manifest(
        path,
        tuple(entries[n] for n in sorted(entries)),
        guide_path,
        roles,
        tuple(sorted(comparisons, key=lambda c: c.name)),
        versions,
    )


def _comparisons(
    path: Path, raw_list: list[dict[str, object]], entries: dict[str, ManifestEntry]
) -> list[ComparisonEntry]:
    comparisons: list[ComparisonEntry] = []
    for number, raw in enumerate(raw_list, start=1):
        where = f"{path}: comparison #{number}"
        name, output = raw.get("name"), raw.get("output")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ReportError(f"{where}: needs a plain name")
        if name in entries or name in {c.name for c in comparisons}:
            raise ReportError(f"{where}: name {name!r} is used twice")
        if not isinstance(output, str) or not all(_NAME.match(p) for p in output.split("/")):
            raise ReportError(f"{where}: output must be a relative path of plain names")
        reports, kinds = raw.get("reports"), raw.get("kinds")
        if (
            not isinstance(reports, list)
            or len(reports) < 2
            or not all(isinstance(r, str) for r in reports)
        ):
            raise ReportError(f"{where}: reports must list at least two report names")
        missing = [r for r in reports if r not in entries]
        if missing:
            raise ReportError(f"{where}: names reports the manifest lacks: {missing}")
        if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
            raise ReportError(f'{where}: kinds must list access kinds, e.g. ["mmio read"]')
        formats = raw.get("formats", list(FORMATS))
        if not isinstance(formats, list) or not formats or set(formats) - set(FORMATS):
            raise ReportError(f"{where}: formats must be a non-empty list of {', '.join(FORMATS)}")
        comparisons.append(
            ComparisonEntry(
                name=name,
                reports=tuple(reports),
                kinds=tuple(kinds),
                output=output,
                formats=tuple(f for f in FORMATS if f in formats),
                title=str(raw.get("title", "")),
            )
        )
    return comparisons


def _relative_link(from_stem: str, to_file: str) -> str:
    """A link from the file ``<from_stem>.*`` to ``to_file`` (both relative to ``reports/``)."""
    return posixpath.relpath(to_file, posixpath.dirname(from_stem) or ".")


def _write_comparison(
    manifest: Manifest, comparison: ComparisonEntry
) -> tuple[Comparison, list[Path]]:
    entries = {e.name: e for e in manifest.entries}
    captures = [
        (
            entries[r].capture,
            _relative_link(comparison.output, f"{entries[r].stem}.md"),
            entries[r].command,
        )
        for r in comparison.reports
    ]
    model = build_comparison(
        comparison.name,
        comparison.title or comparison.name,
        captures,
        list(comparison.kinds),
        root=manifest.path.resolve().parent.parent,
    )
    target = manifest.reports_dir / comparison.output
    written = write_comparison(
        model, target.parent, comparison.formats, stem=target.name, manifest_name=manifest.path.name
    )
    return model, written


def _index(manifest: Manifest) -> str:
    lines = [
        "# qtrace reports",
        "",
        f"Generated by `qtrace report --all` from `{manifest.path.name}`. "
        f"Do not edit: edit the manifest and regenerate.",
        "",
        "| report | files | capture command |",
        "|---|---|---|",
    ]
    for entry in manifest.entries:
        files = ", ".join(f"[{n.rsplit('/', 1)[-1]}]({n})" for n in entry.files())
        label = (entry.title or entry.name).replace("|", "\\|")
        command = entry.command.replace("|", "\\|")
        lines.append(f"| {label} | {files} | `{command}` |")
    if manifest.comparisons:
        lines += ["", "| comparison | files | of the captures of |", "|---|---|---|"]
        for comparison in manifest.comparisons:
            files = ", ".join(f"[{n.rsplit('/', 1)[-1]}]({n})" for n in comparison.files())
            label = (comparison.title or comparison.name).replace("|", "\\|")
            lines.append(f"| {label} | {files} | {', '.join(comparison.reports)} |")
    return "\n".join(lines) + "\n"


def _write_guide(
    manifest: Manifest, reports: dict[str, CaptureReport], comparisons: dict[str, Comparison]
) -> Path:
    entries = {e.name: e for e in manifest.entries}
    roles: dict[str, CaptureEvidence | None] = {}
    for role, name in manifest.guide_roles:
        entry = entries[name]
        if name in reports:
            link = _relative_link(manifest.guide_path, f"{entry.stem}.md")
            roles[role] = capture_evidence(role, name, link, reports[name], entry.capture)
    versions = None
    if manifest.guide_versions in comparisons:
        entry_c = next(c for c in manifest.comparisons if c.name == manifest.guide_versions)
        versions = versions_evidence(
            comparisons[manifest.guide_versions],
            _relative_link(manifest.guide_path, f"{entry_c.output}.md"),
            [(reports[r], entries[r].capture) for r in entry_c.reports if r in reports],
        )
    path = manifest.reports_dir / manifest.guide_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        render_guide(build_guide(roles, versions), manifest.path.name), encoding="utf-8"
    )
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
    comparisons: dict[str, Comparison] = {}
    for comparison in manifest.comparisons:
        try:
            comparisons[comparison.name], files = _write_comparison(manifest, comparison)
            written += files
        except QtraceError as exc:
            failures.append(f"{comparison.name}: {exc.message}")
    if manifest.guide_path:
        written.append(_write_guide(manifest, reports, comparisons))
    index = manifest.reports_dir / INDEX_FILE
    index.write_text(_index(manifest), encoding="utf-8")
    written.append(index)
    if failures:
        raise ReportError(
            f"{len(failures)} of {len(manifest.entries) + len(manifest.comparisons)} "
            f"reports failed: " + "; ".join(failures),
            hint="Check each failing entry's capture path in the manifest.",
        )
    return written

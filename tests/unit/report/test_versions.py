"""Comparisons of several captures (qtrace.report.versions) and their place in the manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qtrace.annotate import AnnotatedFrame, AnnotatedStack, Layer
from qtrace.errors import ReportError
from qtrace.report.manifest import load_manifest, regenerate_all
from qtrace.report.render import render_comparison
from qtrace.report.versions import _align, build_comparison

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"
COMMITTED = Path(__file__).resolve().parents[3] / "reports" / "captures"
RELEASES = ("e1000-kvm-probe-7.2", "e1000-kvm-probe-10.0.13", "e1000-kvm-probe")
LAYER = Layer("x", "x")


def _stack(sid: str, *frames: tuple[str, str]) -> AnnotatedStack:
    """Frames innermost first, each ``(func, "file:line")``."""
    return AnnotatedStack(
        sid,
        tuple(
            AnnotatedFrame(i, func, where.split(":")[0], int(where.split(":")[1]), None, LAYER, "e")
            for i, (func, where) in enumerate(frames)
        ),
    )


def test_align_folds_stacks_into_rows_per_function() -> None:
    old = _stack("s1", ("dev", "d.c:1"), ("api", "softmmu/m.c:5"), ("loop", "l.c:9"))
    mid = _stack(
        "s1", ("dev", "d.c:2"), ("api", "system/m.c:5"), ("step", "p.c:3"), ("loop", "l.c:9")
    )
    new = _stack(
        "s1", ("dev", "d.c:2"), ("api", "system/m.c:5"), ("step", "p.c:4"), ("loop", "l.c:9")
    )
    rows = _align([old, mid, new])
    assert [r.func for r in rows] == ["dev", "api", "step", "loop"]  # innermost first
    status = {r.func: r.status for r in rows}
    assert status == {
        "dev": "line moved",
        "api": "file moved",
        "step": "not on every path",
        "loop": "same",
    }
    step = next(r for r in rows if r.func == "step")
    assert step.cells[0] is None and [c.location for c in step.cells[1:]] == ["p.c:3", "p.c:4"]  # type: ignore[union-attr]


def test_committed_releases_name_what_changed_between_7_2_and_10_x() -> None:
    captures = [(COMMITTED / name, f"{name}.md", "cmd") for name in RELEASES]
    comparison = build_comparison("v", "versions", captures, ["mmio read", "mmio write"])
    assert [c.qemu_version for c in comparison.captures] == ["7.2", "10.0.13", "10.2.2"]
    read, write = comparison.kinds
    for kind, step in (
        (read, "flatview_read_continue_step"),
        (write, "flatview_write_continue_step"),
    ):
        rows = {r.func: r for r in kind.rows}
        assert rows[step].status == "not on every path"
        assert rows[step].present_in(comparison.captures) == ["10.0.13", "10.2.2"]
        assert rows["kvm_cpu_exec"].status == "line moved"
        assert rows["kvm_cpu_exec"].common_source == "address_space_rw(&address_space_memory,"
        moves = dict(kind.file_moves())
        assert (("softmmu/memory.c", (0,)), ("system/memory.c", (1, 2))) in moves
        assert not [r for r in kind.rows if r.layer.id == "unknown"]
        assert [p.a.qemu_version for p in kind.pairs] == ["7.2", "10.0.13"]
    assert (
        "memory_region_dispatch_read"
        in dict(read.file_moves())[(("softmmu/memory.c", (0,)), ("system/memory.c", (1, 2)))]
    )
    md = render_comparison(comparison, "md")
    assert "| # | function | layer | 7.2 | 10.0.13 | 10.2.2 | status |" in md
    assert (
        "`flatview_read_continue_step` (address-space dispatch / FlatView) "
        "is only on the path in 10.0.13, 10.2.2" in md
    )
    assert "https://gitlab.com/qemu-project/qemu/-/blob/v7.2.0/softmmu/memory.c#L" in md
    html = render_comparison(comparison, "html")
    assert html.startswith("<!DOCTYPE html>") and '<table class="aligned">' in html
    assert "http" not in html.replace(
        "https://gitlab.com/qemu-project/qemu/-/blob/", ""
    )  # no external resources


def test_a_capture_without_the_kind_is_an_error() -> None:
    captures = [
        (FIXTURES / "e1000-kvm-7.2", "a.md", "x"),
        (FIXTURES / "e1000-kvm-10.2.2", "b.md", "y"),
    ]
    with pytest.raises(ReportError, match="no 'pio write' access"):
        build_comparison("v", "t", captures, ["pio write"])
    with pytest.raises(ReportError, match="at least two"):
        build_comparison("v", "t", captures[:1], ["mmio read"])


BASE = (
    'format = "qtrace-reports/1"\n'
    '[[report]]\nname = "old"\ncapture = "captures/e1000-kvm-7.2"\ncommand = "c7"\n'
    'output = "e1000/versions/old"\n'
    '[[report]]\nname = "new"\ncapture = "captures/e1000-kvm-10.2.2"\ncommand = "c10"\n'
    'output = "e1000/new"\n'
)
COMPARISON = (
    '[[comparison]]\nname = "vs"\nreports = ["old", "new"]\nkinds = ["mmio read"]\n'
    'output = "e1000/versions"\n'
)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    for name in ("e1000-kvm-7.2", "e1000-kvm-10.2.2"):
        shutil.copytree(FIXTURES / name, tmp_path / "captures" / name)
    (tmp_path / "reports").mkdir()
    return tmp_path


def test_all_writes_the_comparison_links_it_and_is_deterministic(project: Path) -> None:
    manifest = project / "reports" / "manifest.toml"
    manifest.write_text(
        BASE + COMPARISON + '[guide]\nkvm = "new"\nversions = "vs"\n', encoding="utf-8"
    )
    written = {str(p.relative_to(project / "reports")) for p in regenerate_all(manifest)}
    assert {"e1000/versions.md", "e1000/versions.html", "README.md", "index.md"} <= written
    md = (project / "reports" / "e1000" / "versions.md").read_text(encoding="utf-8")
    assert (
        "[e1000-kvm-7.2](versions/old.md)" in md and "[e1000-kvm-10.2.2](new.md)" in md
    )  # from e1000/
    assert "`c7`" in md
    assert '`qtrace diff captures/e1000-kvm-7.2 captures/e1000-kvm-10.2.2 --kind "mmio read"`' in md
    assert "[versions.md](e1000/versions.md)" in (project / "reports" / "index.md").read_text(
        encoding="utf-8"
    )
    guide = (project / "reports" / "README.md").read_text(encoding="utf-8")
    assert "](e1000/versions.md)" in guide and "flatview_read_continue_step" in guide
    first = {p: p.read_bytes() for p in (project / "reports").rglob("*") if p.is_file()}
    regenerate_all(manifest)
    assert {p: p.read_bytes() for p in (project / "reports").rglob("*") if p.is_file()} == first


@pytest.mark.parametrize(
    "extra",
    [
        '[[comparison]]\nname = "vs"\nreports = ["old"]\nkinds = ["mmio read"]\noutput = "v"\n',
        (
            '[[comparison]]\nname = "vs"\nreports = ["old", "nope"]\nkinds = ["mmio read"]\n'
            'output = "v"\n'
        ),
        '[[comparison]]\nname = "vs"\nreports = ["old", "new"]\nkinds = []\noutput = "v"\n',
        (
            '[[comparison]]\nname = "vs"\nreports = ["old", "new"]\nkinds = ["mmio read"]\n'
            'output = "../v"\n'
        ),
        (
            '[[comparison]]\nname = "old"\nreports = ["old", "new"]\nkinds = ["mmio read"]\n'
            'output = "v"\n'
        ),
        COMPARISON + '[guide]\nversions = "nope"\n',
    ],
)
def test_invalid_comparisons(project: Path, extra: str) -> None:
    manifest = project / "reports" / "manifest.toml"
    manifest.write_text(BASE + extra, encoding="utf-8")
    with pytest.raises(ReportError):
        load_manifest(manifest)

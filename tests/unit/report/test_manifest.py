"""reports/manifest.toml and ``report --all``: every report rebuilt, deterministically."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qtrace.errors import ReportError
from qtrace.report.manifest import load_manifest, regenerate_all

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    for name in ("e1000-kvm-10.2.2", "e1000-tcg-7.2"):
        shutil.copytree(FIXTURES / name, tmp_path / "captures" / name)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "manifest.toml").write_text(
        'format = "qtrace-reports/1"\n'
        '[[report]]\nname = "tcg-7.2"\ncapture = "captures/e1000-tcg-7.2"\n'
        'command = "qtrace capture --device e1000 --accel tcg --qemu-version 7.2"\n'
        'formats = ["md"]\n'
        '[[report]]\nname = "kvm-10.2.2"\ncapture = "captures/e1000-kvm-10.2.2"\n'
        'command = "qtrace capture --device e1000 --accel kvm --qemu-version 10.2.2"\n'
        'title = "e1000 | KVM"\n',
        encoding="utf-8",
    )
    return tmp_path


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_all_writes_every_report_and_an_index(project: Path) -> None:
    written = regenerate_all(project / "reports" / "manifest.toml")
    names = sorted(str(p.relative_to(project / "reports")) for p in written)
    assert names == [
        "index.md",
        "kvm-10.2.2/report.html",
        "kvm-10.2.2/report.md",
        "tcg-7.2/report.md",
    ]
    md = (project / "reports" / "kvm-10.2.2" / "report.md").read_text(encoding="utf-8")
    assert (
        "qtrace capture --device e1000 --accel kvm --qemu-version 10.2.2" in md
    )  # the manifest's command
    index = (project / "reports" / "index.md").read_text(encoding="utf-8")
    assert index.index("e1000 \\| KVM") < index.index("tcg-7.2")  # sorted by name, pipes escaped


def test_all_is_deterministic(project: Path) -> None:
    regenerate_all(project / "reports" / "manifest.toml")
    first = _snapshot(project / "reports")
    regenerate_all(project / "reports" / "manifest.toml")
    assert _snapshot(project / "reports") == first


def test_relative_captures_resolve_against_the_project_root(project: Path) -> None:
    manifest = load_manifest(project / "reports" / "manifest.toml")
    assert [e.name for e in manifest.entries] == ["kvm-10.2.2", "tcg-7.2"]
    assert manifest.entries[0].capture == (project / "captures" / "e1000-kvm-10.2.2").resolve()


def test_a_missing_capture_fails_by_name_but_the_others_are_written(project: Path) -> None:
    shutil.rmtree(project / "captures" / "e1000-tcg-7.2")
    with pytest.raises(ReportError) as info:
        regenerate_all(project / "reports" / "manifest.toml")
    assert "tcg-7.2" in info.value.message
    assert (project / "reports" / "kvm-10.2.2" / "report.md").is_file()


@pytest.mark.parametrize(
    "body",
    [
        '[[report]]\nname = "a"\ncapture = "c"\ncommand = "x"\n',
        'format = "qtrace-reports/1"\n[[report]]\nname = "a"\ncapture = "c"\n',
        'format = "qtrace-reports/1"\n[[report]]\nname = "../a"\ncapture = "c"\ncommand = "x"\n',
        (
            'format = "qtrace-reports/1"\n[[report]]\nname = "a"\ncapture = "c"\ncommand = "x"\n'
            '[[report]]\nname = "a"\ncapture = "d"\ncommand = "y"\n'
        ),
        (
            'format = "qtrace-reports/1"\n[[report]]\nname = "a"\ncapture = "c"\ncommand = "x"\n'
            'formats = ["pdf"]\n'
        ),
        "format = [",
    ],
)
def test_invalid_manifests(tmp_path: Path, body: str) -> None:
    path = tmp_path / "manifest.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ReportError):
        load_manifest(path)


REPORTS = Path(__file__).resolve().parents[3] / "reports"


def test_output_paths_and_the_guide(project: Path) -> None:
    manifest = project / "reports" / "manifest.toml"
    manifest.write_text(
        manifest.read_text(encoding="utf-8").replace(
            'title = "e1000 | KVM"\n', 'title = "e1000 | KVM"\noutput = "e1000/kvm"\n'
        )
        + '[guide]\nkvm = "kvm-10.2.2"\ntcg = "tcg-7.2"\n',
        encoding="utf-8",
    )
    written = regenerate_all(manifest)
    names = sorted(str(p.relative_to(project / "reports")) for p in written)
    assert names == ["README.md", "e1000/kvm.html", "e1000/kvm.md", "index.md", "tcg-7.2/report.md"]
    guide = (project / "reports" / "README.md").read_text(encoding="utf-8")
    assert "[kvm-10.2.2](e1000/kvm.md)" in guide
    assert "Not captured yet" in guide and "`q35`" in guide  # the empty roles say so
    assert "kvm_cpu_exec" in guide and "qemu_wait_io_event is not on the path" in guide


@pytest.mark.parametrize(
    "extra",
    [
        'output = "../x"\n',
        '[guide]\nkvm = "nope"\n',
        '[guide]\nlinux = "a"\n',
    ],
)
def test_invalid_outputs_and_guides(tmp_path: Path, extra: str) -> None:
    path = tmp_path / "manifest.toml"
    path.write_text(
        'format = "qtrace-reports/1"\n[[report]]\nname = "a"\ncapture = "c"\ncommand = "x"\n'
        + extra,
        encoding="utf-8",
    )
    with pytest.raises(ReportError):
        load_manifest(path)


def test_committed_reports_are_up_to_date(tmp_path: Path) -> None:
    """`qtrace report --all` on the committed captures reproduces the committed files."""
    shutil.copytree(REPORTS, tmp_path / "reports")
    regenerate_all(tmp_path / "reports" / "manifest.toml")
    assert _snapshot(tmp_path / "reports") == _snapshot(REPORTS)

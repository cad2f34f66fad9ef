"""Reports from real captures: every frame annotated and linked correctly, HTML that a real
browser renders with the annotated stack, byte-identical output on a second run.

The links are checked against the source tree in the debug image: the capture's
``source-snippets.json`` carries each frame's function extent, and the extents themselves
are checked against the real files read out of the image.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tomllib
import zlib
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from qtrace.annotate import SourceSnippets
from qtrace.annotate.source import SNIPPETS_FILE, TreeSourceProvider, is_tree_path
from qtrace.image.builder import BuildResult
from qtrace.launch.capture import CaptureResult
from qtrace.report.guide import CONFIG_ADDRESS_ZONES
from qtrace.report.model import build_report
from qtrace.report.render import write_report
from qtrace.trace import read_trace
from tests.frame_layers import annotated_frames, unexplained

Capture = Callable[..., CaptureResult]
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Hides everything above the stacks so the screenshot shows them (a fragment does not scroll
# a headless screenshot).
STACKS_ONLY_CSS = "<style>body > *:not(#stacks):not(#stacks ~ *) { display: none }</style>"


class ImageSource(TreeSourceProvider):
    """The QEMU tree inside the debug image, one ``cat`` in a throwaway container per file."""

    def __init__(self, client: docker.DockerClient, image: str) -> None:
        super().__init__()
        self._client = client
        self._image = image

    def _read(self, file: str) -> str | None:
        try:
            out = self._client.containers.run(
                self._image, ["cat", f"/src/qemu/{file}"], network_mode="none", remove=True
            )
        except docker.errors.ContainerError:
            return None
        return bytes(out).decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def image_source(docker_client: docker.DockerClient, debug_image: BuildResult) -> ImageSource:
    return ImageSource(docker_client, debug_image.image)


@pytest.fixture(scope="module")
def version_source(
    docker_client: docker.DockerClient, build_version: Callable[[str], BuildResult]
) -> Callable[[str], ImageSource]:
    """The QEMU tree of another release's debug image."""
    sources: dict[str, ImageSource] = {}

    def get(version: str) -> ImageSource:
        if version not in sources:
            sources[version] = ImageSource(docker_client, build_version(version).image)
        return sources[version]

    return get


def _tree_frames(result: CaptureResult) -> list[tuple[str, str, int]]:
    trace = read_trace(result.out_dir)
    frames = {
        (f.func, f.file, f.line)
        for stack in trace.stacks.values()
        for f in stack.frames
        if f.file is not None and f.line is not None and is_tree_path(f.file)
    }
    return sorted(frames)  # type: ignore[arg-type]


def _check_links(result: CaptureResult, source: ImageSource) -> None:
    snippets = SourceSnippets.load(result.out_dir / SNIPPETS_FILE)
    frames = _tree_frames(result)
    assert frames, "the capture has no frame inside the QEMU tree"
    outside = []
    for func, file, line in frames:
        extent = snippets.function_range(file, func)
        real = source.function_range(file, func)
        # the cache agrees with the real file, and the real file has the line in the function
        assert extent == real, f"{func} in {file}: cached extent {extent}, real {real}"
        if extent is None or not extent[0] <= line <= extent[1]:
            outside.append(f"{func} {file}:{line} extent {extent}")
        assert snippets.line_text(file, line) == source.line_text(file, line), f"{file}:{line}"
    assert not outside, outside


@pytest.mark.parametrize(
    ("accel", "machine", "guest"),
    [
        ("kvm", "pc", "probe"),
        ("tcg", "pc", "probe"),
        ("kvm", "q35", "probe"),
        ("tcg", "pc", "linux"),
    ],
)
def test_each_linked_line_is_inside_the_named_function(
    capture: Capture, image_source: ImageSource, accel: str, machine: str, guest: str
) -> None:
    extra = {"guest": guest} if guest != "probe" else {}
    _check_links(capture("e1000", accel, machine, **extra), image_source)


@pytest.mark.parametrize("version", ["7.2", "10.0.13"])
def test_older_releases_link_lines_inside_the_named_function(
    capture: Capture, version_source: Callable[[str], ImageSource], version: str
) -> None:
    _check_links(capture("e1000", "kvm", qemu_version=version), version_source(version))


@pytest.mark.parametrize(("accel", "guest"), [("kvm", "probe"), ("tcg", "probe"), ("tcg", "linux")])
def test_every_frame_on_the_e1000_path_has_a_layer_and_an_explanation(
    capture: Capture, accel: str, guest: str
) -> None:
    extra = {"guest": guest} if guest != "probe" else {}
    trace = read_trace(capture("e1000", accel, **extra).out_dir)
    frames = annotated_frames(trace)
    assert len(frames) > 50
    bad = unexplained(frames)
    assert not bad, bad
    mmio = [s for s in trace.stacks.values() if s.frames and s.frames[0].func == "e1000_mmio_read"]
    assert mmio, "no e1000_mmio_read stack"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _png_distinct_bytes(path: Path) -> int:
    """How many distinct byte values the decompressed image data has (1-2: a blank page)."""
    data = path.read_bytes()
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return len(set(zlib.decompress(b"".join(chunks))))


def _chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is not installed (scripts/setup installs it)"
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_report_renders_in_headless_chromium_with_the_annotated_stack(
    capture: Capture, tmp_path: Path
) -> None:
    result = capture("e1000", "kvm")
    written = write_report(build_report(result.out_dir), tmp_path / "report")
    md, html = (p.read_text(encoding="utf-8") for p in written)
    assert "e1000_mmio_read" in md and "kvm_cpu_exec" in md and "```mermaid" in md
    page = tmp_path / "report" / "report.html"

    dom = _chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    assert 'id="stacks"' in rendered
    assert "e1000_mmio_read" in rendered and "kvm_cpu_exec" in rendered
    for label in ("device model", "memory API", "accelerator: KVM exit handling", "vCPU thread"):
        assert f">{label}</span>" in rendered, label
    assert "<details" in rendered and " open" in rendered

    stacks_page = tmp_path / "stacks.html"
    stacks_page.write_text(
        html.replace("</head>", STACKS_ONLY_CSS + "</head>", 1), encoding="utf-8"
    )
    for name, target in (("full.png", page), ("stacks.png", stacks_page)):
        shot = tmp_path / name
        run = _chromium(
            f"--screenshot={shot}", "--window-size=1280,2000", target.as_uri(), tmp_path=tmp_path
        )
        assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
        assert _png_size(shot) == (1280, 2000)
        assert shot.stat().st_size > 30_000, f"{name} is suspiciously small"
        assert _png_distinct_bytes(shot) > 16, f"{name} looks blank"


def test_report_is_deterministic(capture: Capture, tmp_path: Path) -> None:
    result = capture("e1000", "tcg")
    first = write_report(build_report(result.out_dir), tmp_path / "a")
    second = write_report(build_report(result.out_dir), tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


# --- the guide's claims about QEMU's code, checked against each release's source ----------

SOURCE_CLAIMS = Path(__file__).resolve().parents[2] / "qtrace" / "report" / "source_claims.toml"
CLAIM_RELEASES = ("7.2", "10.0.13", "10.2.2")


def _claims() -> list[dict[str, object]]:
    data = tomllib.loads(SOURCE_CLAIMS.read_text(encoding="utf-8"))
    return list(data["claim"])


@pytest.mark.parametrize("version", CLAIM_RELEASES)
def test_the_guides_claims_about_qemu_code_hold_in_each_release(
    version_source: Callable[[str], ImageSource], version: str
) -> None:
    """Every anchor in source_claims.toml matches that release's real source; a failure names
    the claim (and so the guide's sentence) that went stale."""
    source = version_source(version)
    claims = [c for c in _claims() if version in c["versions"]]  # type: ignore[operator]
    assert claims, f"no claim is checked for {version}"
    stale = []
    for claim in claims:
        text = source._read(str(claim["file"]))
        if text is None:
            stale.append(f"{claim['id']}: {claim['file']} is missing")
            continue
        stale += [
            f"{claim['id']}: no match for {pattern!r} in {claim['file']} ({claim['says']})"
            for pattern in claim["patterns"]  # type: ignore[attr-defined]
            if not re.search(str(pattern), text, re.MULTILINE)
        ]
    assert not stale, stale


def _io_ranges(mtree: str, region: str) -> list[tuple[int, int]]:
    """(start, size) of ``region``'s ranges in the I/O address space's FlatView (info mtree -f)."""
    ranges = []
    in_io = False
    for line in mtree.splitlines():
        if line.startswith("FlatView"):
            in_io = False
        elif line.strip().startswith('AS "I/O"'):
            in_io = True
        elif in_io and (
            m := re.match(r"\s*([0-9a-f]+)-([0-9a-f]+) \(prio \d+, i/o\): (\S+)", line)
        ):
            if m.group(3) == region:
                start, end = int(m.group(1), 16), int(m.group(2), 16)
                ranges.append((start, end - start + 1))
    return ranges


@pytest.mark.parametrize("version", CLAIM_RELEASES)
@pytest.mark.parametrize("machine", sorted(CONFIG_ADDRESS_ZONES))
def test_config_address_zones_are_the_flatviews_ranges(
    docker_client: docker.DockerClient,
    build_version: Callable[[str], BuildResult],
    version: str,
    machine: str,
) -> None:
    """The coalesced-PIO zones the guide reasons with (guide.CONFIG_ADDRESS_ZONES) are the
    pieces of CONFIG_ADDRESS that QEMU's I/O FlatView really has: QEMU registers each piece of
    a coalesced range that a FlatRange keeps, so the FlatView is what KVM is told."""
    out = docker_client.containers.run(
        build_version(version).image,
        [
            "sh",
            "-c",
            "printf 'info mtree -f\\nquit\\n' | timeout 60 /src/qemu/build/qemu-system-x86_64"
            f" -machine {machine} -accel tcg -nodefaults -display none -S -monitor stdio"
            " -L /usr/share/seabios -L /usr/share/qemu",
        ],
        network_mode="none",
        remove=True,
    )
    ranges = _io_ranges(bytes(out).decode("utf-8", errors="replace"), "pci-conf-idx")
    assert tuple(ranges) == CONFIG_ADDRESS_ZONES[machine]

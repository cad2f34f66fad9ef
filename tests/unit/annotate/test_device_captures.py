"""Every frame of real captures of devices without a pack gets a layer and an explanation.

The traces under tests/fixtures/devices/ are real captures (trimmed by trim.py there to one
record per stack) of the PCI devices issue 10 names: virtio, NVMe, AHCI, xHCI, igb, ivshmem,
under KVM and TCG, on the root bus and behind a PCI Express root port, with the probe and the
firmware guests. A frame the rules do not cover shows up here before it shows up as
"unknown" in a report; and each report renders, with a regions section from the header.
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from qtrace.annotate import annotate_stack
from qtrace.report.model import build_report
from qtrace.report.render import render_html, render_markdown
from qtrace.report.terminal import show_renderables
from qtrace.trace import read_trace
from tests.frame_layers import annotated_frames, unexplained

DEVICES = Path(__file__).resolve().parents[2] / "fixtures" / "devices"
NAMES = sorted(p.stem for p in DEVICES.glob("*.jsonl"))


def test_the_device_captures_are_there() -> None:
    devices = {read_trace(DEVICES / f"{name}.jsonl").header.device for name in NAMES}
    assert {"virtio-net-pci", "nvme", "qemu-xhci", "ivshmem-plain", "ich9-ahci"} <= devices


@pytest.mark.parametrize("name", NAMES)
def test_every_frame_has_a_layer_and_an_explanation(name: str) -> None:
    trace = read_trace(DEVICES / f"{name}.jsonl")
    frames = annotated_frames(trace)
    assert frames
    bad = unexplained(frames)
    assert not bad, bad


@pytest.mark.parametrize("name", NAMES)
def test_the_device_handlers_frames_are_explained_by_name_or_file(name: str) -> None:
    """The innermost frame of each access stack (the callback that handled it) gets a rule
    more precise than the last fallback for any hw/ file."""
    trace = read_trace(DEVICES / f"{name}.jsonl")
    used = {a.stack for a in trace.accesses if a.stack is not None}
    generic = []
    for sid in sorted(used):
        top = annotate_stack(
            trace.stacks[sid], qemu_version=trace.header.qemu_version, accel=trace.header.accel
        ).frames[0]
        if "a device without a pack of its own" in top.explain and trace.header.device != "edu":
            generic.append((top.func, top.location))
    assert not generic, generic


@pytest.mark.parametrize("name", NAMES)
def test_the_report_renders_with_its_regions(name: str) -> None:
    report = build_report(DEVICES / f"{name}.jsonl")
    assert report.regions is not None and report.regions.rows
    markdown = render_markdown(report)
    assert "## Regions" in markdown and "{{" not in markdown
    assert '<h2 id="regions">' in render_html(report)
    assert (report.path is not None) == (report.header.topology == "root-port")
    console = Console(file=StringIO(), width=160)
    for renderable in show_renderables(report):
        console.print(renderable)
    assert "Regions (found in the running QEMU)" in console.file.getvalue()  # type: ignore[attr-defined]

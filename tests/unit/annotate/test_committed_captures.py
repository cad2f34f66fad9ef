"""Every frame of every committed capture (reports/captures/) has a named layer and an explanation.

These are real captures (KVM and TCG, probe and Linux guests, QEMU 7.2 to 10.2.2), so a frame
the rules do not cover shows up here before it shows up as "unknown" in a published report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qtrace.trace import read_trace
from tests.frame_layers import annotated_frames, unexplained

CAPTURES = Path(__file__).resolve().parents[3] / "reports" / "captures"
NAMES = sorted(p.name for p in CAPTURES.iterdir() if (p / "trace.jsonl").is_file())


def test_the_expected_captures_are_committed() -> None:
    assert {
        "e1000-kvm-probe",
        "e1000-tcg-linux",
        "e1000-kvm-probe-7.2",
        "e1000-kvm-probe-10.0.13",
    } <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_frame_has_a_layer_and_an_explanation(name: str) -> None:
    trace = read_trace(CAPTURES / name / "trace.jsonl")
    frames = annotated_frames(trace)
    assert frames
    bad = unexplained(frames)
    assert not bad, bad


def test_the_linux_capture_has_the_transmit_interrupt_and_dma_paths() -> None:
    trace = read_trace(CAPTURES / "e1000-tcg-linux" / "trace.jsonl")
    assert trace.header.guest == "linux" and trace.header.accel == "tcg"
    funcs = {
        r.seq: [f.func for f in trace.stacks[r.stack].frames]
        for r in [*trace.irqs, *trace.dmas]
        if r.stack
    }
    descriptor = next(d for d in trace.dmas if d.op == "read" and d.size == 16)
    above_api = funcs[descriptor.seq][funcs[descriptor.seq].index("pci_dma_rw") :]
    assert above_api[:4] == ["pci_dma_rw", "pci_dma_read", "start_xmit", "set_tctl"]
    raised = [i for i in trace.irqs if i.level == 1]
    assert any(
        funcs[i.seq][:4] == ["pci_set_irq", "set_interrupt_cause", "set_ics", "start_xmit"]
        for i in raised
    )
    lowered = [i for i in trace.irqs if i.level == 0]
    assert lowered and all("mac_icr_read" in funcs[i.seq] for i in lowered)

"""The receive side of ``verify`` (issue 13 item 1), without Docker: the live test's receive
sequences (a second model plays QEMU), a broken receive write-back caught and shrunk, and
the replay of frames a network backend delivered in a capture."""

from __future__ import annotations

import random
import struct
from pathlib import Path

from test_verify_coverage import _ModelAsQemu
from verify_traces import IN_TIMER, TraceBuilder

from qtrace.devices.e1000.model import E1000
from qtrace.devices.e1000.model.e1000_rings import RCTL_SECRC
from qtrace.devices.e1000.rx_sequences import RX_RING_BASE, keeps_receive_holds
from qtrace.devices.e1000.verify import generate
from qtrace.trace import read_trace
from qtrace.verify import replay, verify_device
from qtrace.verify.explain import Explainer
from qtrace.verify.live import run_live

RDBAL, RDLEN, RDH, RDT, RCTL, ICR, IMS, GPRC = (
    0x2800, 0x2808, 0x2810, 0x2818, 0x0100, 0x00C0, 0x00D0, 0x4074,
)  # fmt: skip
RING, BUFFER = 0x30000, 0x40000


class _RxLengthWithoutCrc(E1000):
    """A deliberately broken model: receive write-backs leave the CRC out of the length."""

    def receive(self, frame: bytes) -> bool:
        rctl = self.reg("RCTL")
        self.set_reg("RCTL", rctl | RCTL_SECRC)
        try:
            return super().receive(frame)
        finally:
            self.set_reg("RCTL", rctl)


def test_the_receive_sequences_send_frames_of_every_kind() -> None:
    frames = []
    for index in range(2000):
        steps = generate(random.Random(f"0:{index}"))
        if any(step.space == "net" for step in steps):
            assert keeps_receive_holds(steps)
            frames += [step.data for step in steps if step.space == "net"]
    sizes = [len(f) for f in frames]
    assert len(frames) >= 2000  # the issue asks for 500
    assert min(sizes) < 60 and max(sizes) > 9000  # runts, and frames of many buffers
    assert sum(f[:6] == b"\xff" * 6 for f in frames) > 100


def test_a_broken_receive_write_back_is_caught_and_shrunk() -> None:
    result = run_live(
        _ModelAsQemu(),
        verify_device("e1000"),
        sequences=200,
        make_nic=_RxLengthWithoutCrc,
        scenarios=(),
    )
    assert not result.ok and result.failing_sequence is not None
    divergence = result.counterexample_divergence
    assert divergence is not None and divergence.what == "dma"
    steps = result.counterexample
    assert any(step.startswith("frame of ") for step in steps)
    assert len(steps) <= 14  # the plants, the ring's registers, RCTL, the hold, one frame
    address = int(divergence.register.removeprefix("ram[").rstrip("]"), 16)
    assert RX_RING_BASE <= address < RX_RING_BASE + 32 * 16  # a descriptor's length
    assert address % 16 in (8, 9)
    assert 0 < result.shrink_runs < 1000


def _received(t: TraceBuilder, frame: bytes, head: int) -> None:
    """QEMU receiving ``frame`` into descriptor ``head`` on its main loop (no handler on
    the stacks): the descriptor read, the buffer and the write-backs, as QEMU 10.2.2 does."""
    desc = RING + 16 * head
    t.dma_read(desc, struct.pack("<QQ", BUFFER + 0x800 * head, 0), stack=IN_TIMER.id)
    t.dma_write(BUFFER + 0x800 * head, frame, stack=IN_TIMER.id)
    back = struct.pack("<QHHBBH", BUFFER + 0x800 * head, len(frame) + 4, 0, 0x06, 0, 0)
    t.dma_write(desc, back, stack=IN_TIMER.id)
    t.dma_write(desc + 12, b"\x07", stack=IN_TIMER.id)


def _receive_trace(frames: int) -> TraceBuilder:
    t = TraceBuilder(events=True, argv=("-device", "e1000,netdev=n0", "-netdev", "stream"))
    for offset, value in ((RDBAL, RING), (RDLEN, 0x80), (RDH, 0), (RDT, 7), (IMS, 1 << 7)):
        t.write(offset, value)
    t.write(RCTL, 0x8002)  # EN | BAM
    for i in range(frames):
        _received(t, b"\xff" * 6 + bytes([i]) * 58, i)
        t.irq(1, IN_TIMER.id)
        rxdmt0 = 0x10 if 7 - (i + 1) <= 4 else 0  # RDMTS 0: half the ring free or fewer
        t.irq(0, "s-read").read(ICR, 0x80 | rxdmt0)
    t.read(RDH, frames).read(GPRC, frames)
    return t


def test_the_replay_gives_the_model_the_frames_qemu_received(tmp_path: Path) -> None:
    trace = read_trace(_receive_trace(3).save(tmp_path / "t.jsonl"))
    result = replay(trace, verify_device("e1000"))
    assert result.ok, (result.mismatches, result.event_mismatches)
    assert result.host_inputs_replayed == 3
    assert result.dma_writes_compared == 9 and result.dma_reads_compared == 3
    assert result.masked == 0  # RXT0 and the counters compared strictly
    assert result.irq_compared > 10


def test_a_broken_model_misreplays_the_frames(tmp_path: Path) -> None:
    trace = read_trace(_receive_trace(1).save(tmp_path / "t.jsonl"))
    device = verify_device("e1000")
    broken = type(device)(
        device.name, device.qom_types, _RxLengthWithoutCrc, device.support, device.qtest
    )
    result = replay(trace, broken)
    assert [m.kind for m in result.event_mismatches] == ["dma"]
    assert "frame of 64 bytes from the host" in result.event_mismatches[0].register


def test_explain_tells_what_the_frame_did(tmp_path: Path) -> None:
    trace = read_trace(_receive_trace(1).save(tmp_path / "t.jsonl"))
    explainer = Explainer(verify_device("e1000"))
    replay(trace, verify_device("e1000"), observer=explainer)
    [frame] = [e for e in explainer.explanations if e.kind == "event"]
    effects = "\n".join(frame.effects)
    assert "descriptor 0 at 0x30000: buffer 0x40000, length 68, status 0x07" in effects
    assert "ICR: set RXT0" in effects and "INTx raised" in effects
    [icr] = [e for e in explainer.explanations if e.register == "ICR" and e.op == "read"]
    assert icr.value[0].startswith("RXT0: by the host (seq")

"""edu's live-test support without QEMU: a second model plays QEMU, so the generator, the
sync and clock steps, coverage and the shrinker are checked here; tests/integration/
test_verify_models.py runs the same against QEMU 10.2.2."""

from __future__ import annotations

import random

from model_as_qemu import ModelAsQemu

from qtrace.devices.edu.model import Edu, offset_of
from qtrace.devices.edu.verify import generate, keeps_generator_rules, setup_steps
from qtrace.verify import verify_device
from qtrace.verify.live import run_live
from qtrace.verify.steps import Step
from tests.broken_models import DmaOneMillisecondLate, LivenessNotInverted, NoFactorialInterrupt


def test_sequences_are_reproducible_and_keep_the_generators_rules() -> None:
    for index in range(200):
        first = generate(random.Random(f"0:{index}"))
        assert first == generate(random.Random(f"0:{index}"))
        assert keeps_generator_rules(first)
    assert keeps_generator_rules(setup_steps()[:0] + generate(random.Random("1:1")))


def test_a_factorial_without_its_acknowledge_or_syncs_is_not_a_valid_sequence() -> None:
    ack = Step("write", "mmio", offset_of("INTR_ACK"), 4, 0x1)
    write = Step("write", "mmio", offset_of("FACTORIAL"), 4, 5)
    sync = Step("sync", "mmio", offset_of("STATUS"), 4)
    assert keeps_generator_rules([ack, write, sync, sync])
    assert not keeps_generator_rules([write, sync, sync])
    assert not keeps_generator_rules([ack, write, sync])


def test_a_transfer_outside_the_buffer_is_not_a_valid_sequence() -> None:
    def dma(dst: int) -> list[Step]:
        return [
            Step("write", "mmio", offset_of("DMA_SRC"), 8, 0x0100_0000),
            Step("write", "mmio", offset_of("DMA_DST"), 8, dst),
            Step("write", "mmio", offset_of("DMA_COUNT"), 8, 16),
            Step("write", "mmio", offset_of("DMA_CMD"), 8, 0x1),
        ]

    assert keeps_generator_rules(dma(0x40000))
    assert not keeps_generator_rules(dma(0x40FF8))
    assert not keeps_generator_rules(dma(0x1_0004_0000))  # QEMU 10.2.2 segfaults on it


def test_the_model_agrees_with_itself_and_covers_every_bit_not_held() -> None:
    result = run_live(ModelAsQemu("edu"), verify_device("edu"), sequences=200)
    assert result.ok and result.sequences_run == 200
    assert result.coverage is not None and result.coverage.complete
    assert result.sequence_counts.dma_bytes_compared > 0


def _counterexample(broken: type[Edu]) -> list[str]:
    result = run_live(ModelAsQemu("edu"), verify_device("edu"), sequences=300, make_nic=broken)
    assert not result.ok and result.counterexample_divergence is not None
    return result.counterexample


def test_a_liveness_check_that_does_not_invert_is_caught_and_shrunk() -> None:
    steps = _counterexample(LivenessNotInverted)
    assert len(steps) <= 5 and "(LIVENESS)" in steps[-1]


def test_a_dma_timer_a_millisecond_late_is_caught() -> None:
    steps = _counterexample(DmaOneMillisecondLate)
    assert any(step.startswith("clock") for step in steps) and "DMA_CMD" in " ".join(steps)


def test_a_factorial_that_forgets_its_interrupt_is_caught_at_the_sync() -> None:
    steps = _counterexample(NoFactorialInterrupt)
    assert len(steps) <= 10 and steps[-1].startswith("sync4 mmio 0x0024")

"""virtio-rng-pci's live-test support without QEMU: a second model plays QEMU, so the
model-driven generator, its held bits, coverage and the shrinker are checked here;
tests/integration/test_verify_models.py runs the same against QEMU 10.2.2."""

from __future__ import annotations

import random

from model_as_qemu import ModelAsQemu

from qtrace.devices.virtio.rng import VirtioRngPci
from qtrace.devices.virtio.rng_verify import generate, keeps_generator_rules
from qtrace.verify import verify_device
from qtrace.verify.live import run_live
from qtrace.verify.steps import Step
from tests.broken_models import IsrNotClearedByRead, UsedLengthOffByOne


def test_sequences_are_reproducible_and_keep_the_generators_rules() -> None:
    for index in range(60):
        steps = generate(random.Random(f"0:{index}"))
        assert steps == generate(random.Random(f"0:{index}"))
        assert keeps_generator_rules(steps)
    requests = sum(
        1
        for index in range(60)
        for step in generate(random.Random(f"0:{index}"))
        if step.space == "mmio" and step.bar == 4 and step.offset == 0x3000
    )
    assert requests > 60  # notifications happen: the generator drives the queue


def test_a_ring_address_outside_the_planted_ring_is_not_a_valid_sequence() -> None:
    steps = generate(random.Random("0:0"))
    moved = [
        Step("write", "mmio", s.offset, s.size, 0x0300_0000, bar=s.bar)
        if s.bar == 4 and s.offset == 0x20 and s.op == "write"
        else s
        for s in steps
    ]
    assert moved != steps and not keeps_generator_rules(moved)


def test_the_model_agrees_with_itself_and_covers_every_bit_not_held() -> None:
    result = run_live(ModelAsQemu("virtio-rng-pci"), verify_device("virtio-rng-pci"), sequences=200)
    assert result.ok and result.sequences_run == 200
    assert result.coverage is not None and result.coverage.complete
    assert result.sequence_counts.dma_bytes_compared > 0


def _counterexample(broken: type[VirtioRngPci]) -> list[str]:
    device = verify_device("virtio-rng-pci")
    result = run_live(ModelAsQemu("virtio-rng-pci"), device, sequences=200, make_nic=broken)
    assert not result.ok and result.counterexample_divergence is not None
    return result.counterexample


def test_an_isr_that_is_not_read_to_clear_is_caught() -> None:
    steps = _counterexample(IsrNotClearedByRead)
    assert "(isr" in steps[-1] and len(steps) < 40


def test_a_wrong_used_length_is_caught_in_the_used_ring() -> None:
    steps = _counterexample(UsedLengthOffByOne)
    assert any("notify" in step for step in steps) and steps[-1].startswith("sync")

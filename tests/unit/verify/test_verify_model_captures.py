"""The edu and virtio-rng-pci models agree with their committed captures (reports/captures/,
QEMU 10.2.2, TCG, probe guest), and a deliberately broken model disagrees with them.

The captures exercise what a replay must follow beyond BAR 0 and the vCPU thread: edu's
factorial thread and DMA timer (each ending in an MSI), virtio's structures in BARs 1 and 4,
the notification an ioeventfd swallowed and the bottom half that fills the buffer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from qtrace.trace import Access, Async, Dma, read_trace
from qtrace.verify import replay, verify_device, verify_file
from qtrace.verify.device_work import BarRoutes, Notifiers
from tests.broken_models import DmaWithoutInterrupt, LivenessNotInverted, UsedLengthOffByOne

CAPTURES = Path(__file__).parents[3] / "reports" / "captures"
EDU = CAPTURES / "edu-tcg-probe" / "trace.jsonl"
RNG = CAPTURES / "virtio-rng-pci-tcg-probe" / "trace.jsonl"


def test_the_edu_capture_verifies_clean_with_its_thread_and_timer_work() -> None:
    result = verify_file(EDU, "edu")
    assert result.ok, (result.mismatches[:3], result.event_mismatches[:3])
    assert result.reads_compared >= 40 and result.unimplemented_accesses == 0
    assert result.async_work_replayed >= 3  # the factorial and two transfers
    assert result.msi_compared >= 3 and result.dma_writes_compared >= 1


def test_the_virtio_rng_capture_verifies_clean_through_its_bars_and_bottom_half() -> None:
    result = verify_file(RNG, "virtio-rng-pci")
    assert result.ok, (result.mismatches[:3], result.event_mismatches[:3])
    assert result.reads_compared >= 80 and result.unimplemented_accesses == 0
    assert result.dma_writes_compared >= 3  # the buffer (random), the used element, the index
    assert result.msi_compared >= 1


def test_the_virtio_accesses_are_routed_to_their_bars() -> None:
    trace = read_trace(RNG)
    routes = BarRoutes(trace.header)
    located = {routes.locate(a)[0] for a in trace.accesses if routes.locate(a) is not None}  # type: ignore[index]
    assert located == {1, 4}  # the MSI-X table and PBA; the virtio structures
    notified = Notifiers(trace).between(0, 10**9)  # the kick, swallowed by an ioeventfd
    assert notified and all(
        n.region is not None and n.region.startswith("virtio-pci-notify") for n in notified
    )


def _replay_with(path: Path, device: str, model: object) -> list[str]:
    target = dataclasses.replace(verify_device(device), model=model)  # type: ignore[arg-type]
    result = replay(read_trace(path), target)
    assert not result.ok
    return [m.register for m in result.mismatches] + [e.kind for e in result.event_mismatches]


def test_broken_edu_models_disagree_with_the_capture() -> None:
    assert "LIVENESS" in _replay_with(EDU, "edu", LivenessNotInverted)
    found = _replay_with(EDU, "edu", DmaWithoutInterrupt)
    assert "msi" in found and "INTR_STATUS" in found


def test_a_broken_used_ring_disagrees_with_the_capture() -> None:
    assert "dma" in _replay_with(RNG, "virtio-rng-pci", UsedLengthOffByOne)


def test_an_altered_read_in_the_capture_is_named(tmp_path: Path) -> None:
    trace = read_trace(RNG)
    records = list(trace.records)
    index = next(
        i for i, r in enumerate(records)
        if isinstance(r, Access) and r.op == "read" and r.region and "common" in r.region
        and r.offset == 0x04
    )  # fmt: skip
    original = records[index]
    assert isinstance(original, Access)
    records[index] = dataclasses.replace(original, value=original.value ^ 0x1)
    result = replay(dataclasses.replace(trace, records=records), verify_device("virtio-rng-pci"))
    [mismatch] = result.mismatches
    assert mismatch.register == "common.device_feature" and mismatch.seq == original.seq


def test_handler_runs_between_the_same_two_accesses_are_taken_in_order() -> None:
    """Seen in a CI capture under TCG: the event loop's first call of the notify handler
    (right after it was registered, the ring still empty), the guest's kick and the bottom
    half all ran between two guest accesses. The model must take each run with RAM as that
    run read it, and so send one message, as QEMU did; not size the one request twice."""
    trace = read_trace(RNG)
    records = list(trace.records)
    runs = [
        i for i, r in enumerate(records)
        if isinstance(r, Async) and r.kind == "fd-handler" and r.op == "run"
    ]  # fmt: skip
    first, kick = runs[0], runs[1]
    between = [i for i in range(first, kick) if isinstance(records[i], Access)]
    assert len(between) == 1  # the committed capture: one access between the two runs
    moved = records.pop(between[0])
    records.insert(first, moved)  # now both runs follow the same access
    seqs = sorted(r.seq for r in records)
    records = [dataclasses.replace(r, seq=seq) for r, seq in zip(records, seqs, strict=True)]
    result = replay(dataclasses.replace(trace, records=records), verify_device("virtio-rng-pci"))
    assert result.ok, (result.mismatches[:3], result.event_mismatches[:3])
    assert result.msi_compared == 1 and result.async_work_replayed >= 1


def test_a_trace_without_dma_records_counts_the_model_reads_it_could_not_supply() -> None:
    """A fast capture records no DMA: the replay says how many DMA reads the model made
    without QEMU's data (the CLI's hint names it), instead of comparing them."""
    trace = read_trace(CAPTURES / "e1000-tcg-probe" / "trace.jsonl")
    header = dataclasses.replace(
        trace.header, arming={"device_handlers": "fast tracepoints", "not_recorded": "dma"}
    )
    records = [r for r in trace.records if not isinstance(r, Dma)]
    stripped = dataclasses.replace(trace, header=header, records=records)
    result = replay(stripped, verify_device("e1000"))
    assert not result.dma_recorded and result.dma_unrecorded >= 1
    assert replay(trace, verify_device("e1000")).dma_unrecorded == 0

"""``qtrace verify edu|virtio-rng-pci --trace FILE --explain``: every access of the committed
captures gets the model's account, and a few accounts say what the edu document and the
virtio 1.x specification say the device does (issue 13 item 5)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from verify_traces import TraceBuilder

from qtrace.devices.edu.model import offset_of
from qtrace.trace import Access, read_trace
from qtrace.verify import replay, verify_device
from qtrace.verify.explain import AccessExplanation, Explainer

CAPTURES = Path(__file__).parents[3] / "reports" / "captures"


def _explained(trace_path: Path, device: str) -> tuple[list[Access], list[AccessExplanation]]:
    trace = read_trace(trace_path)
    explainer = Explainer(verify_device(device))
    result = replay(trace, verify_device(device), observer=explainer)
    explainer.mark(result)
    assert result.ok, (result.mismatches, result.event_mismatches)
    return [r for r in trace.records if isinstance(r, Access)], explainer.explanations


def _by_seq(explanations: list[AccessExplanation]) -> dict[int, AccessExplanation]:
    return {e.seq: e for e in explanations if e.kind == "access"}


def _text(e: AccessExplanation) -> str:
    return "\n".join(e.lines())


@pytest.mark.parametrize(
    ("capture", "device"),
    [
        ("edu-tcg-probe", "edu"),
        ("edu-kvm-probe", "edu"),
        ("virtio-rng-pci-tcg-probe", "virtio-rng-pci"),
    ],
)
def test_every_access_of_a_committed_capture_has_an_account(capture: str, device: str) -> None:
    accesses, explanations = _explained(CAPTURES / capture / "trace.jsonl", device)
    by_seq = _by_seq(explanations)
    assert [a.seq for a in accesses] == sorted(by_seq)
    silent = [seq for seq, e in by_seq.items() if not e.value and not e.effects]
    assert not silent
    assert not [e for e in explanations if e.register == "events no access caused"]


# -- edu (QEMU's docs/specs/edu.rst) -------------------------------------------------------


def _edu() -> dict[int, AccessExplanation]:
    _, explanations = _explained(CAPTURES / "edu-tcg-probe" / "trace.jsonl", "edu")
    return {e.seq: e for e in explanations}


def _edu_access(by_seq: dict[int, AccessExplanation], op: str, register: str) -> list[int]:
    return [s for s, e in by_seq.items() if e.op == op and e.register == register]


def test_a_factorial_read_names_the_write_and_the_factorial_thread() -> None:
    # edu.rst: "factorial computation ... the value written is replaced by its factorial",
    # computed on the device's thread, which clears STATUS bit 0 (computing) when done.
    by_seq = _edu()
    (write,) = _edu_access(by_seq, "write", "FACTORIAL")
    (read,) = _edu_access(by_seq, "read", "FACTORIAL")
    assert by_seq[write].value == ("FACTORIAL: 0x0 -> 0xa",)
    assert "STATUS: set COMPUTING" in by_seq[write].effects
    assert by_seq[read].value == (
        f"FACTORIAL=0x375f00: by the factorial thread: 10! (modulo 2^32) for seq {write} "
        "(write 0xa to FACTORIAL)",
    )
    thread = next(e for s, e in by_seq.items() if e.kind == "event" and write < s < read)
    assert "STATUS: cleared COMPUTING" in "\n".join(thread.effects)


def test_an_interrupt_status_read_names_the_work_that_set_its_bit() -> None:
    # edu.rst: STATUS bit 7 raises interrupt 0x1 after the factorial; DMA command bit 2
    # raises 0x100 when the transfer is done; with MSI enabled the interrupt is a message.
    by_seq = _edu()
    reads = [by_seq[s] for s in _edu_access(by_seq, "read", "INTR_STATUS")]
    factorial = next(r for r in reads if r.qemu_value == 0x1)
    assert factorial.value[0].startswith("FACTORIAL: by the factorial thread")
    dma = [r for r in reads if r.qemu_value == 0x100]
    assert dma and all(r.value[0].startswith("DMA: by the DMA timer: the transfer armed by seq")
                       for r in dma)  # fmt: skip
    timer = next(e for e in by_seq.values() if e.kind == "event" and "DMA timer" in _text(e))
    effects = "\n".join(timer.effects)
    assert "DMA transferred 64 bytes from RAM 0x320000 to buffer 0x40000" in effects
    assert "DMA_CMD: cleared START" in effects
    assert "MSI is enabled: an MSI message:" in effects
    assert "message sent: 0x41 written at 0xfee00000" in effects


def test_an_interrupt_raise_write_is_named_by_the_status_read_and_goes_through_intx(
    tmp_path: Path,
) -> None:
    # edu.rst: the raise register's value is ORed into the interrupt status and raises the
    # interrupt; INTx while MSI is off; the acknowledge register clears it.
    raise_at, status_at, ack_at = map(offset_of, ("INTR_RAISE", "INTR_STATUS", "INTR_ACK"))
    t = TraceBuilder("edu").write(raise_at, 0x5).read(status_at, 0x5).write(ack_at, 0x5)
    _, explanations = _explained(t.save(tmp_path / "t.jsonl"), "edu")
    raised, status, ack = explanations
    assert raised.effects[0] == "INTR_STATUS: 0x0 -> 0x5"
    assert raised.effects[1:] == (
        "MSI is off: INTx:",
        "  INTx raised: INTR_STATUS 0x5 is non-zero: INTx asserted",
    )
    assert status.value == ("FACTORIAL, bit 2: by seq 1 (write 0x5 to INTR_RAISE)",)
    assert "INTx lowered: INTR_STATUS 0x0: INTx deasserted" in ack.effects


# -- virtio-rng-pci (virtio 1.x: transport-pci, split-ring, entropy device) ------------------


def _virtio() -> list[AccessExplanation]:
    path = CAPTURES / "virtio-rng-pci-tcg-probe" / "trace.jsonl"
    return _explained(path, "virtio-rng-pci")[1]


def test_a_device_status_read_names_the_writes_that_set_its_bits() -> None:
    # 4.1.4.3: device_status is what the driver wrote (2.1: ACKNOWLEDGE, DRIVER, FEATURES_OK,
    # DRIVER_OK, set in that order by the driver's initialisation, 3.1.1).
    explanations = _virtio()
    writes = {e.qemu_value: e.seq for e in explanations
              if e.op == "write" and e.register == "common.device_status"}  # fmt: skip
    read = next(e for e in explanations if e.op == "read" and e.register == "common.device_status"
                and e.qemu_value == 0xF)  # fmt: skip
    assert read.value == (
        f"ACKNOWLEDGE: by seq {writes[0x1]} (write 0x1 to common.device_status)",
        f"DRIVER: by seq {writes[0x3]} (write 0x3 to common.device_status)",
        f"DRIVER_OK: by seq {writes[0xF]} (write 0xf to common.device_status)",
        f"FEATURES_OK: by seq {writes[0xB]} (write 0xb to common.device_status)",
    )
    reset = next(e for e in explanations if e.seq == writes[0x0])
    assert reset.effects[0].startswith("device reset:")  # 2.4: writing 0 resets the device


def test_a_queue_size_read_is_the_reset_value_and_an_enable_takes_the_rings() -> None:
    # 4.1.4.3: queue_size holds the queue's maximum on reset; queue_enable makes the
    # queue live with the ring addresses written before it.
    explanations = _virtio()
    (size,) = [e for e in explanations if e.register == "common.queue_size"]
    assert size.value == ("common.queue_size=0x8: at reset",)
    (enable,) = [e for e in explanations if e.register == "common.queue_enable"]
    assert enable.effects == (
        "queue 0 enabled: size 8, descriptor table 0x300000, available ring 0x300100, "
        "used ring 0x300200",
    )


def test_the_kick_takes_the_chain_writes_the_used_ring_and_sends_the_msix_message() -> None:
    # split-ring: the device takes the chain from the available ring, writes the used
    # element then the used index; 4.1.5.4: with MSI-X the notification is the queue's
    # vector's message; the entropy device fills device-writable buffers with random bytes.
    explanations = _virtio()
    kick = next(e for e in explanations
                if e.kind == "event" and "entropy request of 16 bytes" in _text(e))  # fmt: skip
    effects = "\n".join(kick.effects)
    assert effects.startswith("queue 0 notified (available buffers)")
    assert "DMA write of 16 random bytes at 0x301200" in effects
    assert "used element (id 0, len 16) written at 0x300204, used index 1" in effects
    assert "DMA write of 8 bytes at 0x300204" in effects
    assert "queue 0 used_idx: 0x0 -> 0x1" in effects
    assert "isr: set QUEUE" in effects
    assert "MSI-X is enabled: vector 0's message:" in effects
    assert "message sent: 0x41 written at 0xfee00000" in effects


def test_a_read_after_a_device_reset_names_the_reset() -> None:
    # 2.4 / 4.1.4.3: writing 0 to device_status resets the device: the queue's vector
    # reads NO_VECTOR (0xffff) again, and the account says the reset write put it there.
    trace = read_trace(CAPTURES / "virtio-rng-pci-tcg-probe" / "trace.jsonl")
    last = max(getattr(r, "seq", 0) for r in trace.records)
    common = "virtio-pci-common-virtio-rng"
    extra = [
        Access(last + 1, "write", "mmio", 0x14, 1, 0x0, region=common),  # device_status
        Access(last + 2, "read", "mmio", 0x1A, 2, 0xFFFF, region=common),  # queue_msix_vector
    ]
    explainer = Explainer(verify_device("virtio-rng-pci"))
    result = replay(dataclasses.replace(trace, records=[*trace.records, *extra]),
                    verify_device("virtio-rng-pci"), observer=explainer)  # fmt: skip
    assert result.ok, (result.mismatches, result.event_mismatches)
    vector = _by_seq(explainer.explanations)[last + 2]
    assert vector.value == (
        f"common.queue_msix_vector=0xffff: by seq {last + 1} (write 0x0 to "
        "common.device_status): device reset (device_status written 0)",
    )

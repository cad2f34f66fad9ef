"""Device work that runs off the vCPU thread, on real captures (issue 11's acceptance).

The probe guest runs one virtio-blk request (modern interface, MSI-X, one kick). With
ioeventfd on (QEMU's default) KVM completes the guest's notify write by signalling an
eventfd: QEMU's notify handler never runs, the virtqueue handler runs on the main loop's
thread with the request's DMA. With ``ioeventfd=off`` the notify write exits to QEMU and is
handled inside ``kvm_cpu_exec`` on the vCPU thread. The e1000's mitigation timer is armed by
a register write on the vCPU thread and fires on the main loop.
"""

from __future__ import annotations

from collections.abc import Callable

from qtrace.launch.capture import CaptureResult
from qtrace.trace.codec import Trace, read_trace

Capture = Callable[..., CaptureResult]


def _ok(result: CaptureResult) -> Trace:
    assert result.status == "ok", (result.out_dir, result.reason)
    return read_trace(result.out_dir / "trace.jsonl")


def _funcs(trace: Trace, stack: str | None) -> list[str]:
    assert stack is not None
    return [frame.func for frame in trace.stacks[stack].frames]


def _notify_writes(trace: Trace) -> list[object]:
    return [a for a in trace.accesses if (a.region or "").startswith("virtio-pci-notify")]


def test_every_record_says_which_thread_it_ran_on(capture: Capture) -> None:
    trace = _ok(capture("virtio-blk-pci", "kvm"))
    timed = [*trace.accesses, *trace.exits, *trace.dmas, *trace.irqs, *trace.asyncs]
    assert timed and all(r.thread for r in timed)
    assert {a.thread for a in trace.accesses} == {"CPU 0/KVM"}


def test_virtio_blk_kick_goes_through_an_ioeventfd_to_the_main_loop(capture: Capture) -> None:
    trace = _ok(capture("virtio-blk-pci", "kvm"))
    added = [r for r in trace.asyncs if r.kind == "ioeventfd" and r.op == "add"]
    # The modern notify window; a transitional device (pc) also has one on the legacy
    # I/O BAR's queue-notify register.
    assert any((r.region or "").startswith("virtio-pci-notify") for r in added), added
    # KVM completed the kick in the kernel: the notify handler never ran.
    assert not _notify_writes(trace)
    runs = [r for r in trace.asyncs if r.kind == "fd-handler" and r.op == "run"]
    assert runs and {r.thread for r in runs} == {"main"}
    assert "kvm_cpu_exec" not in _funcs(trace, runs[0].stack)
    # The request's DMA ran there too: descriptor and ring reads, the used-ring write.
    on_main = [d for d in trace.dmas if d.thread == "main"]
    assert any(d.op == "read" and "cached" in (d.api or "") for d in on_main)
    assert any(d.op == "write" and "cached" in (d.api or "") for d in on_main)
    assert any(d.mapped for d in on_main), "the data buffers are mapped for the block layer"
    msix = [i for i in trace.irqs if i.line.startswith("MSI-X")]
    assert msix and msix[0].address == 0xFEE00000 and msix[0].masked is False


def test_with_ioeventfd_off_the_kick_is_handled_on_the_vcpu_thread(capture: Capture) -> None:
    trace = _ok(capture("virtio-blk-pci", "kvm", device_props=(("ioeventfd", "off"),)))
    assert not [r for r in trace.asyncs if r.kind == "ioeventfd"]
    kicks = [a for a in _notify_writes(trace) if getattr(a, "op", None) == "write"]
    assert kicks
    for kick in kicks:
        assert kick.thread == "CPU 0/KVM"  # type: ignore[attr-defined]
        funcs = _funcs(trace, kick.stack)  # type: ignore[attr-defined]
        assert funcs[0] == "virtio_pci_notify_write" and "kvm_cpu_exec" in funcs
    assert any(d.thread == "CPU 0/KVM" and "cached" in (d.api or "") for d in trace.dmas)


def test_e1000_mitigation_timer_is_armed_on_the_vcpu_and_fires_on_the_main_loop(
    capture: Capture,
) -> None:
    trace = _ok(capture("e1000", "kvm"))
    armed = [r for r in trace.asyncs if r.kind == "timer" and r.op == "arm"]
    fired = [r for r in trace.asyncs if r.kind == "timer" and r.op == "run"]
    assert any(r.callback == "e1000_mit_timer" and r.thread == "CPU 0/KVM" for r in armed)
    assert any(r.callback == "e1000_mit_timer" and r.thread == "main" for r in fired)


def test_nvme_identify_runs_in_a_bottom_half_on_the_main_loop(capture: Capture) -> None:
    trace = _ok(capture("nvme", "kvm"))
    doorbells = [a for a in trace.accesses if a.op == "write" and a.region == "nvme"]
    assert doorbells and all(a.thread == "CPU 0/KVM" for a in doorbells)
    runs = [r for r in trace.asyncs if r.kind == "bh" and r.op == "run"]
    assert any(r.callback == "nvme_process_sq" and r.thread == "main" for r in runs), runs
    # The command read and the 4 KiB Identify data written back, from the main loop.
    on_main = [d for d in trace.dmas if d.thread == "main"]
    assert any(d.op == "read" and d.size == 64 for d in on_main)
    assert any(d.op == "write" and d.size == 4096 and d.truncated for d in on_main)
    assert any(i.line.startswith("MSI-X") and i.thread == "main" for i in trace.irqs)


def test_edu_factorial_runs_on_edus_own_thread(capture: Capture) -> None:
    trace = _ok(capture("edu", "kvm"))
    assert any(i.thread == "edu" and i.line.startswith("MSI") for i in trace.irqs)
    # The DMA command arms edu's timer on the vCPU; the transfer runs when it fires.
    armed = [r for r in trace.asyncs if r.kind == "timer" and r.op == "arm"]
    assert any(r.thread == "CPU 0/KVM" for r in armed)
    assert any(d.thread == "main" and d.size == 64 for d in trace.dmas)

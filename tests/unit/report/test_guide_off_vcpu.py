"""reports/README.md, section 12 and the short answer's last point: each number, seq and
quote it gives for the work off the vCPU thread holds in the committed capture it names.

The facts are read here straight from the captures (trace.jsonl, kernel.jsonl, serial.log),
not through the guide's evidence code, and looked for in the committed README (which
test_committed_reports_are_up_to_date keeps equal to what the captures render).
"""

from __future__ import annotations

import re
from pathlib import Path

from qtrace.trace import Trace, read_trace
from qtrace.trace.kernel import read_kernel_log

REPORTS = Path(__file__).resolve().parents[3] / "reports"
CAPTURES = REPORTS / "captures"


def _guide() -> str:
    return (REPORTS / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    text = _guide()
    start = text.index(title)
    end = text.find("\n### ", start + len(title))
    return re.sub(r"\s+", " ", text[start : end if end > 0 else None])


def _trace(name: str) -> Trace:
    return read_trace(CAPTURES / name / "trace.jsonl")


def _funcs(trace: Trace, stack: str | None) -> list[str]:
    assert stack is not None
    return [f.func for f in trace.stacks[stack].frames]


def test_virtio_blk_the_ioeventfd_and_the_kick_that_never_reached_qemu() -> None:
    trace = _trace("virtio-blk-pci-kvm-probe")
    text = _section("### virtio-blk: the kick is an eventfd")
    notify = next(
        a
        for a in trace.asyncs
        if (a.kind, a.op) == ("ioeventfd", "add")
        and (a.region or "").startswith("virtio-pci-notify")
    )
    gpa = next(f.addr for f in trace.ioeventfds if f.op == "add" and f.space == "mmio")
    assert (
        f"`{notify.region}+0x0` (seq {notify.seq}, on CPU 0/KVM: guest-physical `{gpa:#x}`" in text
    )
    assert notify.thread == "CPU 0/KVM" and notify.size == 0 and notify.match_data is False
    # No access at all reached the notify region, and the README says how many there were.
    assert not [a for a in trace.accesses if (a.region or "").startswith("virtio-pci-notify")]
    assert f"None of the capture's {len(trace.accesses)} device accesses" in text
    # The kick as the kernel logged it, with no return to QEMU after it on that thread.
    log = read_kernel_log(CAPTURES / "virtio-blk-pci-kvm-probe")
    assert log is not None
    kicks = [
        e
        for e in log.events
        if e.event == "kvm_mmio" and f"gpa {gpa:#x}" in e.text and "write" in e.text
    ]
    assert len(kicks) == 1
    kick = kicks[0]
    assert f"`kvm_mmio: {kick.text}`" in text
    nxt = next(e for e in log.events if e.tid == kick.tid and e.ts > kick.ts)
    assert nxt.event != "kvm_userspace_exit"
    assert kick.comm == "CPU 0/KVM"


def test_virtio_blk_the_virtqueue_handler_its_dma_and_the_msix_message() -> None:
    trace = _trace("virtio-blk-pci-kvm-probe")
    text = _section("### virtio-blk: the kick is an eventfd")
    runs = [
        a
        for a in trace.asyncs
        if (a.kind, a.op) == ("fd-handler", "run")
        and "aio_dispatch_handler" in _funcs(trace, a.stack)
    ]
    assert [r.thread for r in runs] == ["main", "main"]
    guest_run = runs[1]
    assert f"seq {guest_run.seq} for the guest's kick; seq {runs[0].seq}" in text
    descriptors = [
        d for d in trace.dmas if d.stack and _funcs(trace, d.stack)[1] == "vring_split_desc_read"
    ]
    assert f"(seqs {', '.join(str(d.seq) for d in descriptors)})" in text
    for dma in descriptors:
        funcs = _funcs(trace, dma.stack)
        assert dma.thread == "main" and "virtio_blk_handle_output" in funcs
        assert "kvm_cpu_exec" not in funcs and not any(f.startswith("qemu_wait_io") for f in funcs)
    (used,) = [d for d in trace.dmas if d.stack and _funcs(trace, d.stack)[1] == "vring_used_write"]
    used_id, used_len = (
        int.from_bytes(bytes.fromhex(used.data[:8]), "little"),
        int.from_bytes(bytes.fromhex(used.data[8:16]), "little"),
    )
    assert f"`{used.data}`: id {used_id}, length {used_len}" in text
    assert (
        f"id {used_id} len {used_len}"
        in (CAPTURES / "virtio-blk-pci-kvm-probe" / "serial.log").read_text()
    )
    (msix,) = [i for i in trace.irqs if i.line.startswith("MSI-X")]
    assert f"Seq {msix.seq}: `msix_notify` on the main loop, {msix.line}" in text
    assert f"address `{msix.address:#x}`, data `{msix.data:#x}`" in text
    assert not [a for a in trace.asyncs if (a.kind, a.op) == ("irqfd", "signal")]
    assert "the trace has no irqfd signal at all" in text


def test_with_ioeventfd_off_the_notify_handler_runs_inside_kvm_cpu_exec() -> None:
    trace = _trace("virtio-blk-pci-kvm-probe-ioeventfd-off")
    text = _section("### The same kick with `ioeventfd=off`")
    assert not [a for a in trace.asyncs if a.kind == "ioeventfd"] and not trace.ioeventfds
    (kick,) = [a for a in trace.accesses if (a.region or "").startswith("virtio-pci-notify")]
    funcs = _funcs(trace, kick.stack)
    assert kick.op == "write" and kick.thread == "CPU 0/KVM"
    assert funcs[0] == "virtio_pci_notify_write" and "kvm_cpu_exec" in funcs
    assert f"access {kick.seq}, the guest's 2-byte write" in text
    on_vcpu = [d for d in trace.dmas if d.thread == "CPU 0/KVM"]
    assert all("virtio_pci_notify_write" in _funcs(trace, d.stack) for d in on_vcpu)
    assert (
        f"{len(on_vcpu)} DMA records of the pop (seqs {on_vcpu[0].seq}-{on_vcpu[-1].seq})" in text
    )


def test_nvme_the_doorbell_the_identify_data_and_the_completion() -> None:
    trace = _trace("nvme-kvm-probe")
    text = _section("### nvme:")
    (doorbell,) = [a for a in trace.accesses if a.region == "nvme" and a.offset == 0x1000]
    assert doorbell.op == "write" and doorbell.thread == "CPU 0/KVM"
    assert f"access {doorbell.seq}, the guest's write of `{doorbell.value:#x}`" in text
    schedule = next(
        a
        for a in trace.asyncs
        if (a.kind, a.op, a.callback) == ("bh", "schedule", "nvme_process_sq")
        and a.seq > doorbell.seq
    )
    run = next(
        a
        for a in trace.asyncs
        if (a.kind, a.op, a.callback) == ("bh", "run", "nvme_process_sq") and a.seq > schedule.seq
    )
    assert schedule.thread == "CPU 0/KVM" and run.thread == "main"
    assert (
        f"`nvme_process_sq` ran on the main loop (seq {run.seq}; scheduled at seq {schedule.seq}"
        in text
    )
    sizes = [(d.op, d.size, d.thread) for d in trace.dmas]
    assert sizes == [("read", 64, "main"), ("write", 4096, "main"), ("write", 16, "main")]
    assert "4096 bytes at `0x312000`" in text
    (msix,) = [i for i in trace.irqs if i.level == 1]
    assert msix.line.startswith("MSI-X") and msix.thread == "main"
    assert f"Then {msix.line} (seq {msix.seq}, on the main loop)" in text
    serial = (CAPTURES / "nvme-kvm-probe" / "serial.log").read_text()
    assert '# nvme model "QEMU NVMe Ctrl"' in serial and '`nvme model "QEMU NVMe Ctrl"`' in text


def test_edu_the_factorial_on_its_thread_and_the_dma_timer() -> None:
    trace = _trace("edu-kvm-probe")
    text = _section("### edu:")
    (fact,) = [
        a for a in trace.accesses if a.region == "edu-mmio" and a.offset == 8 and a.op == "write"
    ]
    irq = next(i for i in trace.irqs if i.seq > fact.seq)
    assert irq.thread == "edu" and _funcs(trace, irq.stack)[:3] == [
        "msi_notify",
        "edu_raise_irq",
        "edu_fact_thread",
    ]
    assert f"Access {fact.seq} writes `{fact.value}` to `FACTORIAL`" in text
    assert f"{irq.line} at seq {irq.seq} on the thread `edu`" in text
    result = next(a for a in trace.accesses if a.seq > irq.seq and a.op == "read" and a.offset == 8)
    assert result.value == 3628800 == 10 * 9 * 8 * 7 * 6 * 5 * 4 * 3 * 2
    assert f"`FACTORIAL` = `{result.value}` (access {result.seq}" in text
    arms = [
        a for a in trace.asyncs if (a.kind, a.op, a.callback) == ("timer", "arm", "edu_dma_timer")
    ]
    fired = [
        a for a in trace.asyncs if (a.kind, a.op, a.callback) == ("timer", "run", "edu_dma_timer")
    ]
    assert {a.thread for a in arms} == {"CPU 0/KVM"} and {a.thread for a in fired} == {"main"}
    assert f"armed {len(arms)} times on CPU 0/KVM (first at seq {arms[0].seq})" in text


def test_the_short_answer_says_what_of_the_guess_holds() -> None:
    names = [
        "virtio-blk-pci-kvm-probe",
        "virtio-blk-pci-kvm-probe-ioeventfd-off",
        "nvme-kvm-probe",
        "edu-kvm-probe",
    ]
    queued = ("qemu_wait_io_event", "qemu_process_cpu_events", "process_queued_cpu_work")
    total = 0
    for name in names:
        trace = _trace(name)
        timed = [*trace.accesses, *trace.exits, *trace.dmas, *trace.irqs, *trace.asyncs]
        total += len(timed)
        for record in timed:
            if record.stack is not None:
                funcs = _funcs(trace, record.stack)
                assert not any(f.startswith(queued) or "run_on_cpu" in f for f in funcs)
    answer = _guide().split("## The short answer", 1)[1].split("\n\n", 2)[1]
    assert "**Partly, for other devices.**" in answer
    assert f"None of the {total} records of these captures" in answer
    assert "not run as `run_on_cpu()` work in `qemu_wait_io_event()`" in answer

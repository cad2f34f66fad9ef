"""The multi-thread diagram of one request (qtrace/report/request_chain.py, request_flow.py)
on the committed captures of reports/captures/: each step says only what the records prove,
on the thread that made them, in trace order, and what is inferred says so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qtrace.export.threads import assign_threads
from qtrace.report.request_chain import request_chain
from qtrace.report.request_flow import KERNEL, RequestFlow, request_flow
from qtrace.report.sequence import to_mermaid, to_svg
from qtrace.trace import Trace, read_trace
from qtrace.trace.kernel import KernelLog, read_kernel_log
from qtrace.trace.kernel_join import join_kernel

CAPTURES = Path(__file__).resolve().parents[3] / "reports" / "captures"
VIRTIO_BLK = "virtio-blk-pci-kvm-probe"
IOEVENTFD_OFF = "virtio-blk-pci-kvm-probe-ioeventfd-off"
NVME = "nvme-kvm-probe"
EDU = "edu-kvm-probe"
E1000 = "e1000-kvm-probe"


def _load(name: str, kernel: bool = True) -> tuple[Trace, RequestFlow]:
    trace = read_trace(CAPTURES / name / "trace.jsonl")
    log = read_kernel_log(CAPTURES / name) if kernel else None
    join = join_kernel(trace, log) if log is not None and log.recorded else None
    flow = request_flow(trace, log, join)
    assert flow is not None
    return trace, flow


def _notify_gpa(trace: Trace) -> int:
    return next(f.addr for f in trace.ioeventfds if f.op == "add" and f.space == "mmio")


def test_virtio_blk_the_kick_is_the_kernels_write_and_the_work_the_main_loops() -> None:
    trace, flow = _load(VIRTIO_BLK)
    handler, completion = flow.chain.segments
    assert (handler.kind, handler.entry, handler.link) == (
        "run",
        "virtio_queue_host_notifier_read",
        "ioeventfd",
    )
    assert handler.thread.name == completion.thread.name == "main loop"
    assert (completion.kind, completion.entry, completion.link) == (
        "coroutine",
        "blk_aio_read_entry",
        "inferred",
    )
    kick, signal, run = flow.steps[:3]
    # The guest's write, as KVM logged it, at the ioeventfd's address, with no exit after it.
    assert kick.kernel and (kick.src, kick.dst) == ("V0", KERNEL)
    assert f"gpa {_notify_gpa(trace):#x}" in kick.event and kick.event.startswith("kvm_mmio: ")
    log = read_kernel_log(CAPTURES / VIRTIO_BLK)
    assert log is not None
    event = next(e for e in log.events if f"{e.event}: {e.text}" == kick.event)
    after = [e for e in log.events if e.tid == event.tid and e.ts > event.ts]
    assert after[0].event != "kvm_userspace_exit"
    # The signal has no tracepoint: drawn, and marked so.
    assert signal.inferred and (signal.src, signal.dst) == (KERNEL, "M0")
    assert run.seqs == (handler.start.seq,) and "virtio_blk_handle_output" in run.text
    texts = [s.text for s in flow.steps]
    assert any("vring_split_desc_read" in t and "x3" in t for t in texts)
    assert any("vring_used_write" in t for t in texts)
    msix, msi_set, accepted = flow.steps[-3:]
    assert (msix.src, msix.dst, msix.seqs) == ("M0", KERNEL, (flow.chain.irq.seq,))
    assert msi_set.event.startswith("kvm_msi_set_irq: ") and msi_set.comm == "qemu-system-x86"
    assert accepted.event.startswith("kvm_apic_accept_irq: ") and accepted.dst == "V0"
    assert [s.text for s in flow.inferred] == [signal.text, flow.inferred[1].text]


@pytest.mark.parametrize("name", [VIRTIO_BLK, IOEVENTFD_OFF, NVME, EDU, E1000])
def test_every_step_cites_records_of_its_own_thread_in_trace_order(name: str) -> None:
    trace, flow = _load(name)
    lanes = {p.id: p.label for p in flow.lanes}
    threads = {r.seq: t for r, t in assign_threads(trace)}
    cited = [seq for step in flow.steps for seq in step.seqs[:1]]
    assert cited == sorted(cited)
    for step in flow.steps:
        assert step.src in lanes and step.dst in lanes
        if step.kernel:
            assert step.t is not None and (KERNEL in (step.src, step.dst))
            continue
        for seq in step.seqs:
            if step.inferred:
                continue  # a registration the step points at, not a step on a lane
            # A reply (KVM_RUN returning) is the exit record of the thread it returns to.
            lane = step.dst if step.reply else step.src
            assert lanes[lane].startswith(threads[seq].name), (step, threads[seq])
    # Times are the trace's own: each step's t is its first record's.
    by_seq = {r.seq: r for r, _ in assign_threads(trace)}
    for step in flow.steps:
        if step.seqs and not step.kernel and not step.inferred:
            assert step.t == by_seq[step.seqs[0]].t


def test_with_ioeventfd_off_the_notify_handler_pops_the_queue_on_the_vcpu() -> None:
    trace, flow = _load(IOEVENTFD_OFF)
    access, completion = flow.chain.segments
    assert (access.kind, access.entry, access.thread.name) == (
        "access",
        "virtio_pci_notify_write",
        "CPU 0/KVM",
    )
    assert completion.thread.name == "main loop" and completion.link == "inferred"
    kick, exit_step, handled = flow.steps[:3]
    assert kick.kernel and "gpa 0xfebfb000" in kick.event and "write" in kick.event
    assert (exit_step.src, exit_step.dst, exit_step.text) == (
        KERNEL,
        "V0",
        "KVM_RUN returns KVM_EXIT_MMIO",
    )
    assert handled.text.startswith("kvm_cpu_exec → virtio_pci_notify_write")
    on_vcpu = [s for s in flow.steps if s.src == s.dst == "V0" and "vring_" in s.text]
    assert any("vring_split_desc_read" in s.text for s in on_vcpu)
    assert not any(a.kind == "ioeventfd" for a in trace.asyncs)


def test_nvme_the_doorbell_schedules_the_bottom_halves_that_do_the_command() -> None:
    _, flow = _load(NVME)
    doorbell, process, post = flow.chain.segments
    assert (doorbell.kind, doorbell.entry) == ("access", "nvme_mmio_write")
    assert (process.entry, process.link, process.thread.name) == (
        "nvme_process_sq",
        "setup",
        "main loop",
    )
    assert process.setup is not None and process.setup.thread == "CPU 0/KVM"
    assert post.entry == "nvme_post_cqes" and post.setup is not None
    assert post.setup.thread == "main"
    handoff = next(s for s in flow.steps if s.src == "V0" and s.dst == "M0")
    assert handoff.seqs == (process.setup.seq,) and "nvme_process_sq" in handoff.text
    sizes = [s.text for s in flow.steps if s.text.startswith("DMA ")]
    assert [re.search(r"DMA (\w+) (\d+) B", t).groups() for t in sizes] == [  # type: ignore[union-attr]
        ("read", "64"),
        ("write", "4096"),
        ("write", "16"),
    ]
    assert not flow.inferred


def test_edu_the_factorial_runs_on_edus_thread_and_the_wake_up_is_inferred() -> None:
    _, flow = _load(EDU)
    access, thread = flow.chain.segments
    assert (access.entry, thread.kind, thread.entry, thread.thread.name) == (
        "edu_mmio_write",
        "thread",
        "edu_fact_thread",
        "edu",
    )
    lanes = {p.id: p.label for p in flow.lanes}
    assert "edu" in lanes.values()
    (wake,) = flow.inferred
    assert (lanes[wake.src], lanes[wake.dst]) == ("CPU 0/KVM (vCPU thread)", "edu")
    msi = next(s for s in flow.steps if s.seqs == (flow.chain.irq.seq,) and s.dst == KERNEL)
    assert lanes[msi.src] == "edu" and msi.text.startswith("MSI:0")


def test_without_kernel_events_the_kernels_part_is_inferred_and_says_why() -> None:
    _, flow = _load(VIRTIO_BLK, kernel=False)
    assert flow.kernel == "absent"
    kick = flow.steps[0]
    assert kick.inferred and "no kernel events" in kick.text
    assert any(p.label == "KVM, host kernel (not recorded)" for p in flow.lanes)
    assert flow.steps[-1].inferred and "no kernel events" in flow.steps[-1].text


def test_a_trace_without_threads_has_no_request() -> None:
    assert request_chain(read_trace(CAPTURES / "e1000-q35-probe" / "trace.jsonl")) is None


def test_the_diagram_renders_for_markdown_and_html() -> None:
    _, flow = _load(VIRTIO_BLK)
    sequence = flow.sequence()
    mermaid = to_mermaid(sequence)
    assert mermaid.startswith("sequenceDiagram\n    participant V0 as CPU 0/KVM (vCPU thread)")
    for line in mermaid.splitlines()[1:]:
        message = line.split(": ", 1)[-1]
        assert "#" not in message and ";" not in message
    assert "-->>M0: (inferred) KVM signals the ioeventfd's eventfd" in mermaid
    svg = to_svg(sequence)
    width = int(re.search(r'width="(\d+)"', svg).group(1))  # type: ignore[union-attr]
    longest = max(len(m.text) for m in sequence.messages)
    assert width > longest * 6  # the longest label fits


def test_a_kernel_log_of_another_shape_is_only_an_argument() -> None:
    """The builder reads the log it is given: an unrecorded one is the same as none."""
    trace = read_trace(CAPTURES / VIRTIO_BLK / "trace.jsonl")
    log = read_kernel_log(CAPTURES / VIRTIO_BLK)
    assert log is not None
    unrecorded = KernelLog(type(log.header)("unavailable", "no tracefs"))
    flow = request_flow(trace, unrecorded, None)
    assert flow is not None and flow.kernel == "absent"

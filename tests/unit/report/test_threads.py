"""The "Where the work ran" section, on real captures whose records carry ``thread``."""

from __future__ import annotations

from qtrace.report.model import report_from_trace
from qtrace.report.render import render_html, render_markdown
from qtrace.report.threads import where_work_ran
from qtrace.trace import read_trace
from tests.unit.report.conftest import FIXTURES

VIRTIO_BLK = FIXTURES / "virtio-blk-pci-kvm-threads" / "trace.jsonl"
E1000 = FIXTURES / "e1000-kvm-10.2.2-threads" / "trace.jsonl"
OLD = FIXTURES / "e1000-kvm-10.2.2" / "trace.jsonl"


def test_each_thread_lists_what_ran_there() -> None:
    section = where_work_ran(read_trace(VIRTIO_BLK))
    assert section is not None
    rows = {t.thread: t for t in section.threads}
    assert list(rows) == ["CPU 0/KVM", "main loop"]
    vcpu, main = rows["CPU 0/KVM"], rows["main loop"]
    assert vcpu.accesses == 142 and vcpu.dmas == 0
    assert ("virtio_pci_common_write", 22) in vcpu.handlers
    assert main.accesses == 0 and main.dmas == 23 and main.irq_lines == (("MSI-X:0", 1),)
    assert ("address_space_map", 3) in main.dma_apis
    assert main.runs == (("fd-handler", "virtio_queue_host_notifier_read", 4),)


def test_the_ioeventfd_links_the_notify_address_to_the_handler_on_the_main_loop() -> None:
    section = where_work_ran(read_trace(VIRTIO_BLK))
    assert section is not None and section.armed == ()
    (path,) = section.notifiers
    assert path.addresses == ("virtio-pci-notify-virtio-blk+0x0", "virtio-pci+0x10")
    assert (path.add_seq, path.add_thread, path.inline_accesses) == (537, "CPU 0/KVM", 0)
    assert (path.callback, path.register_seq) == ("virtio_queue_host_notifier_read", 539)
    # Two runs from the event loop; the two made while tearing the ioeventfd down don't count.
    assert (path.run_thread, path.run_seq, path.runs) == ("main loop", 540, 2)
    assert (path.dmas, path.dma_first_seq) == (20, 541)


def test_a_timer_armed_by_a_register_write_and_run_on_the_main_loop() -> None:
    section = where_work_ran(read_trace(E1000))
    assert section is not None
    (armed,) = section.armed
    assert (armed.callback, armed.setup_seq, armed.setup_thread) == (
        "e1000_mit_timer",
        321,
        "CPU 0/KVM",
    )
    assert (armed.run_seq, armed.run_thread, armed.runs) == (323, "main loop", 1)
    assert armed.access_handler == "e1000_mmio_write" and armed.access_kind == "mmio write"


def test_both_views_say_it() -> None:
    report = report_from_trace(read_trace(VIRTIO_BLK), name="vb")
    for text in (render_markdown(report), render_html(report)):
        assert "Where the work ran" in text
        assert "no access to those addresses reached QEMU's handler on a vCPU thread" in text
        assert "virtio_queue_host_notifier_read (registered at seq 539), ran on main loop" in text
    e1000 = render_markdown(report_from_trace(read_trace(E1000), name="e1"))
    assert (
        "e1000_mit_timer (timer) was armed on CPU 0/KVM (seq 321) while e1000_mmio_write handled"
        " the guest's mmio write of ICS (access 320), and ran on main loop (seq 323)." in e1000
    )


def test_traces_without_threads_have_no_section() -> None:
    trace = read_trace(OLD)
    assert where_work_ran(trace) is None
    report = report_from_trace(trace, name="old")
    assert "Where the work ran" not in render_markdown(report) + render_html(report)

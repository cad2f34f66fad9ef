"""Reports of a ``--collector fast`` capture under KVM that recorded the exits (its header's
``arming`` has ``kvm_exits``): the exits are counted and tied to their accesses as a
breakpoint capture's are, the guest's PC comes from them, and the one access end to end says
where the fast collector took the exit. The fixture is a real fast capture of the e1000 probe
(KVM, QEMU 10.2.2): its configuration-space start and its first MMIO accesses, cut short."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from qtrace.report.model import CaptureReport, build_report
from qtrace.report.recorded import recorded
from qtrace.report.render import render_html, render_markdown

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "fast-e1000-kvm-exits"


@pytest.fixture(scope="module")
def report() -> CaptureReport:
    return build_report(FIXTURE)


def test_the_header_says_the_exits_were_recorded(report: CaptureReport) -> None:
    kinds = recorded(report.header)
    assert kinds.fast and kinds.has("kvm_exits") and kinds.has("irq")
    assert kinds.missing == ("dma", "async")
    assert kinds.guest_pcs and not (kinds.layout or kinds.kernel)


def test_the_report_counts_the_exits_and_ties_the_accesses_to_them(
    report: CaptureReport,
) -> None:
    text = render_markdown(report)
    for true in (
        "| KVM exits recorded | 66 |",
        "All 14 device accesses (4 distinct stacks) were handled on the vCPU thread "
        "(kvm_vcpu_thread_fn) inside kvm_cpu_exec. 11 of them came with a KVM exit of their own",
        "exit record #241: kvm_cpu_exec takes `KVM_EXIT_MMIO` (the fast collector's tracepoint "
        "just before its switch on the exit reason)",
        "(guest PC 0x10abda) makes the read; KVM left this RIP in the kvm_run page's synced "
        "registers at the exit",
        "| `KVM_EXIT_MMIO` | read 4B @ 0xfebe0014 | 3 | 3 |",
    ):
        assert true in text, true
    for false in (
        "The fast collector does not record KVM exits",
        "the collector's breakpoint on that case",
        "records no guest PC",
        "| KVM exits | not recorded",
    ):
        assert false not in text, false
    assert "the fast collector's tracepoint just before its switch" in html.unescape(
        render_html(report)
    )

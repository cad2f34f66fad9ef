"""The answer ``qtrace capture`` prints under its summary (issue 14 item 1): the report's
representative access as a compact path, the findings in short, where the report is; and the
thread findings behind "handled on another thread", from the records' ``thread`` fields."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from qtrace.report.model import CaptureReport, Finding, ThreadWork, build_report
from qtrace.report.render import finding_rows, finding_text, render_markdown
from qtrace.report.terminal import access_path_tree, answer_renderables
from qtrace.trace import Access, Async, Exit, Frame, Header, Record, Stack

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"
DEVICES = Path(__file__).resolve().parents[2] / "fixtures" / "devices"
THREADS = FIXTURES / "e1000-kvm-10.2.2-threads"

MakeCapture = Callable[[str, Iterable[Record]], Path]


def _text(report: CaptureReport, report_file: str | None = None) -> str:
    out = StringIO()
    console = Console(file=out, width=200, color_system=None)
    for renderable in answer_renderables(report, report_file):
        console.print(renderable)
    return out.getvalue()


def _rows(report: CaptureReport) -> list[tuple[str, str]]:
    return [row for finding in report.findings for row in finding_rows(finding)]


def test_the_answer_shows_the_reports_representative_access_end_to_end() -> None:
    report = build_report(THREADS)
    access = report.representative
    assert access is not None and access.stack is not None
    text = _text(report, "captures/x/report.html")
    lines = text.splitlines()
    assert lines[0].startswith(
        f"One access, end to end: access {access.seq}, a 4-byte mmio read at offset 0x0 (CTRL), "
        "value 0x00140240"
    )
    assert "after KVM_EXIT_MMIO, on CPU 0/KVM" in lines[0]
    # The same stack the report's section follows, one line per frame, outermost first, from
    # the vCPU loop in (the thread start is left out, as in the report's diagram).
    view = report.stack_view(access.stack)
    assert view is not None
    frames = [f for f in reversed(view.stack.frames) if f.layer.id != "thread-start"]
    frames = [f for f in frames if f.layer.id != "qemu-thread"]
    shown = [line for line in lines if any(f"{f.func}  {f.location}" in line for f in frames)]
    assert len(shown) == len(frames)
    assert [f.func for f in frames][0] == "kvm_vcpu_thread_fn"
    assert "e1000_mmio_read  hw/net/e1000.c:1310" in shown[-1]
    assert "clone3" not in text and "qemu_thread_start" not in text
    for layer in ("vCPU thread", "accelerator: KVM exit handling", "memory API", "device model"):
        assert layer in text
    assert text.rstrip().endswith("report           captures/x/report.html")


def test_the_answer_is_compact() -> None:
    text = _text(build_report(THREADS), "report.html")
    assert len(text.splitlines()) <= 25, text
    assert "glibc" not in text, "no frame explanations: those are the report's"


def test_the_findings_in_short_say_synchronous_coalesced_and_other_threads() -> None:
    rows = dict(_rows(build_report(THREADS)))
    assert rows["synchronous"] == (
        "all 84 accesses handled on the vCPU thread inside kvm_cpu_exec (6 distinct stacks); "
        "75 came with a KVM exit of their own"
    )
    assert rows["coalesced"].startswith("9 writes made no exit: KVM buffered them")
    assert "(all just before the next access)" in rows["coalesced"]
    assert rows["other threads"] == "main loop: timer run e1000_mit_timer (armed on CPU 0/KVM)"
    assert rows["not on the path"].startswith("qemu_wait_io_event / qemu_process_cpu_events")


def test_work_on_other_threads_is_what_the_records_threads_show() -> None:
    report = build_report(THREADS)
    found = {f.key: f for f in report.findings}
    other = found["work-on-other-threads"]
    assert other.holds and other.threads == ("CPU 0/KVM",)
    [work] = other.elsewhere
    assert (work.thread, work.record, work.what, work.callback) == (
        "main loop",
        "async",
        "timer run",
        "e1000_mit_timer",
    )
    assert (work.set_up_op, work.set_up_on, work.count) == ("arm", "CPU 0/KVM", 1)
    assert "all-on-vcpu-threads" not in found
    sentence = finding_text(other)
    assert "Not everything ran on the vCPU thread (CPU 0/KVM)" in sentence
    assert "main loop: timer run e1000_mit_timer (armed on CPU 0/KVM)" in sentence
    assert sentence in render_markdown(report), "the report says it too"


def test_a_bottom_half_run_names_the_thread_that_scheduled_it_only_when_another() -> None:
    found = {f.key: f for f in build_report(DEVICES / "nvme-kvm-q35-root-port.jsonl").findings}
    work = {(w.what, w.callback): w for w in found["work-on-other-threads"].elsewhere}
    assert work[("bh run", "nvme_process_sq")].set_up_on == "CPU 0/KVM"
    # nvme_post_cqes was last scheduled on the main loop itself, just before it ran.
    assert work[("bh run", "nvme_post_cqes")].set_up_on is None
    assert work[("write", None)].record == "dma" and work[("write", None)].count == 2
    assert any(w.record == "irq" and w.what == "MSI-X:0" for w in work.values())
    rows = dict(_rows(build_report(DEVICES / "nvme-kvm-q35-root-port.jsonl")))
    assert (
        "bh run nvme_process_sq (scheduled on CPU 0/KVM), DMA read, DMA write x2"
        in (rows["other threads"])
    )


def test_everything_on_the_vcpu_thread_is_said_so() -> None:
    report = build_report(DEVICES / "edu-kvm.jsonl")
    found = {f.key: f for f in report.findings}
    assert "work-on-other-threads" not in found
    assert found["all-on-vcpu-threads"].threads == ("CPU 0/KVM",)
    rows = dict(_rows(report))
    assert rows["threads"].endswith("ran on CPU 0/KVM: no device work on another thread")


def test_traces_without_threads_get_no_thread_finding() -> None:
    """Older traces (the committed captures among them) say nothing about threads, so the
    reports made from them do not change."""
    for name in ("e1000-kvm-10.2.2", "e1000-tcg-7.2"):
        keys = {f.key for f in build_report(FIXTURES / name).findings}
        assert not keys & {"all-on-vcpu-threads", "work-on-other-threads"}, name


def test_tcg_says_no_exit_and_the_tcg_layers() -> None:
    text = _text(build_report(FIXTURES / "e1000-tcg-10.2.2"))
    first = text.splitlines()[0]
    assert "a 4-byte mmio read at offset 0x8 (STATUS), value 0x80080783" in first
    assert "no exit (TCG softmmu)" in first
    assert "TCG softmmu (load/store slow path)" in text and "helper_ldul_mmu" in text
    assert "no KVM exit under TCG" in text


def test_a_contradicted_finding_is_shown_with_its_stacks(make_capture: MakeCapture) -> None:
    frames = (
        Frame("e1000_mmio_read", "hw/net/e1000.c", 1291),
        Frame("main_loop_wait", "util/main-loop.c", 600),
    )
    records: list[Record] = [
        Header(device="e1000", qemu_version="10.2.2", accel="kvm"),
        Stack("s1", frames),
        Exit(1, "KVM_EXIT_MMIO", phys_addr=0xFEBC0008, len=4, is_write=False, thread="main"),
        Access(2, "read", "mmio", 0x8, 4, 0x80080783, exit_seq=1, stack="s1", thread="main"),
        Async(3, "timer", "run", callback="e1000_mit_timer", stack="s1", thread="main"),
    ]
    report = build_report(make_capture("odd", records))
    rows = _rows(report)
    assert ("not synchronous", "1 of 1 access stacks do not pass through kvm_cpu_exec: s1") in rows
    other = dict(rows)["other threads"]
    assert other == "main loop: exit KVM_EXIT_MMIO, mmio read access, timer run e1000_mit_timer"


@pytest.mark.parametrize("key", ["all-on-vcpu-threads", "work-on-other-threads"])
def test_every_thread_finding_has_both_forms(key: str) -> None:
    work = (ThreadWork("IO iothread0", "dma", "read", None, 2),)
    finding = Finding(key, True, records=3, threads=("CPU 0/TCG",), elsewhere=work)
    assert finding_text(finding) and all(label and text for label, text in finding_rows(finding))


def test_no_access_no_path(make_capture: MakeCapture) -> None:
    report = build_report(make_capture("empty", [Header("e1000", "10.2.2", "kvm")]))
    assert access_path_tree(report) is None
    assert _text(report) == ""

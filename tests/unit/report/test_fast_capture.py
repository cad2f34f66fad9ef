"""Reports of a ``--collector fast`` capture say what that collector did not record.

The fast collector records the device's register accesses only (TRACE_FORMAT.md: the header's
``arming`` names no ``pci_config``, ``irq``, ``dma``, ``async`` or ``kvm_exits`` and says so in
``not_recorded``). A report must not read the absence of those records as the absence of the
events: no "0 exits", no "no device work on another thread", no "exit to the host" in the
diagram, no ``?`` for the handler frame's location. The fixtures are the first accesses of
real fast captures of the e1000 probe (KVM and TCG, QEMU 10.2.2), cut short.
"""

from __future__ import annotations

import html
import json
import shutil
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from qtrace.cli import capture as capture_cli
from qtrace.cli.app import app
from qtrace.launch.capture import CaptureRequest, CaptureResult
from qtrace.report.model import CaptureReport, build_report
from qtrace.report.recorded import Recorded, recorded
from qtrace.report.render import finding_rows, render_html, render_markdown
from qtrace.report.terminal import answer_renderables, show_renderables
from qtrace.trace import Header
from qtrace.trace.kinds import Accel, CaptureStatus

HERE = Path(__file__).resolve().parent / "fixtures"
FAST_KVM = HERE / "fast-e1000-kvm"
FAST_TCG = HERE / "fast-e1000-tcg"
TRACES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"
BREAKPOINT = TRACES / "e1000-kvm-10.2.2-threads"

NOT_RECORDED = "not recorded by the fast collector"

# Sentences that are true of a breakpoint capture and false (or misleading) of a fast one.
FALSE_OF_FAST = (
    "came with a KVM exit of their own",
    "| KVM exits recorded | 0 |",
    "| interrupt line changes | 0 |",
    "| DMA transfers | 0 |",
    "the trace shows no device work on another thread",
    "(accesses, exits, interrupts, DMA, async work)",
    "exit to the host",
    "KVM_RUN returns: exit",
    "it was made before",
    "recorded at the handler's return",
    "recorded at the handler's entry",
    "| `?` |",
    "no linked exit",
)


def _terminal(renderables: list[object]) -> str:
    out = StringIO()
    console = Console(file=out, width=400, color_system=None)
    for renderable in renderables:
        console.print(renderable)
    return out.getvalue()


@pytest.fixture(scope="module")
def kvm() -> CaptureReport:
    return build_report(FAST_KVM)


@pytest.fixture(scope="module")
def tcg() -> CaptureReport:
    return build_report(FAST_TCG)


# --- what the header says was recorded ------------------------------------------------------


def _header(arming: dict[str, str], **extra: object) -> Header:
    return Header(device="e1000", qemu_version="10.2.2", accel="kvm", arming=arming, extra=extra)


def test_a_fast_header_recorded_the_accesses_only() -> None:
    kinds = recorded(build_report(FAST_KVM).header)
    assert kinds.fast and kinds.by == "the fast collector"
    assert kinds.missing == ("kvm_exits", "irq", "dma", "async", "pci_config")
    assert not any(kinds.has(k) for k in kinds.missing)
    assert not (kinds.layout or kinds.kernel or kinds.guest_pcs) and kinds.in_accessor
    assert kinds.words("irq", "dma") == "interrupts or DMA"


def test_a_header_that_names_what_it_left_out_recorded_the_kinds_it_has_keys_for() -> None:
    kinds = recorded(_header({"device_handlers": "x", "irq": "x", "not_recorded": "dma: why"}))
    assert kinds.missing == ("kvm_exits", "dma", "async", "pci_config") and not kinds.fast


def test_older_headers_are_read_as_before() -> None:
    # No not_recorded, no collector: every kind is taken as recorded (the committed reports).
    assert recorded(_header({"device_handlers": "x", "irq": "x"})) == Recorded()
    assert recorded(_header({})) == Recorded()
    partial = recorded(_header({"async": "on the marker"}, record_async=["timer"]))
    assert partial.missing == () and partial.async_kinds == ("timer",)


def test_a_guest_plan_without_async_work_did_not_record_it() -> None:
    kinds = recorded(_header({"async": "not recorded for this guest (its hooks stop QEMU)"}))
    assert kinds.missing == ("async",) and kinds.by == "the collector"


# --- the report -----------------------------------------------------------------------------


def test_the_summary_says_what_the_fast_collector_did_not_record(kvm: CaptureReport) -> None:
    counts = dict(kvm.counts)
    assert counts["accesses"] == 30 and counts["distinct stacks"] == 4
    for label in (
        "KVM exits",
        "interrupts",
        "DMA",
        "asynchronous work",
        "configuration-space accesses",
    ):
        assert counts[label] == NOT_RECORDED, label
    assert "KVM exits recorded" not in counts and "DMA transfers" not in counts


def test_the_markdown_report_of_a_fast_kvm_capture_says_only_what_it_recorded(
    kvm: CaptureReport,
) -> None:
    text = render_markdown(kvm)
    for false in FALSE_OF_FAST:
        assert false not in text, false
    for true in (
        f"| KVM exits | {NOT_RECORDED} |",
        f"| interrupts | {NOT_RECORDED} |",
        f"| DMA | {NOT_RECORDED} |",
        f"| asynchronous work | {NOT_RECORDED} |",
        f"| configuration-space accesses | {NOT_RECORDED} |",
        # The findings: what the stacks show, and no conclusion from the missing exits.
        "All 30 device accesses (4 distinct stacks) were handled on the vCPU thread "
        "(kvm_vcpu_thread_fn) inside kvm_cpu_exec. The fast collector does not record KVM "
        "exits, so no access is linked to an exit of its own; only the stacks show which made "
        "none. 9 were writes that made no exit",
        "All 30 recorded events that name their thread ran on the vCPU thread (CPU 0/KVM). "
        "The fast collector does not record KVM exits, interrupts, DMA or asynchronous work, "
        "so the trace does not say whether the device did work on another thread.",
        # Where the work ran: the columns of what was not looked for say so.
        "The fast collector does not record interrupts, DMA or asynchronous work: where the "
        "table says not recorded, nothing was looked for",
        "| CPU 0/KVM | 30 | e1000_mmio_write x16, e1000_mmio_read x14 | not recorded |  | "
        "not recorded | not recorded | not recorded |",
        # One access, end to end: where the fast collector took the value, no kernel, no PC.
        "recorded in memory_region_read_accessor once the handler returned",
        "the fast collector does not record the host kernel's kvm: events (this capture has "
        "no kernel.jsonl)",
        "No guest function is named: the fast collector records no guest PC.",
        "    G->>K: guest read 4B @ mmio +0x0 CTRL\n",
        "KVM_RUN returns (the exit is not recorded by the fast collector)",
        # How KVM decided to exit: neither the memory map nor the kernel's events.
        "the fast collector does not record the memory map that decides whether a guest "
        "access leaves KVM",
        "This capture has no kernel.jsonl: the fast collector does not record the host "
        "kernel's kvm: events.",
        # Regions: the configuration space was not looked at; the I/O BAR was.
        "| not recorded | not recorded by the fast collector |",
        "No access reached the handlers of this region in this capture: e1000-io (BAR 1, 64 B).",
        "The fast collector does not record configuration-space accesses, so this capture "
        "does not say whether the guest accessed pci-config (configuration space, 256 B).",
        # The model replays the register accesses alone.
        "The fast collector does not record interrupts, DMA or asynchronous work, so the "
        "model replays the register accesses without them",
        # The handler frame has its name only.
        "| 0 | `e1000_mmio_read` | device model |",
        "none recorded: the fast collector names the handler only (its tracepoints are in "
        "the accessor that calls it) |",
    ):
        assert true in text, true
    config = next(line for line in text.splitlines() if line.startswith("| config space |"))
    assert "none in this capture" not in config and "| 0 |" not in config


def test_the_html_report_says_the_same(kvm: CaptureReport) -> None:
    text = html.unescape(render_html(kvm))
    for false in FALSE_OF_FAST:
        assert false not in text, false
    for true in (
        f'<tr><td>KVM exits</td><td class="num">{NOT_RECORDED}</td></tr>',
        "The fast collector does not record KVM exits, so no access is linked to an exit",
        "so the trace does not say whether the device did work on another thread.",
        '<td class="num">not recorded</td>',
        "recorded in memory_region_read_accessor once the handler returned",
        "KVM_RUN returns (the exit is not recorded by the fast collector)",
        "This capture has no kernel.jsonl: the fast collector does not record",
        "does not say whether the guest accessed pci-config",
        "none recorded: the fast collector names the handler only",
    ):
        assert true in text, true
    assert "<code>?</code>" not in text


def test_a_fast_tcg_capture_says_the_same_of_its_own_parts(tcg: CaptureReport) -> None:
    text = render_markdown(tcg)
    for false in FALSE_OF_FAST:
        assert false not in text, false
    for true in (
        f"| KVM exits | {NOT_RECORDED} |",
        f"| DMA | {NOT_RECORDED} |",
        "Under TCG the host kernel has no part",
        "recorded in memory_region_write_accessor before it calls the handler"
        if tcg.representative is not None and tcg.representative.op == "write"
        else "recorded in memory_region_read_accessor once the handler returned",
        "No guest function is named: the fast collector records no guest PC.",
        "none recorded: the fast collector names the handler only",
    ):
        assert true in text, true
    assert "How KVM decided to exit" not in text


def test_show_and_the_short_findings_say_it_too(kvm: CaptureReport) -> None:
    shown = _terminal(show_renderables(kvm))
    assert f"KVM exits                    │ {NOT_RECORDED}" in shown
    assert "KVM exits not recorded by the fast collector" in shown  # each stack's heading
    assert "e1000_mmio_read  none recorded: the fast collector names the handler only" in shown
    assert "pci-config" in shown and "not recorded │ not recorded by the fast collector" in shown
    for false in ("no linked exit", "e1000_mmio_read  ?", "no device work on another thread"):
        assert false not in shown, false
    rows = dict(row for finding in kvm.findings for row in finding_rows(finding))
    assert rows["synchronous"].endswith("KVM exits not recorded by the fast collector")
    assert rows["threads"] == (
        "all 30 recorded events ran on CPU 0/KVM; the fast collector does not record KVM "
        "exits, interrupts, DMA or asynchronous work, so work on other threads was not looked for"
    )


def test_the_answer_capture_prints_for_a_fast_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "e1000-kvm-fast"
    out.mkdir()
    shutil.copy(FAST_KVM / "trace.jsonl", out / "trace.jsonl")
    summary = {
        "device": "e1000",
        "status": CaptureStatus.OK,
        "reason": None,
        "exit_reasons": None,  # a fast capture made before exits were traced
        "collector": "fast",
        "files": ["trace.jsonl"],
    }
    (out / "summary.json").write_text(json.dumps(summary))
    result = CaptureResult(out, CaptureStatus.OK, None, Accel.KVM, 30, 4, 0, 7.0, summary)

    def run(request: CaptureRequest, build: bool, as_json: bool) -> CaptureResult:
        return result

    monkeypatch.setattr(capture_cli, "_run", run)
    printed = CliRunner().invoke(app, ["capture", "e1000"], env={"COLUMNS": "200"})
    assert printed.exit_code == 0, printed.output
    text = printed.stdout
    assert "not recorded by the fast collector" in text
    assert "KVM exits recorded" not in text and "none (TCG)" not in text
    assert "KVM exits not recorded by the fast collector, on CPU 0/KVM" in text
    assert "e1000_mmio_read  none recorded: the fast collector names the handler only" in text
    assert "came with a KVM exit of their own" not in text
    assert "no device work on another thread" not in text


def test_a_breakpoint_capture_still_says_what_its_records_show() -> None:
    report = build_report(BREAKPOINT)
    assert report.recorded == Recorded()
    text = render_markdown(report)
    assert "came with a KVM exit of their own" in text and "| KVM exits recorded |" in text
    assert NOT_RECORDED not in text and "not recorded by the collector" not in text
    assert "no linked exit" not in _terminal(answer_renderables(report))


def test_work_on_another_thread_names_what_was_not_looked_for(tmp_path: Path) -> None:
    # The same fast capture with one access moved to the main loop (as a timer's would be).
    out = tmp_path / "moved"
    out.mkdir()
    lines = (FAST_KVM / "trace.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    moved = next(r for r in records if r["type"] == "access" and r["op"] == "write")
    moved["thread"] = "main"
    (out / "trace.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text = render_markdown(build_report(out))
    assert "the trace places this work on other threads. main loop: mmio write access." in text
    assert (
        "The fast collector does not record KVM exits, interrupts, DMA or asynchronous work: "
        "the trace has none of them, on any thread." in text
    )

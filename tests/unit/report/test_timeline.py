"""The end-to-end timeline and "How KVM decided to exit" (issue 12 item 4), on the committed
KVM probe capture (reports/captures/e1000-kvm-probe: kernel.jsonl and the probe's ELF beside
the trace) and on traces that lack a part, which must say why instead of showing it empty."""

from __future__ import annotations

import shutil
from pathlib import Path

from qtrace.report import build_report
from qtrace.report.render import render_markdown
from qtrace.trace.kernel import KERNEL_FILE, KernelHeader, KernelLogWriter

ROOT = Path(__file__).resolve().parents[3]
KVM = ROOT / "reports" / "captures" / "e1000-kvm-probe"
TCG = ROOT / "reports" / "captures" / "e1000-tcg-probe"


def test_the_kvm_timeline_runs_from_the_guest_instruction_to_the_completed_read() -> None:
    report = build_report(KVM)
    timeline = report.timeline
    assert timeline is not None and timeline.kernel == "joined"
    kinds = [s.kind for s in timeline.steps]
    assert kinds == [
        "guest",
        "kernel-access",
        "userspace-exit",
        "qemu-exit",
        "handler",
        "completion",
    ]
    guest, unsatisfied, _, _, handler, done = timeline.steps
    assert guest.text.startswith("bar_read32+") and guest.at_us is None
    assert unsatisfied.op == "unsatisfied-read" and unsatisfied.at_us == 0
    times = [s.at_us for s in timeline.steps[1:]]
    assert times == sorted(times)  # kernel, QEMU and kernel again, on one clock
    assert done.agrees and done.value == handler.value
    # this host's KVM (kvm_pvm) never fires kvm_exit: said, not shown as an empty step
    assert timeline.hw_exits == "not-fired" and timeline.kvm_modules == ("kvm_pvm",)
    text = render_markdown(report)
    assert "kvm_exit was enabled but never fired in this capture" in text
    assert "(the host's KVM module: kvm_pvm)" in text


def test_every_access_through_an_exit_names_its_guest_function() -> None:
    guest = build_report(KVM).timeline.guest  # type: ignore[union-attr]
    assert guest is not None and guest.source == "guest/probe.elf"
    assert guest.unnamed == 0 and guest.without_pc == guest.coalesced_without_pc
    assert sum(n for _, n in guest.named) + guest.without_pc == guest.total


def test_how_kvm_decided_shows_the_slots_the_bar_outside_them_and_what_kvm_did_alone() -> None:
    side = build_report(KVM).kernel_side
    assert side is not None and side.status == "recorded"
    memory = side.memory
    assert memory.bar is not None and memory.bar.region == "e1000-mmio"
    assert memory.memslots and memory.bar_slots == ()  # BAR0 lies in no memory slot
    assert "MDIC" in memory.zone_gaps and memory.zones
    assert memory.coalesced and all(r.seen_by_kernel == r.writes for r in memory.coalesced)
    for item in side.coverage:
        assert item.joined >= 0.95 * item.total > 0
    assert side.read is not None and "unsatisfied-read" in side.read.before
    assert f"val {side.read.value:#x}" in side.read.after
    assert dict(side.alone_counts).get("lapic", 0) > 0


def test_each_row_kvm_handled_alone_quotes_its_own_event() -> None:
    """A LAPIC read and write in the same microsecond share thread, time and event name; each
    row's quoted text must still be an event of its own operation and address (the nvme
    capture once showed a write's text on a read row)."""
    for name in ("e1000-kvm-probe", "nvme-kvm-probe", "virtio-blk-pci-kvm-probe-ioeventfd-off"):
        side = build_report(ROOT / "reports" / "captures" / name).kernel_side
        assert side is not None and side.alone, name
        for row in side.alone:
            if row.space != "mmio":
                continue
            assert f"mmio {row.op} " in row.text, (name, row)
            assert f"gpa {row.addr:#x} " in row.text, (name, row)


def test_a_capture_without_kernel_events_says_why(tmp_path: Path) -> None:
    capture = tmp_path / "kvm"
    shutil.copytree(KVM, capture)
    (capture / KERNEL_FILE).unlink()
    report = build_report(capture)
    assert report.timeline is not None and report.timeline.kernel == "absent"
    assert report.kernel_side is not None and report.kernel_side.status == "absent"
    assert "this capture has no kernel.jsonl" in render_markdown(report)
    writer = KernelLogWriter.create(capture / KERNEL_FILE)
    writer.header(KernelHeader("unavailable", "tracefs is not mounted and qtrace is not root"))
    writer.close()
    text = render_markdown(build_report(capture))
    assert "were not recorded for this capture (tracefs is not mounted" in text


def test_under_tcg_the_timeline_has_no_kernel_part_and_names_the_instruction() -> None:
    timeline = build_report(TCG).timeline
    assert (
        timeline is not None and timeline.kernel == "tcg" and build_report(TCG).kernel_side is None
    )
    assert [s.kind for s in timeline.steps] == ["guest", "handler", "tcg-continues"]
    assert not timeline.steps[0].after_instruction
    assert timeline.guest is not None and timeline.guest.without_pc == 0

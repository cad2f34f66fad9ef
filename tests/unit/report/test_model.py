"""The report model: findings, register table, exits and stacks computed from the trace."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from qtrace.errors import ReportError, TraceFormatError
from qtrace.report.model import build_report
from qtrace.report.render import finding_text
from qtrace.trace import Access, Exit, Frame, Header, Record, Stack, read_trace

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"

MakeCapture = Callable[[str, Iterable[Record]], Path]

KVM_TAIL = (
    Frame("kvm_cpu_exec", "accel/kvm/kvm-all.c", 3248),
    Frame("kvm_vcpu_thread_fn", "accel/kvm/kvm-accel-ops.c", 51),
    Frame("qemu_thread_start", "util/qemu-thread-posix.c", 393),
)


def _trace(frames: tuple[Frame, ...], accel: str = "kvm") -> list[Record]:
    return [
        Header(device="e1000", qemu_version="10.2.2", accel=accel),
        Stack("s1", frames),
        Exit(1, "KVM_EXIT_MMIO", phys_addr=0xFEBC0008, len=4, is_write=False),
        Access(
            2, "read", "mmio", 0x8, 4, 0x80080783, handler="e1000_mmio_read", exit_seq=1, stack="s1"
        ),
    ]


def test_kvm_fixture_supports_the_synchronous_statement() -> None:
    report = build_report(FIXTURES / "e1000-kvm-10.2.2")
    found = {f.key: f for f in report.findings}
    assert found["synchronous-in-kvm-cpu-exec"].holds
    assert "kvm_vcpu_thread_fn" in finding_text(found["synchronous-in-kvm-cpu-exec"])
    assert found["not-in-qemu-wait-io-event"].holds


def test_wait_io_event_on_a_stack_is_reported(make_capture: MakeCapture) -> None:
    frames = (
        Frame("e1000_mmio_read", "hw/net/e1000.c", 1291),
        Frame("qemu_wait_io_event", "system/cpus.c", 450),
    ) + KVM_TAIL
    report = build_report(make_capture("waitio", _trace(frames)))
    found = {f.key: f for f in report.findings}
    assert not found["not-in-qemu-wait-io-event"].holds
    assert "s1" in finding_text(found["not-in-qemu-wait-io-event"])
    assert (
        "synchronous-in-kvm-cpu-exec" not in found or not found["synchronous-in-kvm-cpu-exec"].holds
    )


def test_stack_without_kvm_cpu_exec_is_not_called_synchronous(make_capture: MakeCapture) -> None:
    frames = (
        Frame("e1000_mmio_read", "hw/net/e1000.c", 1291),
        Frame("main_loop_wait", "util/main-loop.c", 600),
    )
    report = build_report(make_capture("mainloop", _trace(frames)))
    found = {f.key: f for f in report.findings}
    assert not found["synchronous-in-kvm-cpu-exec"].holds


def test_tcg_fixture_is_synchronous_in_cpu_exec() -> None:
    report = build_report(FIXTURES / "e1000-tcg-10.2.2")
    found = {f.key: f for f in report.findings}
    assert found["synchronous-in-cpu-exec"].holds and found["not-in-qemu-wait-io-event"].holds
    assert not report.exits


@pytest.mark.parametrize("capture", ["e1000-kvm-10.2.2", "e1000-tcg-7.2"])
def test_register_rows_count_what_the_trace_holds(capture: str) -> None:
    trace = read_trace(FIXTURES / capture)
    report = build_report(FIXTURES / capture)
    assert sum(r.reads + r.writes for r in report.registers) == len(trace.accesses)
    eerd = next(r for r in report.registers if r.space == "mmio" and r.offset == 0x14)
    eerd_accesses = [a for a in trace.accesses if a.space == "mmio" and a.offset == 0x14]
    assert eerd.name == "EERD"
    assert (eerd.reads, eerd.writes) == (
        sum(a.op == "read" for a in eerd_accesses),
        sum(a.op == "write" for a in eerd_accesses),
    )
    assert eerd.last_value == eerd_accesses[-1].value


def test_unknown_offset_row_is_flagged() -> None:
    report = build_report(FIXTURES / "e1000-kvm-10.2.2")
    row = next(r for r in report.registers if r.offset == 0x9F00)
    assert not row.known and row.name.startswith("unknown")


def test_stack_views_carry_their_exit_kinds() -> None:
    trace = read_trace(FIXTURES / "e1000-kvm-10.2.2")
    report = build_report(FIXTURES / "e1000-kvm-10.2.2")
    config = next(a for a in trace.accesses if a.space == "pci-config")
    view = report.stack_view(config.stack)
    assert view is not None and dict(view.exit_kinds) == {"KVM_EXIT_IO": 4}
    assert report.stack_view("s1") is not None and dict(report.stack_view("s1").exit_kinds) == {
        "KVM_EXIT_MMIO": 9
    }  # type: ignore[union-attr]


def test_exit_rows_name_the_kvm_cpu_exec_case() -> None:
    report = build_report(FIXTURES / "e1000-kvm-7.2")
    mmio = [e for e in report.exits if e.reason == "KVM_EXIT_MMIO"]
    assert mmio and all(
        "kvm-all.c:2958" in e.handled_at and "address_space_rw" in e.handled_at for e in mmio
    )
    pio = [e for e in report.exits if e.reason == "KVM_EXIT_IO" and e.accesses]
    assert pio and all("kvm_handle_io" in e.handled_at for e in pio)


def test_irq_and_dma_rows_name_the_device_code() -> None:
    report = build_report(FIXTURES / "e1000-kvm-10.2.2")
    assert [i.level for i in report.irqs] == [1, 0]
    assert report.irqs[0].by.startswith("set_interrupt_cause") and "set_ics" in report.irqs[0].by
    assert {d.by.split(" <- ")[0] for d in report.dmas} == {"start_xmit", "process_tx_desc"}


def test_missing_trace_is_a_report_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError):
        build_report(tmp_path)


def test_invalid_trace_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "trace.jsonl").write_text('{"type": "access"}\n', encoding="utf-8")
    with pytest.raises(TraceFormatError) as info:
        build_report(tmp_path)
    assert info.value.line == 1


def test_stacks_that_differ_only_in_addresses_share_one_view(make_capture: MakeCapture) -> None:
    tcg_tail = (
        Frame("mttcg_cpu_thread_fn", "accel/tcg/tcg-accel-ops-mttcg.c", 93),
        Frame("qemu_thread_start", "util/qemu-thread-posix.c", 393),
    )
    read = (Frame("e1000_mmio_read", "hw/net/e1000.c", 1310),)

    def stack(sid: str, pc: str) -> Stack:
        return Stack(sid, (*read, Frame("code_gen_buffer", None, None, pc), *tcg_tail))

    records: list[Record] = [
        Header(device="e1000", qemu_version="10.2.2", accel="tcg"),
        stack("s1", "0x7f0000001000"),
        stack("s2", "0x7f0000002000"),
        stack("s10", "0x7f0000003000"),
        Stack("s3", (Frame("e1000_mmio_write", "hw/net/e1000.c", 1264), *tcg_tail)),
        *(
            Access(n, "read", "mmio", 0x8, 4, 0, handler="e1000_mmio_read", stack=f"s{sid}")
            for n, sid in ((1, 1), (2, 2), (3, 10), (4, 10))
        ),
        Access(5, "write", "mmio", 0x0, 4, 0, handler="e1000_mmio_write", stack="s3"),
    ]
    report = build_report(make_capture("e1000-tcg", records))
    assert [v.ids for v in report.stacks] == [("s1", "s2", "s10"), ("s3",)]
    assert report.stacks[0].uses == 4 and report.stacks[0].title.endswith("(4x, 3 stacks)")
    assert report.stack_view("s10") is report.stacks[0] and report.view_id("s2") == "s1"
    assert report.view_id("nope") == ""


def test_the_committed_linux_capture_has_few_distinct_paths() -> None:
    capture = Path(__file__).resolve().parents[3] / "reports" / "captures" / "e1000-tcg-linux"
    trace = read_trace(capture)
    report = build_report(capture)
    # 337 raw stacks, 36 paths (transmit, receive, interrupts, the timers' runs).
    assert len(trace.stacks) > 100 and len(report.stacks) < 40
    assert sum(len(v.ids) for v in report.stacks) == len(trace.stacks)

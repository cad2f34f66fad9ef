"""kernel.jsonl (qtrace.trace.kernel) and its join with the trace (qtrace.trace.kernel_join).

The tracefs lines are the kernel's own text as recorded on our machines (kvm-pvm host,
kernel 6.18) during a KVM probe capture of the e1000; the trace records are shaped as the
collector writes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qtrace.errors import TraceFormatError
from qtrace.trace import Access, End, Exit, Header, KvmHost, Trace
from qtrace.trace.codec import read_trace, record_to_json
from qtrace.trace.kernel import (
    KernelEnd,
    KernelHeader,
    KernelLog,
    KernelLogWriter,
    lost_events,
    parse_line,
    read_kernel_log,
)
from qtrace.trace.kernel_join import join_kernel, kernel_exits
from qtrace.trace.kinds import CaptureStatus
from qtrace.trace.layout import FlatRange, FlatView, IoEventFd, KvmVcpu, Memslot, memslot_table
from qtrace.trace.schema import CoalescingZone

BAR0 = 0xFEBE0000
# A slice of a real capture: a port write, a port read, an e1000 MMIO read and a coalesced
# write, a LAPIC access KVM served itself, another thread's interrupt line.
RECORDED = """\
CPU 0/KVM-1859 [000] ..... 7773.411469: kvm_pio: pio_write at 0xcf8 size 4 count 1 val 0x80000000 
CPU 0/KVM-1859 [000] ..... 7773.411471: kvm_userspace_exit: reason KVM_EXIT_IO (2)
CPU 0/KVM-1859 [000] ..... 7773.415328: kvm_userspace_exit: reason KVM_EXIT_IO (2)
CPU 0/KVM-1859 [000] ..... 7773.416362: kvm_pio: pio_read at 0xcfc size 4 count 1 val 0x12378086 
CPU 0/KVM-1859 [000] ..... 7773.417000: kvm_pio: pio_read at 0x40 size 1 count 1 val 0x12 
qemu-system-x86-1824 [001] ..... 7773.417100: kvm_set_irq: gsi 4 level 1 source 0
CPU 0/KVM-1859 [001] ..... 7775.918056: kvm_mmio: mmio unsatisfied-read len 4 gpa 0xfebe0008 val 0x0
CPU 0/KVM-1859 [001] ..... 7775.918058: kvm_userspace_exit: reason KVM_EXIT_MMIO (6)
CPU 0/KVM-1859 [001] ..... 7775.919112: kvm_mmio: mmio read len 4 gpa 0xfebe0008 val 0x80080783
CPU 0/KVM-1859 [000] ..... 7776.068355: kvm_mmio: mmio write len 4 gpa 0xfebe0014 val 0x1
CPU 0/KVM-1859 [000] ..... 7776.152918: kvm_mmio: mmio unsatisfied-read len 4 gpa 0xfebe0014 val 0x0
CPU 0/KVM-1859 [000] ..... 7776.152920: kvm_userspace_exit: reason KVM_EXIT_MMIO (6)
CPU 0/KVM-1859 [000] ..... 7776.176630: kvm_mmio: mmio read len 4 gpa 0xfebe0014 val 0x54520010
CPU 0/KVM-1859 [000] ..... 7776.200000: kvm_apic: apic_read APIC_SPIV = 0xff
CPU 0/KVM-1859 [000] ..... 7776.200001: kvm_mmio: mmio read len 4 gpa 0xfee000f0 val 0xff
"""
ORIGIN = 7700.0  # CLOCK_MONOTONIC at the trace's t = 0


def _events() -> KernelLog:
    events = [e for e in map(parse_line, RECORDED.splitlines()) if e is not None]
    return KernelLog(KernelHeader("recorded", tids=(1824, 1859)), events, KernelEnd(len(events)))


def _exit(seq: int, t: float, **fields: object) -> Exit:
    return Exit(seq=seq, vcpu=0, t=t - ORIGIN, **fields)  # type: ignore[arg-type]


def _trace(*, clock: bool = True, coalesced_zone: bool = True) -> Trace:
    header = Header(device="e1000", qemu_version="10.2.2", accel="kvm")
    zones = (CoalescingZone("add", "mmio", BAR0, 0x20, "e1000-mmio"),) if coalesced_zone else ()
    trace = Trace(header=header, end=End(CaptureStatus.OK, kvm=KvmHost({}, zones)))
    trace.layout = [
        FlatView(1, "memory", "armed", (FlatRange(BAR0, 0x20000, "e1000-mmio", "io"),)),
    ]
    if clock:
        trace.layout.append(KvmVcpu(2, 0, 67, True, t=73.0, monotonic_s=ORIGIN + 73.0))
    trace.records = [
        _exit(3, 7773.4115, reason="KVM_EXIT_IO", port=0xCF8, size=4, count=1,
              direction="out", data="00000080", guest_pc=0x108E72),
        _exit(4, 7773.4154, reason="KVM_EXIT_IO", port=0xCFC, size=4, count=1, direction="in",
              guest_pc=0x108E81),
        Access(5, "read", "pci-config", 0, 4, 0x12378086, exit_seq=4),
        _exit(6, 7775.9181, reason="KVM_EXIT_MMIO", phys_addr=BAR0 + 8, len=4, is_write=False),
        Access(7, "read", "mmio", 8, 4, 0x80080783, region="e1000-mmio", exit_seq=6),
        Access(8, "write", "mmio", 0x14, 4, 1, region="e1000-mmio", coalesced=True,
               t=7776.1529 - ORIGIN),
        _exit(9, 7776.1530, reason="KVM_EXIT_MMIO", phys_addr=BAR0 + 0x14, len=4, is_write=False),
        Access(10, "read", "mmio", 0x14, 4, 0x54520010, region="e1000-mmio", exit_seq=9),
    ]  # fmt: skip
    return trace


@pytest.mark.parametrize(
    "line, event, tid, comm, fields",
    [
        (RECORDED.splitlines()[0], "kvm_pio", 1859, "CPU 0/KVM",
         {"op": "write", "port": 0xCF8, "size": 4, "count": 1, "val": 0x80000000}),
        (RECORDED.splitlines()[1], "kvm_userspace_exit", 1859, "CPU 0/KVM",
         {"reason": "KVM_EXIT_IO", "code": 2}),
        (RECORDED.splitlines()[5], "kvm_set_irq", 1824, "qemu-system-x86",
         {"gsi": 4, "level": 1, "source": 0}),
        (RECORDED.splitlines()[6], "kvm_mmio", 1859, "CPU 0/KVM",
         {"op": "unsatisfied-read", "len": 4, "gpa": BAR0 + 8, "val": 0}),
        ("       CPU 0/KVM-1859    [001] .....  7750.1: kvm_userspace_exit: reason restart (4)",
         "kvm_userspace_exit", 1859, "CPU 0/KVM", {"reason": "restart", "code": 4}),
        ("       CPU 0/KVM-1859    [000] .....  7750.319946: kvm_userspace_exit: "
         "reason KVM_EXIT_MMIO (6)",
         "kvm_userspace_exit", 1859, "CPU 0/KVM", {"reason": "KVM_EXIT_MMIO", "code": 6}),
        (" my-worker-thread-2-77 [003] d..1. 12.5: kvm_fast_mmio: fast mmio at gpa 0xfe003000",
         "kvm_fast_mmio", 77, "my-worker-thread-2", {"gpa": 0xFE003000}),
    ],
)  # fmt: skip
def test_a_tracefs_line_is_parsed_with_its_thread_and_fields(
    line: str, event: str, tid: int, comm: str, fields: dict[str, object]
) -> None:
    parsed = parse_line(line)
    assert parsed is not None
    assert (parsed.event, parsed.tid, parsed.comm, parsed.fields) == (event, tid, comm, fields)


def test_lost_markers_and_other_lines_are_not_events() -> None:
    assert parse_line("CPU:1 [LOST 369554 EVENTS]") is None
    assert lost_events("CPU:1 [LOST 369554 EVENTS]") == 369554
    assert parse_line("# tracer: nop") is None and lost_events("# tracer: nop") == 0


def test_the_kernels_exits_pair_each_return_to_qemu_with_its_access() -> None:
    exits, alone = kernel_exits(_events())
    assert [e.reason for e in exits] == ["KVM_EXIT_IO"] * 2 + ["KVM_EXIT_MMIO"] * 2
    port_out, port_in, mmio_read, eerd_read = exits
    assert port_out.access is not None and port_out.access.value == 0x80000000
    # a port read that exits has no event before the exit, only its completion after it
    assert port_in.access is None and port_in.completion is not None
    assert port_in.completion.value == 0x12378086
    assert mmio_read.access is not None and mmio_read.access.op == "unsatisfied-read"
    assert mmio_read.completion is not None and mmio_read.completion.value == 0x80080783
    assert eerd_read.completion is not None and eerd_read.completion.value == 0x54520010
    # the PIT read, the coalesced EERD write and the LAPIC read never reached QEMU
    assert [(a.space, a.addr) for a in alone] == [
        ("pio", 0x40), ("mmio", BAR0 + 0x14), ("mmio", 0xFEE000F0)
    ]  # fmt: skip


@pytest.mark.parametrize("clock", [True, False], ids=["by clock", "in order"])
def test_every_exit_record_is_joined_to_its_kernel_exit(clock: bool) -> None:
    join = join_kernel(_trace(clock=clock), _events())
    assert join.method == ("clock" if clock else "order")
    assert join.coverage() == (4, 4)
    by_seq = join.by_seq()
    assert by_seq[4].value_checked and by_seq[6].value_checked  # QEMU's value == KVM's
    assert by_seq[6].kernel is not None and by_seq[6].kernel.ts == 7775.918058


def test_kernel_only_accesses_say_what_answered_and_link_the_replayed_write() -> None:
    join = join_kernel(_trace(), _events())
    handled = [(k.access.addr, k.handled_by, k.access_seq) for k in join.kernel_only]
    assert handled == [
        (0x40, "pit", None), (BAR0 + 0x14, "coalesced-mmio", 8), (0xFEE000F0, "lapic", None)
    ]  # fmt: skip
    assert join.handled_by() == {"pit": 1, "coalesced-mmio": 1, "lapic": 1}


def test_an_mmio_access_kvm_completed_is_not_taken_for_a_port_reads_exit() -> None:
    """A port read that exits logs nothing before its exit: the LAPIC write before it (with
    the serial port's events left out between them) is KVM's alone, not that exit's."""
    lines = [
        "CPU 0/KVM-1859 [000] ..... 10.000000: kvm_mmio: mmio write len 4 gpa 0xfee000b0 val 0x0",
        "CPU 0/KVM-1859 [000] ..... 10.000010: kvm_userspace_exit: reason KVM_EXIT_IO (2)",
        "CPU 0/KVM-1859 [000] ..... 10.000020: kvm_pio: pio_read at 0xcfc size 4 count 1 val 0x1",
    ]
    events = [e for e in map(parse_line, lines) if e is not None]
    exits, alone = kernel_exits(KernelLog(KernelHeader("recorded"), events))
    (port_read,) = exits
    assert port_read.access is None and port_read.completion is not None
    assert [(a.space, a.addr) for a in alone] == [("mmio", 0xFEE000B0)]


def test_a_write_into_an_ioeventfd_is_one_while_it_was_in_effect() -> None:
    """QEMU removes its ioeventfds when the VM stops: a write made while one was in effect is
    KVM's (the eventfd), although none is left at the trace's end."""
    notify = 0xFEBFB000
    kick = (
        "CPU 0/KVM-1859 [000] ..... 7776.100000: kvm_mmio: mmio write len 2 gpa 0xfebfb000 val 0x0"
    )
    log = _events()
    event = parse_line(kick)
    assert event is not None
    log.events.append(event)
    log.events.sort(key=lambda e: e.ts)
    trace = _trace()
    trace.layout += [
        IoEventFd(20, "add", "mmio", notify, 0, t=7776.0 - ORIGIN),
        IoEventFd(21, "del", "mmio", notify, 0, t=7776.3 - ORIGIN),
    ]
    handled = {k.access.addr: k.handled_by for k in join_kernel(trace, log).kernel_only}
    assert handled[notify] == "ioeventfd"


def test_a_write_outside_every_zone_is_not_called_coalesced() -> None:
    join = join_kernel(_trace(coalesced_zone=False), _events())
    assert [k.handled_by for k in join.kernel_only] == ["pit", "kernel", "lapic"]


def test_an_exit_whose_kernel_access_differs_is_not_joined_and_says_why() -> None:
    trace = _trace()
    trace.records[0] = _exit(3, 7773.4115, reason="KVM_EXIT_IO", port=0xCF8, size=4, count=1,
                             direction="out", data="04000080")  # fmt: skip
    join = join_kernel(trace, _events())
    assert join.coverage("KVM_EXIT_IO") == (1, 2)
    assert join.by_seq()[3].why_not == "the kernel saw value 0x80000000"


def test_a_read_whose_completed_value_differs_from_qemus_is_not_joined() -> None:
    trace = _trace()
    trace.records[4] = Access(7, "read", "mmio", 8, 4, 0x1, region="e1000-mmio", exit_seq=6)
    join = join_kernel(trace, _events())
    assert join.by_seq()[6].why_not == "QEMU's handler returned 0x1, KVM completed 0x80080783"


def test_kernel_jsonl_round_trips_and_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    log = _events()
    writer = KernelLogWriter.create(tmp_path / "kernel.jsonl")
    header = KernelHeader(
        "recorded", instance="qtrace-x", pid=1824, tids=(1824, 1859), kvm_modules=("kvm_pvm",)
    )
    writer.header(header)
    writer.events(log.events)
    writer.end(KernelEnd(len(log.events), lost=3, before_arming={"kvm_pio": 10}))
    writer.close()
    with (tmp_path / "kernel.jsonl").open("a") as handle:
        handle.write('{"type":"kev')
    again = read_kernel_log(tmp_path)
    assert again is not None and again.recorded
    assert again.header == header
    assert again.events == log.events
    assert again.end == KernelEnd(len(log.events), lost=3, before_arming={"kvm_pio": 10})


def test_an_unavailable_kernel_side_is_one_line_with_the_reason(tmp_path: Path) -> None:
    writer = KernelLogWriter.create(tmp_path / "kernel.jsonl")
    writer.header(KernelHeader("unavailable", "no tracefs at /nope ($QTRACE_TRACEFS)", "unset"))
    writer.close()
    log = read_kernel_log(tmp_path / "kernel.jsonl")
    assert log is not None and not log.recorded and log.events == []
    assert log.header.reason == "no tracefs at /nope ($QTRACE_TRACEFS)"
    assert read_kernel_log(tmp_path / "absent") is None


def test_a_kernel_file_with_a_bad_line_names_it(tmp_path: Path) -> None:
    path = tmp_path / "kernel.jsonl"
    path.write_text('{"type":"kernel","schema":"qtrace-kernel/1","status":"recorded"}\n[]\n')
    with pytest.raises(TraceFormatError, match=r"kernel\.jsonl:2: "):
        read_kernel_log(path)


def test_the_memory_map_records_round_trip_apart_from_the_events(tmp_path: Path) -> None:
    header = Header(device="e1000", qemu_version="10.2.2", accel="kvm")
    records = [
        header,
        Memslot(1, "add", 0, 0, 0xA0000, host_addr="0x7f00"),
        Memslot(2, "add", 3, 0xFFFC0000, 0x40000, flags=2),
        FlatView(3, "memory", "armed", (FlatRange(0, 0xA0000, "pc.ram", "ram"),
                                        FlatRange(BAR0, 0x20000, "e1000-mmio", "io", 0x0))),
        Memslot(4, "del", 0, 0, 0),
        KvmVcpu(5, 0, 67, True, t=1.5, monotonic_s=101.5),
        Exit(6, "KVM_EXIT_MMIO", 0, phys_addr=BAR0, len=4, is_write=False, guest_pc=0x1000),
        End(CaptureStatus.OK),
    ]  # fmt: skip
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(record_to_json(r) + "\n" for r in records))
    line = json.loads(path.read_text().splitlines()[3])
    assert line["ranges"][0] == {"start": 0, "size": 0xA0000, "region": "pc.ram", "kind": "ram"}
    trace = read_trace(path)
    assert trace.layout == records[1:6]
    assert trace.records == [records[6]] and trace.exits[0].guest_pc == 0x1000
    assert trace.vcpus[0].monotonic_origin_s == 100.0
    assert memslot_table(trace.layout) == [records[2]]  # slot 0 deleted
    assert memslot_table(trace.layout, until_seq=3) == [records[1], records[2]]
    view = trace.flatviews[0]
    assert view.lookup(BAR0 + 8) is not None and view.lookup(0xFEE00000) is None

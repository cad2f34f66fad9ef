"""The host side of kernel events (qtrace.launch.kernel_events) against a fake tracefs.

The fake subclasses the real recorder and replaces only its host seams (finding QEMU's
process, creating and removing the instance); the files it writes into, the reader of
``trace_pipe`` and the conversion to kernel.jsonl are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qtrace.launch.kernel_events import (
    EVENTS,
    RAW_FILE,
    KernelEvents,
    KernelState,
    find_qemu_pid,
    kvm_modules,
    probe_tracefs,
)
from qtrace.trace.kernel import read_kernel_log

PIPE = """\
CPU 0/KVM-12 [000] ..... 99.000000: kvm_pio: pio_write at 0xcf8 size 4 count 1 val 0x80000000 
CPU 0/KVM-12 [000] ..... 101.000000: kvm_pio: pio_write at 0xcf8 size 4 count 1 val 0x80000000 
CPU 0/KVM-12 [000] ..... 101.000002: kvm_userspace_exit: reason KVM_EXIT_IO (2)
CPU 0/KVM-12 [000] ..... 101.100000: kvm_mmio: mmio read len 4 gpa 0xfee000f0 val 0xff
some-other-99 [001] ..... 101.200000: kvm_pio: pio_write at 0x80 size 1 count 1 val 0x1 
CPU:1 [LOST 7 EVENTS]
"""


class FakeTracefsEvents(KernelEvents):
    """Finds "QEMU" as pid 11 with threads 11 and 12; an instance is a plain directory with
    the files tracefs would create and a trace_pipe holding PIPE."""

    made: list[Path] = []
    removed: list[Path] = []

    def _find_pid(self, container_id: str) -> int | None:
        return 11 if container_id == "c0ffee" else None

    def _thread_ids(self, pid: int) -> list[int]:
        return [11, 12]

    def _make_instance(self, path: Path) -> None:
        path.mkdir()
        for name in EVENTS:
            switch = path / "events" / "kvm" / name / "enable"
            switch.parent.mkdir(parents=True)
            switch.write_text("0")
        (path / "options").mkdir()
        (path / "trace_pipe").write_text(PIPE)
        self.made.append(path)

    def _remove_instance(self, path: Path) -> None:
        assert (path / "tracing_on").read_text() == "0"  # stopped before it is removed
        self.removed.append(path)


@pytest.fixture
def tracefs(tmp_path: Path) -> Path:
    root = tmp_path / "tracefs"
    (root / "instances").mkdir(parents=True)
    return root


def _trace_with_arming(run: Path, monotonic_s: float) -> None:
    run.joinpath("trace.jsonl").write_text(
        '{"type":"header","schema":"qtrace-trace/1","device":"e1000"}\n'
        + json.dumps({"type": "kvm_vcpu", "seq": 1, "index": 0, "t": 1.0,
                      "monotonic_s": monotonic_s})
        + "\n"
    )  # fmt: skip


def test_a_recording_sets_up_its_own_instance_and_keeps_only_qemus_threads(
    tracefs: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _trace_with_arming(run, 100.0)
    with FakeTracefsEvents(run, "abc", env={"QTRACE_TRACEFS": str(tracefs)}) as events:
        line = events.attach("c0ffee")
        assert events.state is KernelState.RECORDING
        instance = tracefs / "instances" / "qtrace-abc"
        assert line.startswith("kernel events: recording")
        assert (instance / "set_event_pid").read_text() == "11 12"
        assert (instance / "options" / "event-fork").read_text() == "1"
        assert (instance / "trace_clock").read_text() == "mono"
        assert (instance / "events" / "kvm" / "kvm_mmio" / "enable").read_text() == "1"
    assert events.state is KernelState.CLOSED and FakeTracefsEvents.removed == [instance]
    log = read_kernel_log(run)
    assert log is not None and log.recorded and log.header.tids == (11, 12)
    # the event before the arming is counted, the other process's is dropped, LOST counted
    assert [(e.ts, e.event) for e in log.events] == [
        (101.0, "kvm_pio"), (101.000002, "kvm_userspace_exit"), (101.1, "kvm_mmio")
    ]  # fmt: skip
    assert log.end is not None and log.end.lost == 7
    assert log.end.before_arming == {"kvm_pio": 1, "(other threads)": 1}
    assert not (run / RAW_FILE).exists()


def test_without_tracefs_the_capture_is_told_why_and_the_file_says_so(tmp_path: Path) -> None:
    env = {"QTRACE_TRACEFS": str(tmp_path / "missing")}
    with FakeTracefsEvents(tmp_path, "abc", env=env) as events:
        line = events.attach("c0ffee")
    assert line == f"kernel events not recorded: no tracefs at {tmp_path / 'missing'} " + (
        "($QTRACE_TRACEFS)"
    )
    log = read_kernel_log(tmp_path)
    assert log is not None and log.header.status == "unavailable" and log.events == []
    assert log.header.fix == "Point $QTRACE_TRACEFS at a mounted tracefs, or unset it."


def test_a_qemu_that_cannot_be_found_leaves_no_instance(tracefs: Path, tmp_path: Path) -> None:
    with FakeTracefsEvents(tmp_path, "abc", env={"QTRACE_TRACEFS": str(tracefs)}) as events:
        line = events.attach("not-this-one")
    assert "QEMU's process was not found" in line
    assert list((tracefs / "instances").iterdir()) == []


def test_a_capture_that_never_attached_writes_nothing(tmp_path: Path) -> None:
    with FakeTracefsEvents(tmp_path, "abc", env={}) as events:
        pass
    assert events.state is KernelState.CLOSED and not (tmp_path / "kernel.jsonl").exists()


@pytest.mark.parametrize(
    "env, euid, filesystems, usable, reason",
    [
        ({}, 0, "nodev\ttracefs\n", True, None),
        ({}, 1000, "nodev\ttracefs\n", False, "qtrace is not root"),
        ({}, 0, "nodev\tproc\n", False, "this kernel has no tracefs"),
    ],
)
def test_whether_tracefs_can_be_used(
    tmp_path: Path, env: dict[str, str], euid: int, filesystems: str, usable: bool,
    reason: str | None,
) -> None:  # fmt: skip
    (tmp_path / "filesystems").write_text(filesystems)
    env = {"QTRACE_TRACEFS": "", **env}
    status = probe_tracefs(env, tmp_path / "filesystems", lambda: euid, tmp_path / "unmounted")
    assert status.usable is usable and status.mountable is usable
    assert reason is None or (status.reason is not None and reason in status.reason)


def test_qemu_is_found_by_its_containers_cgroup(tmp_path: Path) -> None:
    for pid, comm, cgroup in [
        (40, "qemu-system-x86", "4:memory:/docker/other\n"),
        (41, "qemu-system-x86", "9:pids:/docker/c0ffee1234\n"),
        (42, "gdb", "9:pids:/docker/c0ffee1234\n"),
    ]:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "comm").write_text(comm + "\n")
        (tmp_path / str(pid) / "cgroup").write_text(cgroup)
    (tmp_path / "self").mkdir()
    assert find_qemu_pid("c0ffee1234", tmp_path) == 41
    assert find_qemu_pid("absent", tmp_path) is None


def test_the_doctor_warns_about_kernel_events_without_failing() -> None:
    from qtrace.doctor import KERNEL_EVENTS_CHECK, Check, doctor_ok

    fine = [Check("docker daemon", "ok", "reachable")]
    assert doctor_ok([*fine, Check(KERNEL_EVENTS_CHECK, "warning", "no tracefs", "mount it")])
    assert not doctor_ok([*fine, Check("kvm", "warning", "no /dev/kvm")])
    assert not doctor_ok([*fine, Check(KERNEL_EVENTS_CHECK, "error", "?")])


def test_what_a_killed_capture_left_is_found_with_the_commands_removing_it(
    tmp_path: Path,
) -> None:
    from qtrace.launch.kernel_events import leftover_tracing

    dead, live = tmp_path / "qtrace-tracefs-dead01-x1", tmp_path / "qtrace-tracefs-live02-y2"
    system = tmp_path / "sys-tracing"
    for root in (dead, live, system):
        (root / "instances").mkdir(parents=True)
    (dead / "instances" / "qtrace-dead01").mkdir()
    (system / "instances" / "qtrace-live02").mkdir()
    (system / "instances" / "perf-session").mkdir()  # someone else's: never touched
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "".join(f"nodev {root} tracefs rw,relatime 0 0\n" for root in (dead, live, system))
        + "proc /proc proc rw 0 0\n"
    )
    assert leftover_tracing({"live02"}, mounts) == [
        f"rmdir {dead / 'instances' / 'qtrace-dead01'}",
        f"umount {dead} && rmdir {dead}",
    ]


def test_the_kvm_vendor_modules_are_read_from_sys_module(tmp_path: Path) -> None:
    for name in ("kvm", "kvm_pvm", "e1000"):
        (tmp_path / name).mkdir()
    assert kvm_modules(tmp_path) == ["kvm_pvm"]
    assert kvm_modules(tmp_path / "absent") == []


QUIET_PIPE = """\
CPU 0/KVM-12 [000] ..... 101.000000: kvm_pio: pio_write at 0x3f8 size 1 count 1 val 0x41 
CPU 0/KVM-12 [000] ..... 101.000001: kvm_userspace_exit: reason KVM_EXIT_IO (2)
CPU 0/KVM-12 [000] ..... 101.000002: kvm_set_irq: gsi 4 level 0 source 0
CPU 0/KVM-12 [000] ..... 101.000003: kvm_userspace_exit: reason KVM_EXIT_IO (2)
CPU 0/KVM-12 [000] ..... 101.000004: kvm_pio: pio_read at 0x3fd size 1 count 1 val 0x60 
CPU 0/KVM-12 [000] ..... 101.000005: kvm_pio: pio_write at 0xcf8 size 4 count 1 val 0x80000000 
CPU 0/KVM-12 [000] ..... 101.000006: kvm_userspace_exit: reason KVM_EXIT_IO (2)
CPU 0/KVM-12 [000] ..... 101.000007: kvm_set_irq: gsi 11 level 1 source 0
"""


class QuietPipeEvents(FakeTracefsEvents):
    def _make_instance(self, path: Path) -> None:
        super()._make_instance(path)
        (path / "trace_pipe").write_text(QUIET_PIPE)


def test_the_serial_consoles_events_are_counted_not_kept(tracefs: Path, tmp_path: Path) -> None:
    """A write and a read on COM1 (each with its exit) and COM1's interrupt line are left out
    and counted; the config-port write, its exit and another line's interrupt stay."""
    run = tmp_path / "run"
    run.mkdir()
    _trace_with_arming(run, 100.0)
    env = {"QTRACE_TRACEFS": str(tracefs)}
    with QuietPipeEvents(run, "q", env=env, quiet_ports=((0x3F8, 8),), quiet_gsis=(4,)) as ev:
        ev.attach("c0ffee")
    log = read_kernel_log(run)
    assert log is not None and log.end is not None
    assert [(e.ts, e.event) for e in log.events] == [
        (101.000005, "kvm_pio"), (101.000006, "kvm_userspace_exit"), (101.000007, "kvm_set_irq")
    ]  # fmt: skip
    assert log.end.quiet == {"kvm_pio": 2, "kvm_set_irq": 1, "kvm_userspace_exit": 2}
    assert log.end.quiet_ports == ((0x3F8, 8),) and log.end.quiet_gsis == (4,)
    assert log.end.events == 3

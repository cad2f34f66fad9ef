"""The two ends of the path, on real KVM captures (issue 12): the host kernel's kvm: events
joined to the exits, the memory map that decides what exits, and the guest code that made
each access.

The shared KVM probe capture of the e1000 is the evidence; two captures of their own check
what must hold on any run: without tracefs the capture ends ok and says why, and with
another KVM process running beside it none of that process's events appear, and the host's
tracing state is as it was before.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from qtrace.docker_env import ContainerSpec, LabelledContainer
from qtrace.guests.symbols import access_places, guest_symbols
from qtrace.image.builder import BuildResult
from qtrace.launch.capture import CaptureRequest, CaptureResult, run_capture
from qtrace.launch.kernel_events import INSTANCE_PREFIX, TRACEFS_ENV, find_qemu_pid, thread_ids
from qtrace.launch.qemu_argv import QEMU_BINARY
from qtrace.report import build_report
from qtrace.report.render import render_markdown
from qtrace.trace import read_trace
from qtrace.trace.kernel import read_kernel_log
from qtrace.trace.kernel_join import join_kernel
from qtrace.trace.layout import flatview_at, memslot_table
from tests.integration.conftest import RecordingEvents, require_kvm

Capture = Callable[..., CaptureResult]
TRACING_FILES = ("tracing_on", "current_tracer", "set_event", "set_event_pid", "trace_clock")


def test_kernel_events_are_joined_to_at_least_95_percent_of_the_exits(capture: Capture) -> None:
    result = capture("e1000", "kvm")
    trace, log = read_trace(result.out_dir), read_kernel_log(result.out_dir)
    assert log is not None and log.recorded, log and log.header.reason
    assert log.end is not None and log.end.lost == 0
    join = join_kernel(trace, log)
    assert join.method == "clock"
    for reason in ("KVM_EXIT_MMIO", "KVM_EXIT_IO"):
        joined, total = join.coverage(reason)
        print(f"{reason}: {joined}/{total} exits joined to their kernel events")
        assert total > 0 and joined >= 0.95 * total, [
            (j.exit.seq, j.why_not) for j in join.exits if not j.joined
        ][:5]
    # a BAR read: KVM could not complete it, exited, and completed it with QEMU's value
    bar_read = next(
        j for j in join.exits if j.exit.reason == "KVM_EXIT_MMIO" and not j.exit.is_write
    )
    assert bar_read.kernel is not None and bar_read.kernel.access is not None
    assert bar_read.kernel.access.op == "unsatisfied-read" and bar_read.value_checked


def test_accesses_kvm_completed_alone_are_listed(capture: Capture) -> None:
    result = capture("e1000", "kvm")
    trace, log = read_trace(result.out_dir), read_kernel_log(result.out_dir)
    assert log is not None
    join = join_kernel(trace, log)
    handled = join.handled_by()
    print(f"kernel-only accesses: {handled}")
    coalesced = [a for a in trace.accesses if a.coalesced]
    assert coalesced, "the probe's EERD writes are coalesced on this host"
    linked = {k.access_seq for k in join.kernel_only if k.handled_by == "coalesced-mmio"}
    assert {a.seq for a in coalesced} <= linked  # each buffered write, as the kernel saw it
    assert handled.get("lapic", 0) > 0  # the firmware's local APIC accesses, never in QEMU


def test_bar0_lies_in_no_memory_slot(capture: Capture) -> None:
    trace = read_trace(capture("e1000", "kvm").out_dir)
    view = flatview_at(trace.layout, "memory")
    assert view is not None
    bar0 = next(r for r in view.ranges if r.region == "e1000-mmio")
    assert bar0.kind == "io"
    slots = memslot_table(trace.layout)
    print("slots:", [(s.slot, hex(s.start), hex(s.size), s.flags) for s in slots])
    assert any(s.contains(0x100000) for s in slots), "guest RAM is in a slot"
    assert not any(s.contains(bar0.start) or s.contains(bar0.start + bar0.size - 1) for s in slots)
    # the BAR programmed by the firmware shows as a FlatView change
    assert any(
        v.cause == "update" and any(r.region == "e1000-mmio" for r in v.ranges)
        for v in trace.flatviews
    )


def test_every_access_names_its_guest_function(capture: Capture) -> None:
    result = capture("e1000", "kvm")
    trace = read_trace(result.out_dir)
    assert trace.vcpus and all(v.sync_regs for v in trace.vcpus)
    symbols = guest_symbols(result.out_dir)
    assert symbols is not None
    places = access_places(trace, symbols)
    through_exits = [a for a in trace.accesses if a.exit_seq is not None]
    named = {seq for seq, place in places.items() if place.function is not None}
    print(f"{len(named)}/{len(through_exits)} accesses through an exit named")
    assert through_exits and {a.seq for a in through_exits} == named
    for access in through_exits:  # the probe's BAR accessors (bar_read32, bar_write32)
        function = places[access.seq].function
        assert function is not None and (access.space != "mmio" or access.op in function)
    # the rest were buffered by KVM (no exit, so no guest registers): kernel-only, linked
    log = read_kernel_log(result.out_dir)
    assert log is not None
    linked = {k.access_seq for k in join_kernel(trace, log).kernel_only}
    assert {a.seq for a in trace.accesses if a.exit_seq is None} <= linked


def test_the_report_tells_each_access_from_the_guest_to_the_re_entry(capture: Capture) -> None:
    """Item 4: the report's timeline and 'How KVM decided to exit', from this capture."""
    result = capture("e1000", "kvm")
    report = build_report(result.out_dir)
    timeline, side = report.timeline, report.kernel_side
    assert timeline is not None and timeline.kernel == "joined", timeline and timeline.why
    kinds = [s.kind for s in timeline.steps]
    assert kinds[0] == "guest" and kinds[-1] in ("completion", "entry", "resumed")
    assert {"kernel-access", "userspace-exit", "qemu-exit", "handler"} <= set(kinds)
    timed = [s.at_us for s in timeline.steps if s.at_us is not None]
    assert timed == sorted(timed)
    if report.representative is not None and report.representative.op == "read":
        done = next(s for s in timeline.steps if s.kind == "completion")
        assert done.agrees, done
    if timeline.hw_exits == "not-fired":  # kvm_pvm: said in the report, not an empty step
        assert "kvm_exit was enabled but never fired" in render_markdown(report)
    assert side is not None and side.status == "recorded"
    assert side.memory.bar is not None and side.memory.bar_slots == ()
    # the coalesced zones over the BAR, the registers between them, and which writes KVM
    # buffered there (each seen by the kernel as a write no exit followed)
    assert side.memory.zones and "MDIC" in side.memory.zone_gaps
    assert side.memory.coalesced
    assert all(row.seen_by_kernel == row.writes for row in side.memory.coalesced)
    assert not {row.register for row in side.memory.coalesced} & set(side.memory.zone_gaps)
    assert all(c.joined >= 0.95 * c.total for c in side.coverage)
    assert side.read is not None and "unsatisfied-read" in side.read.before
    print(
        "timeline:",
        [(s.kind, s.at_us) for s in timeline.steps],
        "kernel-only:",
        side.alone_counts,
    )


def test_without_tracefs_the_capture_ends_ok_and_says_why(
    debug_image: BuildResult, captures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_kvm()
    missing = captures_dir / "no-tracefs-here"
    monkeypatch.setenv(TRACEFS_ENV, str(missing))
    events = RecordingEvents()
    request = CaptureRequest(device="e1000", accel="kvm", out_dir=captures_dir / "no-tracefs")
    before = _tracing_state()
    result = run_capture(request, events)
    assert _tracing_state() == before  # the host's tracing untouched
    assert result.status == "ok", result.reason
    log = read_kernel_log(result.out_dir)
    assert log is not None and log.header.status == "unavailable" and log.events == []
    assert log.header.reason == f"no tracefs at {missing} (${TRACEFS_ENV})"
    assert f"kernel events not recorded: {log.header.reason}" in events.statuses
    assert read_trace(result.out_dir).accesses
    report = build_report(result.out_dir)  # the report says why the kernel's part is missing
    assert report.timeline is not None and report.timeline.kernel == "unavailable"
    assert f"were not recorded for this capture ({log.header.reason})" in render_markdown(report)


def _tracing_state() -> dict[str, object]:
    """What another tracer would notice: the tracefs mounts (but other captures' private
    ones, which come and go), each one's instances (but the ``qtrace-`` ones of captures
    running beside this test, which come and go too: a test checks its own is removed), and
    the global switches."""
    mounts = [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[2] == "tracefs"
    ]
    state: dict[str, object] = {}
    for mount in mounts:
        if "/qtrace-tracefs-" in mount:
            continue
        root = Path(mount)
        state[mount] = {
            "instances": sorted(
                p.name
                for p in (root / "instances").iterdir()
                if not p.name.startswith(INSTANCE_PREFIX)
            ),
            **{name: (root / name).read_text() for name in TRACING_FILES},
        }
    return state


def test_other_processes_never_appear_and_the_host_is_left_as_found(
    debug_image: BuildResult, docker_client: docker.DockerClient, captures_dir: Path
) -> None:
    require_kvm()
    spec = ContainerSpec(
        image=debug_image.image,
        kvm=True,
        command=(QEMU_BINARY, "-nodefaults", "-display", "none", "-monitor", "none",
                 "-L", "/usr/share/seabios", "-L", "/usr/share/qemu", "-machine", "pc",
                 "-accel", "kvm", "-m", "32"),
    )  # fmt: skip
    before = _tracing_state()
    with LabelledContainer(docker_client, spec) as other:
        deadline = time.monotonic() + 30
        while (pid := find_qemu_pid(other.id)) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pid is not None, "the other KVM process did not start"
        foreign = set(thread_ids(pid))
        request = CaptureRequest(device="e1000", accel="kvm", out_dir=captures_dir / "beside")
        result = run_capture(request, RecordingEvents())
        assert find_qemu_pid(other.id) == pid, "the other KVM process ran all along"
    assert result.status == "ok", result.reason
    log = read_kernel_log(result.out_dir)
    assert log is not None and log.recorded and log.end is not None
    tids = {e.tid for e in log.events}
    assert tids and not tids & foreign
    assert tids <= set(log.header.tids)  # QEMU's own threads, found at vm_start
    assert "(other threads)" not in log.end.before_arming  # the kernel's filter kept them out
    after = _tracing_state()
    assert after == before
    instance = log.header.instance
    assert instance is not None
    assert all(instance not in line for line in Path("/proc/mounts").read_text().splitlines())
    assert not any((Path(mount) / "instances" / instance).exists() for mount in before), (
        "the capture's tracefs instance is gone"
    )


def test_ctrl_c_during_a_kvm_capture_removes_the_instance_and_keeps_the_events(
    debug_image: BuildResult, captures_dir: Path
) -> None:
    require_kvm()
    out = captures_dir / "kvm-interrupted"
    before = _tracing_state()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("qtrace")), "capture", "e1000", "--accel", "kvm",
         "--out", str(out), "--probe-rounds", "400000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        trace = out / "trace.jsonl"
        while time.monotonic() < deadline:
            if trace.exists() and trace.read_text().count('"type":"access"') >= 20:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    log = read_kernel_log(out)
    assert log is not None and log.recorded and log.end is not None and log.events
    assert not (out / "kernel.trace").exists()
    assert _tracing_state() == before
    assert log.header.instance is not None
    assert all(
        log.header.instance not in line for line in Path("/proc/mounts").read_text().splitlines()
    )


def test_under_tcg_every_access_names_the_guest_instruction_that_made_it(
    capture: Capture,
) -> None:
    result = capture("e1000", "tcg")
    trace = read_trace(result.out_dir)
    places = access_places(trace, guest_symbols(result.out_dir))
    assert trace.accesses and set(places) == {a.seq for a in trace.accesses}
    for access in trace.accesses:
        place = places[access.seq]
        assert not place.after_instruction  # TCG gives the instruction itself
        assert place.function is not None
        if access.space == "mmio":  # the probe's BAR accessors (bar_read32, bar_write32)
            assert access.op in place.function, (access, place)


def test_a_linux_tcg_capture_names_the_drivers_functions(capture: Capture) -> None:
    result = capture("e1000", "tcg", guest="linux", timeout_s=240.0)  # test_linux_guest's
    assert result.status == "ok", result.reason
    trace = read_trace(result.out_dir)
    symbols = guest_symbols(result.out_dir, trace)
    assert symbols is not None, "the driver's load address was not found from its accesses"
    places = access_places(trace, symbols)
    driver = [a for a in trace.accesses if a.space in ("mmio", "pio")]
    named = [a for a in driver if places[a.seq].function is not None]
    print(f"{len(named)}/{len(driver)} driver accesses named ({symbols.source})")
    assert driver and len(named) >= 0.95 * len(driver)
    assert all((places[a.seq].symbol or "").endswith("(e1000.ko)") for a in named)
    assert all((places[a.seq].function or "").startswith("e1000_") for a in named)

"""The fast collector (issue 15) against the breakpoint collector, on real captures: the same
probe run recorded both ways gives the same register accesses (op, region, offset, size,
value, handler, thread, order) and stacks that map one to one, the same DMA copies, and the same
configuration-space accesses and INTx level changes in the same places among them; the
self-checks pass and are in the end record and the summary; what the fast collector does
not record is named in the header; an interrupted fast capture keeps what was traced.

Each breakpoint capture is shared with the other integration tests (the session's
``capture`` fixture runs each configuration once)."""

from __future__ import annotations

import bisect
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from qtrace.docker_env import KIND_LABEL, qtrace_containers
from qtrace.launch.capture import CaptureResult
from qtrace.trace import Access, Dma, KvmVcpu, Trace, iter_records, read_trace
from qtrace.verify import verify_file
from tests.integration.conftest import require_kvm

Capture = Callable[..., CaptureResult]
COALESCED_FLUSH = "qemu_flush_coalesced_mmio_buffer"
CHAIN_ENDS = ("start_thread", "g_main_context_dispatch", "main")
ICR = 0xC0  # the e1000's interrupt cause register (Intel 8254x manual, 13.4.17)
ICR_RECEIVE_CAUSES = 0x80 | 0x40 | 0x10  # RXT0, RXO, RXDMT0


def _register_accesses(path: Path) -> list[Access]:
    return [a for a in read_trace(path).accesses if a.space != "pci-config"]


def _timing_free(a: Access) -> int:
    """An access's value without what timing decides: ICR's receive causes are set by the
    frames the main loop delivers while the vCPU polls, and how many arrived before a read
    is timing's (the breakpoint collector slows the vCPU, not the main loop). Its other
    causes are not."""
    if a.op == "read" and a.region == "e1000-mmio" and a.offset == ICR:
        return a.value & ~ICR_RECEIVE_CAUSES
    return a.value


def _same_accesses_and_stacks(fast: CaptureResult, slow: CaptureResult) -> dict[str, str]:
    """Assert the two captures' register accesses agree; return the fast -> breakpoint
    stack map (one breakpoint stack for each fast stack, and the other way round)."""
    quick, full = _register_accesses(fast.out_dir), _register_accesses(slow.out_dir)

    def key(a: Access) -> tuple[object, ...]:
        return (a.op, a.space, a.region, a.offset, a.size, _timing_free(a), a.handler)

    assert len(quick) == len(full) >= 80
    assert [key(a) for a in quick] == [key(a) for a in full]
    stacks = read_trace(fast.out_dir).stacks
    mapping: dict[str, set[str]] = {}
    for a, b in zip(quick, full, strict=True):
        frames = [f.func for f in stacks[a.stack or ""].frames]
        if COALESCED_FLUSH in frames:
            # A write KVM coalesced is replayed by whichever thread next flushes the buffer
            # (the vCPU, or the RCU thread freeing a FlatView): its stack is timing's.
            continue
        assert a.thread == b.thread, (a, b)
        mapping.setdefault(a.stack or "", set()).add(b.stack or "")
    assert all(len(targets) == 1 for targets in mapping.values()), mapping
    flat = {s: next(iter(t)) for s, t in mapping.items()}
    assert len(set(flat.values())) == len(flat), "two fast stacks for one breakpoint stack"
    return flat


def _checks_pass(result: CaptureResult) -> dict[str, object]:
    trace = read_trace(result.out_dir)
    assert trace.end is not None and trace.end.fast_checks is not None
    checks = trace.end.fast_checks
    assert checks["ok"] is True and checks["zeroed"] == 0 and checks["undecodable"] == 0
    assert checks["hits_by_agent"] == checks["frames_saved"] == checks["frames_decoded"]
    summary = json.loads((result.out_dir / "summary.json").read_text())
    assert summary["collector"] == "fast" and summary["fast_checks"] == checks
    assert summary["irqs"] == len(trace.irqs), "INTx changes are counted"
    assert summary["dmas"] == len(trace.dmas), "DMA copies are counted"
    arming = trace.header.arming
    assert "fast tracepoints" in arming["device_handlers"]
    assert "fast tracepoints" in arming["pci_config"] and "MSI-X" in arming["irq"]
    assert "bus-master address space" in arming["dma"] and "256 bytes" in arming["dma"]
    left_out = set(arming["not_recorded"].split(":")[0].split(", "))
    assert not {"pci_config", "irq", "dma"} & left_out and "async" in left_out
    assert "address_space_map" in arming["not_recorded"], "what DMA it leaves out is named"
    if trace.header.accel == "kvm":  # the exits, at a fast tracepoint before the switch
        assert checks["kvm_exits"] is True and "kvm_exits" not in left_out
        assert "fast tracepoint" in arming["kvm_exits"] and trace.exits
        assert summary["exits"] == len(trace.exits)
    else:
        assert checks["kvm_exits"] is False and "kvm_exits" in left_out
        assert summary["exits"] is None and not trace.exits
    return checks


def test_fast_tcg_probe_capture_equals_the_breakpoint_capture(capture: Capture) -> None:
    fast = capture("e1000", "tcg", collector="fast")
    slow = capture("e1000", "tcg")
    assert fast.status == "ok", (fast.reason, fast.hint)
    checks = _checks_pass(fast)
    mapping = _same_accesses_and_stacks(fast, slow)
    print(f"\n[fast] e1000 TCG probe: {fast.accesses} accesses, {fast.stacks} stacks "
          f"(breakpoint {slow.stacks}), checks {checks}, map {mapping}")  # fmt: skip
    # The stacks say what the breakpoint collector's say: the handler, then the accessor,
    # from TCG's softmmu helpers.
    stack = read_trace(fast.out_dir).stacks[next(iter(mapping))]
    funcs = [f.func for f in stack.frames]
    assert funcs[0] == "e1000_mmio_read" and funcs[1] == "memory_region_read_accessor"
    assert "memory_region_dispatch_read" in funcs and "start_thread" in funcs
    _same_dma(fast, slow)


def _same_dma(fast: CaptureResult, slow: CaptureResult) -> None:
    """The two captures' DMA copies agree in order, direction, address, size, bytes,
    thread and the path that made them (the stack's functions below its first frame, which
    is the tracepoint's line in dma_memory_rw_relaxed, where the breakpoint's is its
    return)."""
    quick, full = read_trace(fast.out_dir), read_trace(slow.out_dir)

    def key(trace: Trace, d: Dma) -> tuple[object, ...]:
        frames = trace.stacks[d.stack or ""].frames
        assert frames[0].func == "dma_memory_rw_relaxed"
        path = [f.func for f in frames[1:]]
        # The two unwinders end apart: the fast chain where the frame pointers do
        # (start_thread, glib's dispatch, libc's caller of main), gdb's at clone or main.
        ends = [i for i, func in enumerate(path) if func in CHAIN_ENDS]
        return (d.op, d.addr, d.size, d.data, d.truncated, d.api, d.thread,
                tuple(path[: ends[0] + 1] if ends else path))  # fmt: skip

    assert len(quick.dmas) == len(full.dmas) >= 100
    assert any(d.op == "read" for d in quick.dmas) and any(d.op == "write" for d in quick.dmas)
    assert [key(quick, d) for d in quick.dmas] == [key(full, d) for d in full.dmas]


def _config_accesses(path: Path) -> list[tuple[int, tuple[object, ...]]]:
    """The configuration-space accesses with their positions among all the accesses."""
    return [
        (i, (a.op, a.region, a.offset, a.size, a.value, a.handler, a.device))
        for i, a in enumerate(read_trace(path).accesses)
        if a.space == "pci-config"
    ]


def _irqs(path: Path) -> list[tuple[int, int, str, str | None]]:
    """Each irq record's place (how many accesses came before it), level, line, thread."""
    trace = read_trace(path)
    seqs = sorted(a.seq for a in trace.accesses)
    return [(bisect.bisect(seqs, i.seq), i.level, i.line, i.thread) for i in trace.irqs]


def test_fast_tcg_probe_config_accesses_equal_the_breakpoint_capture(capture: Capture) -> None:
    """The device's configuration-space accesses (fast tracepoints in
    pci_host_config_{read,write}_common) are the breakpoint collector's: op, offset, size,
    value, handler, and where each falls among the register accesses (one seq)."""
    fast = capture("e1000", "tcg", collector="fast")
    slow = capture("e1000", "tcg")
    assert fast.status == "ok", (fast.reason, fast.hint)
    quick, full = _config_accesses(fast.out_dir), _config_accesses(slow.out_dir)
    assert len(quick) >= 10 and {k[0] for _, k in quick} == {"read", "write"}
    assert quick == full
    trace = read_trace(fast.out_dir)
    events = sorted(r.seq for r in [*trace.accesses, *trace.irqs, *trace.dmas])
    assert events == list(range(1, len(events) + 1))  # one seq with the irq and dma records
    config = [a for a in trace.accesses if a.space == "pci-config"]
    for access in config:
        frames = [f.func for f in trace.stacks[access.stack or ""].frames]
        assert frames[0] == f"pci_host_config_{access.op}_common", frames
        assert "start_thread" in frames and access.thread == "CPU 0/TCG"
    print(f"\n[fast] e1000 TCG probe: {len(quick)} config accesses equal the breakpoint "
          f"capture's, among {len(trace.accesses)} accesses")  # fmt: skip


def test_fast_tcg_probe_intx_changes_equal_the_breakpoint_capture(capture: Capture) -> None:
    """The device's INTx level changes (a fast tracepoint at pci_irq_handler's call of
    pci_set_irq_state) are the breakpoint collector's: level, line, thread, and where each
    falls among the accesses; their stacks begin at pci_set_irq as its do."""
    fast = capture("e1000", "tcg", collector="fast")
    slow = capture("e1000", "tcg")
    assert fast.status == "ok", (fast.reason, fast.hint)
    quick, full = _irqs(fast.out_dir), _irqs(slow.out_dir)
    assert len(quick) >= 2 and {level for _, level, _, _ in quick} == {0, 1}
    assert quick == full
    trace, other = read_trace(fast.out_dir), read_trace(slow.out_dir)
    for mine, theirs in zip(trace.irqs, other.irqs, strict=True):
        funcs = [f.func for f in trace.stacks[mine.stack or ""].frames]
        assert funcs[0] == "pci_set_irq" and len(funcs) >= 5
        their = [f.func for f in other.stacks[theirs.stack or ""].frames]
        n = min(len(funcs), len(their))  # the two unwinders end a frame apart (clone, libc)
        assert funcs[:n] == their[:n] and n >= len(their) - 1
    events = sorted(r.seq for r in [*trace.accesses, *trace.irqs, *trace.dmas])
    assert events == list(range(1, len(events) + 1))  # one seq, no gap
    print(f"\n[fast] e1000 TCG probe: {len(quick)} INTx changes equal the breakpoint "
          "capture's")


def _exits(trace: Trace) -> list[tuple[object, ...]]:
    return [(e.reason, e.vcpu, e.thread, e.port, e.size, e.direction, e.count, e.data,
             e.phys_addr, e.len, e.is_write, e.guest_pc) for e in trace.exits]  # fmt: skip


def _links(trace: Trace) -> list[tuple[object, ...]]:
    """Each access's exit (by its place among the exits), address, space and vCPU."""
    place = {e.seq: i for i, e in enumerate(trace.exits)}
    return [(place.get(a.exit_seq or 0), a.addr, a.space, a.vcpu, a.coalesced)
            for a in trace.accesses]  # fmt: skip


def _per_thread(trace: Trace) -> dict[str | None, list[tuple[object, ...]]]:
    """Each thread's exits and accesses in its order (the order between threads is
    timing's: the breakpoint collector slows the vCPU, not the main loop). INTx changes are
    left out under KVM: whether a frame the main loop delivers raises the line, or finds it
    high already, depends on when the vCPU last read ICR (seen in CI: two raises on the
    main loop in one run, one in the other); TCG's test compares them."""
    events: list[tuple[int, str | None, tuple[object, ...]]] = [
        *((e.seq, e.thread, ("exit", e.reason, e.port, e.phys_addr)) for e in trace.exits),
        *((a.seq, a.thread, ("access", a.offset, _timing_free(a))) for a in trace.accesses
          if not a.coalesced),
    ]  # fmt: skip
    out: dict[str | None, list[tuple[object, ...]]] = {}
    for _, thread, event in sorted(events, key=lambda e: e[0]):
        out.setdefault(thread, []).append(event)
    return out


def test_fast_kvm_probe_capture_equals_the_breakpoint_capture(capture: Capture) -> None:
    """Under KVM the exits as well: the same reasons, ports, addresses, data, vCPU and guest
    PC, each access tied to the same exit, and each thread's events in the same order."""
    fast = capture("e1000", "kvm", collector="fast")
    slow = capture("e1000", "kvm")
    assert fast.status == "ok", (fast.reason, fast.hint)
    checks = _checks_pass(fast)
    mapping = _same_accesses_and_stacks(fast, slow)
    assert mapping, "no stack compared"
    quick, full = read_trace(fast.out_dir), read_trace(slow.out_dir)
    funcs = [f.func for f in quick.stacks[next(iter(mapping))].frames]
    assert "kvm_cpu_exec" in funcs
    assert len(quick.exits) >= 100 and _exits(quick) == _exits(full)
    assert {e.reason for e in quick.exits} == {"KVM_EXIT_IO", "KVM_EXIT_MMIO"}
    assert all(e.guest_pc for e in quick.exits), "KVM synced the registers at every exit"
    links = [(x, y) for x, y in zip(_links(quick), _links(full), strict=True)]
    # A coalesced write is replayed by whichever thread flushes the ring first (timing's).
    assert all(x == y for x, y in links if not (x[4] or y[4])), links
    assert sum(1 for x, _ in links if x[0] is not None) >= 80
    assert _per_thread(quick) == _per_thread(full)
    frames = [f.func for f in quick.stacks[quick.exits[0].stack or ""].frames]
    assert frames[0] == "kvm_cpu_exec" and "kvm_vcpu_thread_fn" in frames
    assert checks["quiet_exits"] > 0  # the serial console's and the marker's ports
    vcpus = [r for r in iter_records(fast.out_dir / "trace.jsonl") if isinstance(r, KvmVcpu)]
    assert [(v.index, v.sync_regs) for v in vcpus] == [(0, True)]


def test_verify_of_a_fast_capture_compares_its_dma(capture: Capture) -> None:
    """The fast trace holds the device's DMA copies: the model's transmit fetches the
    descriptors and the frame it records, so the replay compares them, and finds no
    mismatch, as on the breakpoint capture."""
    fast = capture("e1000", "tcg", collector="fast")
    result = verify_file(fast.out_dir / "trace.jsonl", "e1000")
    assert result.dma_recorded and result.dma_unrecorded == 0
    assert result.reads_compared >= 40 and result.ok, result
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("qtrace")), "verify", "e1000", "--trace",
         str(fast.out_dir / "trace.jsonl")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    assert proc.returncode == 0 and "no mismatch" in proc.stdout, proc.stderr


def test_fast_capture_of_a_virtio_device_equals_the_breakpoint_capture(capture: Capture) -> None:
    """virtio-rng-pci: regions in two BARs (virtio structures, the MSI-X table), each with
    its own handlers; the fast collector tells them apart by MemoryRegion."""
    fast = capture("virtio-rng-pci", "tcg", collector="fast")
    slow = capture("virtio-rng-pci", "tcg")
    assert fast.status == "ok", (fast.reason, fast.hint)
    _checks_pass(fast)
    quick, full = _register_accesses(fast.out_dir), _register_accesses(slow.out_dir)
    assert [(a.region, a.offset, a.value) for a in quick] == [
        (a.region, a.offset, a.value) for a in full
    ]
    assert len({a.region for a in quick}) >= 3
    # Its MSI-X interrupt (msix_notify's fast tracepoint): the same vector, message, mask
    # and pending bits, thread, and place among the accesses; the stack from msix_notify.
    fast_trace, slow_trace = read_trace(fast.out_dir), read_trace(slow.out_dir)

    def messages(trace: Trace) -> list[tuple[object, ...]]:
        seqs = sorted(a.seq for a in trace.accesses)
        return [(bisect.bisect(seqs, i.seq), i.line, i.level, i.address, i.data, i.masked,
                 i.pending, i.thread) for i in trace.irqs]  # fmt: skip

    assert messages(fast_trace) == messages(slow_trace)
    assert [i.line for i in fast_trace.irqs] == ["MSI-X:0"]
    frames = [f.func for f in fast_trace.stacks[fast_trace.irqs[0].stack or ""].frames]
    assert frames[:2] == ["msix_notify", "virtio_pci_notify"], frames


def _fast_checks(result: CaptureResult) -> dict[str, object]:
    trace = read_trace(result.out_dir)
    assert trace.end is not None and trace.end.fast_checks is not None
    return trace.end.fast_checks


def test_a_long_fast_capture_drains_its_buffer_and_loses_no_hit(capture: Capture) -> None:
    """120,000 reads and more, several times what one drain takes: the buffer is read in
    segments while QEMU runs, and every frame the agent counted becomes one access, in
    order, numbered without a gap, on the probe's few stacks."""
    fast = capture("e1000", "tcg", collector="fast", load_rounds=30000)
    assert fast.status == "ok", (fast.reason, fast.hint)
    checks = _checks_pass(fast)
    assert checks["segments"] >= 3 and checks["buffer_full"] is False
    trace = read_trace(fast.out_dir)
    everything = trace.accesses
    # Every frame is an access, an interrupt or a DMA copy but the start marker's and the firmware's
    # config accesses before it.
    recorded = len(everything) + len(trace.irqs) + len(trace.dmas)
    assert recorded + checks["before_arming"] + checks["irq_other_paths"] == (
        checks["hits_by_agent"] - 1)
    accesses = _register_accesses(fast.out_dir)
    assert len(accesses) >= 120_000
    events = sorted(r.seq for r in [*everything, *trace.irqs, *trace.dmas])
    assert events == list(range(1, recorded + 1))
    times = [a.t for a in everything]
    assert None not in times and times == sorted(times)  # type: ignore[type-var]
    assert {a.region for a in accesses} <= {"e1000-mmio", "e1000-io"}
    assert len({a.stack for a in accesses}) <= 10, "the rounds repeat the probe's own few paths"
    probe = capture("e1000", "tcg", collector="fast")
    # The rounds come after the probe's sequence, which is unchanged at the start.
    first = [(a.op, a.offset, a.value) for a in _register_accesses(probe.out_dir)]
    assert [(a.op, a.offset, a.value) for a in accesses[: len(first)]] == first


def test_a_fast_firmware_capture_stops_at_max_hits_with_every_hit_accounted(
    capture: Capture,
) -> None:
    """iPXE polls the NIC without end: --max-hits bounds the capture. The agent traces a
    little past the limit before the run stops; those hits are counted, not written."""
    fast = capture("e1000", "tcg", guest="firmware", collector="fast", max_hits=100_000)
    assert fast.status == "ok", (fast.reason, fast.hint)
    assert fast.reason == "stopped at --max-hits 100000"
    checks = _fast_checks(fast)
    assert checks["ok"] is True and checks["segments"] >= 2
    trace = read_trace(fast.out_dir)
    assert len(trace.accesses) == 100_000
    assert checks["hits_by_agent"] == checks["frames_decoded"] == 100_000 + len(trace.irqs) + (
        len(trace.dmas) + checks["beyond_max_hits"] + checks["irq_other_paths"])  # fmt: skip
    assert trace.dmas, "iPXE fetches its descriptors by DMA"
    icr = [a for a in trace.accesses if a.offset == 0xC0 and a.op == "read"]
    assert len(icr) > 50_000, "most of it is iPXE's polling of ICR"


def test_a_kvm_internal_error_ends_a_fast_capture_at_once(
    debug_image: object, tmp_path: Path
) -> None:
    """Under this machine's nested KVM the iPXE ROM makes KVM give up and QEMU pauses the
    guest; under gdbserver QEMU's words reach gdb, and the capture ends with the error and
    the way out, keeping what was traced, instead of waiting out its timeout."""
    require_kvm()
    out = tmp_path / "fast-kvm-firmware"
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("qtrace")), "capture", "e1000", "--guest",
         "firmware", "--accel", "kvm", "--collector", "fast", "--timeout", "300",
         "--out", str(out)],
        capture_output=True, text=True, timeout=400, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    assert "KVM internal error" in (out / "qemu.log").read_text(errors="replace"), (
        "the fault this test is about did not happen"
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    assert "--accel tcg" in proc.stderr
    trace = read_trace(out)
    assert trace.end is not None and trace.end.status == "error"
    assert "Suberror: 1" in (trace.end.reason or "")
    assert trace.end.fast_checks is not None and trace.end.fast_checks["ok"] is True


def test_ctrl_c_during_a_fast_capture_keeps_what_was_traced(
    debug_image: object, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    out = tmp_path / "fast-interrupted"
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("qtrace")), "capture", "e1000", "--accel", "tcg",
         "--collector", "fast", "--probe-rounds", "40000000", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        gdb_log = out / "gdb.log"
        while time.monotonic() < deadline:
            if gdb_log.exists() and "tstart" in gdb_log.read_text(errors="replace"):
                break
            time.sleep(0.2)
        time.sleep(3)  # the guest's rounds of reads are being traced
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    trace = read_trace(out)
    assert trace.end is not None and trace.end.status == "interrupted"
    assert trace.end.fast_checks is not None and len(trace.accesses) >= 20
    # Interrupted between two drains or during one, no segment is written twice.
    times = [a.t for a in trace.accesses]
    assert None not in times and times == sorted(times)  # type: ignore[type-var]
    assert trace.end.fast_checks["hits_by_agent"] == trace.end.fast_checks["frames_decoded"]
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    left = [c for c in qtrace_containers(docker_client) if c.labels.get(KIND_LABEL) == "capture"]
    assert not left, f"containers left behind: {[c.name for c in left]}"



@pytest.mark.parametrize("version", ["7.2", "10.0.13"])
def test_fast_capture_on_the_other_built_versions(capture: Capture, version: str) -> None:
    """The accessor call sites and spill slots are found in each build's disassembly."""
    fast = capture("e1000", "tcg", collector="fast", qemu_version=version)
    assert fast.status == "ok", (fast.reason, fast.hint)
    _checks_pass(fast)
    trace = read_trace(fast.out_dir)
    assert len(trace.accesses) >= 80 and trace.header.qemu_version == version
    for stack in trace.stacks.values():
        funcs = [f.func for f in stack.frames]
        if funcs[0].startswith("pci_host_config_"):  # a configuration-space access
            assert funcs[1] == "pci_data_read" or funcs[1] == "pci_data_write", funcs
        elif funcs[0] == "pci_set_irq":  # an INTx change
            assert funcs[1] == "set_interrupt_cause", funcs
        elif funcs[0] == "dma_memory_rw_relaxed":  # a DMA copy
            assert funcs[1] == "dma_memory_rw", funcs
        else:
            assert funcs[0].startswith("e1000_") and funcs[1].startswith("memory_region_")
        # Down to the thread's start (an interrupt raised from the main loop: main's caller).
        assert funcs[-1] in ("start_thread", "__libc_start_call_main"), funcs
    assert any(a.space == "pci-config" and a.op == "write" for a in trace.accesses)
    assert {i.level for i in trace.irqs} == {0, 1}


@pytest.mark.parametrize("version", ["7.2", "10.0.13"])
def test_fast_kvm_exits_on_the_other_built_versions(capture: Capture, version: str) -> None:
    """The exit tracepoint's call and kvm_cpu_exec's slot of ``run`` are found in each
    build: the exits equal the breakpoint capture's on that version, and so do each
    access's links to them."""
    require_kvm()
    fast = capture("e1000", "kvm", collector="fast", qemu_version=version)
    slow = capture("e1000", "kvm", qemu_version=version)
    assert fast.status == "ok", (fast.reason, fast.hint)
    _checks_pass(fast)
    quick, full = read_trace(fast.out_dir), read_trace(slow.out_dir)
    assert len(quick.exits) >= 100 and _exits(quick) == _exits(full)
    links = [(x, y) for x, y in zip(_links(quick), _links(full), strict=True)]
    assert all(x == y for x, y in links if not (x[4] or y[4])), links
    assert _per_thread(quick) == _per_thread(full)

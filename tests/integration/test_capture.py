"""Real captures: QEMU 10.2.2 under gdb in the container, the probe guest driving devices.

Every read value in the trace must equal what the guest printed on its serial port, and
the stacks must show the path the question asks about (vCPU thread -> kvm_cpu_exec ->
memory API -> device handler) under KVM, and the softmmu path under TCG.
"""

from __future__ import annotations

from collections.abc import Callable

from qtrace.guests.probe_output import read_serial_log
from qtrace.launch.capture import CaptureResult
from qtrace.trace import Trace, read_trace

Capture = Callable[..., CaptureResult]
Key = tuple[str, str, int, int, int]


def _keys(trace: Trace) -> list[Key]:
    """The trace's accesses as the guest logs them: offsets from the BAR's start (a region
    inside a BAR, e.g. an MSI-X PBA, has its offset in the header's region map)."""
    base = {r.name: r.offset for r in trace.header.regions if r.kind == "io"}
    return [
        (a.op, a.space, a.offset + base.get(a.region or "", 0), a.size, a.value)
        for a in trace.accesses
    ]


def _guest_keys(result: CaptureResult) -> list[Key]:
    output = read_serial_log(result.out_dir / "serial.log")
    assert output.ok, output.info[-5:]
    return [(a.op, a.space, a.offset, a.size, a.value) for a in output.accesses]


def _funcs(trace: Trace, stack_id: str | None) -> list[str]:
    assert stack_id is not None
    return [f.func for f in trace.stacks[stack_id].frames]


def _is_subsequence(small: list[Key], big: list[Key]) -> bool:
    remaining = iter(big)
    return all(any(item == other for other in remaining) for item in small)


def test_kvm_probe_capture_finishes_ok(capture: Capture) -> None:
    result = capture("e1000", "kvm")
    assert result.status == "ok", result.reason
    trace = read_trace(result.out_dir)
    assert trace.end is not None and trace.end.status == "ok"
    # Nothing noted: among others, each exit breakpoint's decode of kvm_run through its
    # learned layout agreed with gdb's own at its first hit (kvm_exit.py).
    assert trace.end.collector_errors is None, trace.end.collector_error_messages
    assert trace.header.accel == "kvm" and trace.header.device == "e1000"
    for name in (
        "trace.jsonl",
        "qemu.log",
        "gdb.log",
        "serial.log",
        "summary.json",
        "manifest.json",
    ):
        assert (result.out_dir / name).is_file(), name


def test_kvm_trace_values_match_the_guest_serial_output(capture: Capture) -> None:
    result = capture("e1000", "kvm")
    trace = read_trace(result.out_dir)
    assert _keys(trace) == _guest_keys(result)
    reads = [a for a in trace.accesses if a.op == "read" and a.space == "mmio"]
    status = next(a for a in reads if a.offset == 0x8)
    assert status.value & 0x2, "STATUS.LU (link up) must be set"


def test_kvm_exits_on_config_ports_and_on_the_bar(capture: Capture) -> None:
    trace = read_trace(capture("e1000", "kvm").out_dir)
    ports = {e.port for e in trace.exits if e.reason == "KVM_EXIT_IO"}
    assert {0xCF8, 0xCFC} <= ports
    mmio_exits = {e.seq: e for e in trace.exits if e.reason == "KVM_EXIT_MMIO"}
    device_mmio = [a for a in trace.accesses if a.space == "mmio"]
    assert device_mmio
    coalesced = [a for a in device_mmio if a.coalesced]
    for access in coalesced:
        # KVM buffers some e1000 register writes in its coalesced-MMIO ring (no exit);
        # QEMU replays them from kvm_flush_coalesced_mmio_buffer on the next exit.
        assert access.op == "write" and access.exit_seq is None
        assert "kvm_flush_coalesced_mmio_buffer" in _funcs(trace, access.stack)
    for access in (a for a in device_mmio if not a.coalesced):
        assert access.exit_seq in mmio_exits, (
            "each MMIO access links to the KVM_EXIT_MMIO that caused it"
        )
        exit_record = mmio_exits[access.exit_seq]
        assert exit_record.is_write == (access.op == "write")
        assert access.addr == exit_record.phys_addr
    config = [a for a in trace.accesses if a.space == "pci-config"]
    by_seq = {e.seq: e for e in trace.exits}
    assert config and all(by_seq[a.exit_seq].port in range(0xCFC, 0xD00) for a in config)


def test_kvm_stacks_run_from_vcpu_thread_through_kvm_cpu_exec_to_the_handler(
    capture: Capture,
) -> None:
    trace = read_trace(capture("e1000", "kvm").out_dir)
    for op, handler in (("read", "e1000_mmio_read"), ("write", "e1000_mmio_write")):
        access = next(a for a in trace.accesses if a.space == "mmio" and a.op == op)
        funcs = _funcs(trace, access.stack)
        assert funcs[0] == handler
        assert "kvm_cpu_exec" in funcs and "kvm_vcpu_thread_fn" in funcs
        assert (
            funcs.index(handler) < funcs.index("kvm_cpu_exec") < funcs.index("kvm_vcpu_thread_fn")
        )
        assert any(f.startswith("memory_region_dispatch_") for f in funcs)
        assert not any(f.startswith("qemu_wait_io_event") for f in funcs)
        top = trace.stacks[access.stack].frames[0]
        assert top.file == "hw/net/e1000.c" and top.line


def test_each_access_has_its_own_stack_not_a_shared_guess(capture: Capture) -> None:
    trace = read_trace(capture("e1000", "kvm").out_dir)
    for access in trace.accesses:
        frames = trace.stacks[access.stack].frames  # type: ignore[index]
        if access.space == "pci-config":
            assert frames[0].func.startswith("pci_host_config_")
        else:
            assert frames[0].func == access.handler


def test_kvm_end_record_carries_the_hosts_coalescing_evidence(capture: Capture) -> None:
    """The zones QEMU registered decide which writes exit: every buffered write lies inside
    one, every BAR write that exited lies outside all of them (checked on the real run)."""
    trace = read_trace(capture("e1000", "kvm").out_dir)
    assert trace.end is not None and trace.end.kvm is not None
    kvm = trace.end.kvm
    assert kvm.capabilities is not None and set(kvm.capabilities) == {
        "coalesced_mmio",
        "coalesced_pio",
    }
    mmio = [a for a in trace.accesses if a.space == "mmio"]
    first = next(a for a in mmio if a.addr is not None)
    assert first.addr is not None
    base = first.addr - first.offset
    zones = [z for z in kvm.zones_in_effect("mmio") if z.region == first.region]
    assert zones, kvm.zones

    def inside(access: object) -> bool:
        start = base + access.offset  # type: ignore[attr-defined]
        return any(z.start <= start and start + access.size <= z.start + z.size for z in zones)  # type: ignore[attr-defined]

    buffered = [a for a in mmio if a.coalesced]
    exited_writes = [a for a in mmio if a.op == "write" and a.exit_seq is not None]
    assert buffered and exited_writes
    assert all(inside(a) for a in buffered)
    assert not any(inside(a) for a in exited_writes)
    assert read_trace(capture("e1000", "tcg").out_dir).end.kvm is None  # type: ignore[union-attr]


def test_tcg_capture_records_the_softmmu_path(capture: Capture) -> None:
    result = capture("e1000", "tcg")
    assert result.status == "ok", result.reason
    trace = read_trace(result.out_dir)
    assert not trace.exits
    assert trace.end is not None and trace.end.collector_errors is None, (
        trace.end.collector_error_messages
    )
    assert _keys(trace) == _guest_keys(result)
    read = next(a for a in trace.accesses if a.space == "mmio" and a.op == "read")
    funcs = _funcs(trace, read.stack)
    assert funcs[0] == "e1000_mmio_read"
    assert "kvm_cpu_exec" not in funcs
    assert any(f.startswith(("helper_ld", "do_ld", "int_ld")) for f in funcs), funcs
    assert "cpu_tb_exec" in funcs or "cpu_exec" in funcs


def test_rtl8139_and_e1000e_capture_with_the_generic_sequence(capture: Capture) -> None:
    for device, handler_prefix in (("rtl8139", "rtl8139_"), ("e1000e", "e1000e_")):
        result = capture(device, "kvm")
        assert result.status == "ok", (device, result.reason)
        trace = read_trace(result.out_dir)
        registers = [a for a in trace.accesses if a.space != "pci-config"]
        # Discovery breaks on every region of the device: its own and the MSI-X table and
        # PBA that QEMU's shared MSI-X code serves inside e1000e's BAR 3.
        own = [a for a in registers if (a.handler or "").startswith(handler_prefix)]
        msix = [a for a in registers if a.region in ("msix-table", "msix-pba")]
        assert own and len(own) + len(msix) == len(registers)
        assert all((a.handler or "").startswith("msix_") for a in msix)
        assert bool(msix) == (device == "e1000e")
        # The guest reads every register of each BAR; parts of e1000e's BARs (flash) have
        # no handler in QEMU, so the trace is a subsequence of the guest's list.
        assert _is_subsequence(_keys(trace), _guest_keys(result))


def test_q35_reaches_config_space_through_mmconfig(capture: Capture) -> None:
    result = capture("e1000", "kvm", "q35")
    assert result.status == "ok", result.reason
    trace = read_trace(result.out_dir)
    assert _keys(trace) == _guest_keys(result)
    by_seq = {e.seq: e for e in trace.exits}
    config = [a for a in trace.accesses if a.space == "pci-config"]
    assert config
    for access in config:
        exit_record = by_seq[access.exit_seq]  # type: ignore[index]
        assert exit_record.reason == "KVM_EXIT_MMIO"
        assert 0xB000_0000 <= (exit_record.phys_addr or 0) < 0xC000_0000
        assert "pcie_mmcfg_data_read" in _funcs(
            trace, access.stack
        ) or "pcie_mmcfg_data_write" in _funcs(trace, access.stack)


def test_interrupt_and_tx_dma_are_recorded_with_their_stacks(capture: Capture) -> None:
    trace = read_trace(capture("e1000", "kvm").out_dir)
    raised = [i for i in trace.irqs if i.level == 1 and i.line == "INTx"]
    assert raised and any(i.level == 0 for i in trace.irqs)
    assert "set_interrupt_cause" in _funcs(trace, raised[0].stack) or "set_ics" in _funcs(
        trace, raised[0].stack
    )
    # The probe's one frame: descriptor fetch (16 bytes), frame read, status writeback.
    fetch = trace.dmas[0]
    assert fetch.op == "read" and fetch.size == 16
    assert "start_xmit" in _funcs(trace, fetch.stack)
    frame = next(d for d in trace.dmas if d.op == "read" and d.size == 60)
    assert bytes.fromhex(frame.data)[:6] == b"\xff" * 6 and b"qtrace" in bytes.fromhex(frame.data)
    writeback = next(d for d in trace.dmas if d.op == "write")
    assert int.from_bytes(bytes.fromhex(writeback.data)[:1], "little") & 0x1, "DD bit written back"

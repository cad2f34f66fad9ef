"""The same capture code on an older QEMU: 7.2 (softmmu/ paths, no flatview_*_step)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qtrace.guests.probe_output import read_serial_log
from qtrace.launch.capture import CaptureResult
from qtrace.trace import read_trace

OLDER_VERSION = "7.2"


@pytest.mark.parametrize("accel", ["kvm", "tcg"])
def test_older_qemu_capture_passes_the_same_checks(capture: Callable[..., CaptureResult], accel: str) -> None:
    result = capture("e1000", accel, qemu_version=OLDER_VERSION)
    assert result.status == "ok", result.reason
    trace = read_trace(result.out_dir)
    assert trace.header.qemu_version == OLDER_VERSION
    guest = read_serial_log(result.out_dir / "serial.log")
    assert [(a.op, a.space, a.offset, a.size, a.value) for a in trace.accesses] == [
        (a.op, a.space, a.offset, a.size, a.value) for a in guest.accesses
    ]
    read = next(a for a in trace.accesses if a.space == "mmio" and a.op == "read")
    frames = trace.stacks[read.stack].frames  # type: ignore[index]
    funcs = [f.func for f in frames]
    assert funcs[0] == "e1000_mmio_read"
    memory_files = {f.file for f in frames if f.func.startswith("memory_region_dispatch")}
    assert memory_files == {"softmmu/memory.c"}, "7.2 keeps the memory API in softmmu/"
    assert "flatview_read_continue_step" not in funcs
    if accel == "kvm":
        assert funcs.index("kvm_cpu_exec") < funcs.index("kvm_vcpu_thread_fn")
        assert {e.reason for e in trace.exits} >= {"KVM_EXIT_IO", "KVM_EXIT_MMIO"}
    assert trace.irqs and trace.dmas

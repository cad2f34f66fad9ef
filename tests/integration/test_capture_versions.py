"""The same capture code on older QEMU releases: 7.2 (softmmu/ paths, no
flatview_read_continue_step) and 10.0.13 (system/ paths, the step function exists)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qtrace.guests.probe_output import read_serial_log
from qtrace.launch.capture import CaptureResult
from qtrace.trace import read_trace

# release -> (where the memory API lives, whether flatview_read_continue_step exists)
OLDER_RELEASES = {"7.2": ("softmmu/memory.c", False), "10.0.13": ("system/memory.c", True)}


@pytest.mark.parametrize(
    ("version", "accel"),
    [("7.2", "kvm"), ("7.2", "tcg"), ("10.0.13", "kvm")],
    ids=["7.2-kvm", "7.2-tcg", "10.0.13-kvm"],
)
def test_older_qemu_capture_passes_the_same_checks(
    capture: Callable[..., CaptureResult], version: str, accel: str
) -> None:
    memory_file, has_step = OLDER_RELEASES[version]
    result = capture("e1000", accel, qemu_version=version)
    assert result.status == "ok", result.reason
    trace = read_trace(result.out_dir)
    assert trace.header.qemu_version == version
    guest = read_serial_log(result.out_dir / "serial.log")
    assert [(a.op, a.space, a.offset, a.size, a.value) for a in trace.accesses] == [
        (a.op, a.space, a.offset, a.size, a.value) for a in guest.accesses
    ]
    read = next(a for a in trace.accesses if a.space == "mmio" and a.op == "read")
    frames = trace.stacks[read.stack].frames  # type: ignore[index]
    funcs = [f.func for f in frames]
    assert funcs[0] == "e1000_mmio_read"
    memory_files = {f.file for f in frames if f.func.startswith("memory_region_dispatch")}
    assert memory_files == {memory_file}
    assert ("flatview_read_continue_step" in funcs) == has_step
    if accel == "kvm":
        assert funcs.index("kvm_cpu_exec") < funcs.index("kvm_vcpu_thread_fn")
        assert {e.reason for e in trace.exits} >= {"KVM_EXIT_IO", "KVM_EXIT_MMIO"}
    assert trace.irqs and trace.dmas

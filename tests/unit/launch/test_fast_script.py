"""The fast run's gdb command file: order and flags that the measurements require."""

from __future__ import annotations

from qtrace.launch.fast.script import AGENT, FastTracepoint, fast_run_script


def test_tracepoints_are_defined_at_vm_start_and_saved_before_exit() -> None:
    script = fast_run_script(
        ["/src/qemu/build/qemu-system-x86_64", "-append", "a b"],
        [FastTracepoint("e1000_mmio_read", 35, True),
         FastTracepoint("memory_region_read_accessor", 249, False)],
        "/tmp/jumppad_near.so",
        "/out/trace.tf",
        400_000_000,
    ).splitlines()
    target = next(line for line in script if line.startswith("target remote"))
    assert f"LD_PRELOAD=/tmp/jumppad_near.so:{AGENT}" in target and "'a b'" in target
    order = [script.index(x) for x in ("break vm_start", "ftrace *e1000_mmio_read+35",
                                       "set circular-trace-buffer off", "tstart", "break exit",
                                       "tstop", "tsave /out/trace.tf")]
    assert order == sorted(order)
    raw = [line for line in script if line.startswith("collect *(")]
    assert len(raw) == 1 and script.count("collect $regs") == 2

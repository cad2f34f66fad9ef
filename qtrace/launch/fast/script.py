"""The gdb command file of a fast run: QEMU under gdbserver with the agent, tracepoints at
``vm_start``, the buffer saved before QEMU exits. A pure builder, tested for its commands.

Why each step (measured, ENVIRONMENT.md and this package's commits): tracepoints defined at
``main`` fail, at ``vm_start`` they install; the agent is preloaded after the jump-pad shim
(``gdbscripts/fast/jumppad_near.c``); the buffer lives in QEMU's memory, so it is saved at a
breakpoint on ``exit`` (the probe ends through isa-debug-exit, which calls ``exit``), with
``circular-trace-buffer off`` so a full buffer stops tracing instead of overwriting;
``sysroot /`` keeps gdb from copying every library through the remote protocol.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["AGENT", "FastTracepoint", "fast_run_script"]

AGENT = "/usr/lib/libinproctrace.so"
RAW_STACK_BYTES = 3584
"""The raw block collected at ``$rsp``: enough for the TCG frame (0x4c0) and the chain down
to ``start_thread`` on the probe's stacks (20 frames under TCG, 14 under KVM)."""


@dataclass(frozen=True)
class FastTracepoint:
    """One fast tracepoint: ``*FUNC+OFFSET`` and whether it takes the raw stack block."""

    function: str
    offset: int
    raw_stack: bool

    def location(self) -> str:
        return f"*{self.function}+{self.offset}"


def fast_run_script(
    qemu_argv: Sequence[str],
    tracepoints: Sequence[FastTracepoint],
    shim: str,
    trace_file: str,
    buffer_bytes: int,
) -> str:
    """The command file gdb runs with ``-batch -x``."""
    preload = f"LD_PRELOAD={shim}:{AGENT}"
    lines = [
        "set pagination off",
        "set confirm off",
        "set height 0",
        "set sysroot /",
        *(f"handle {sig} nostop noprint pass" for sig in ("SIGUSR1", "SIGUSR2", "SIGPIPE")),
        f"target remote | gdbserver --wrapper env {preload} -- - {shlex.join(qemu_argv)}",
        "break vm_start",
        "continue",
        "delete",
    ]
    for tp in tracepoints:
        lines += [f"ftrace {tp.location()}", "actions", "collect $regs"]
        if tp.raw_stack:
            lines.append(f"collect *(unsigned char (*)[{RAW_STACK_BYTES}])$rsp")
        lines.append("end")
    lines += [
        f"set trace-buffer-size {buffer_bytes}",
        "set circular-trace-buffer off",
        "tstart",
        "break exit",
        "continue",
        "tstop",
        "tstatus",
        f"tsave {trace_file}",
        "kill",
        "quit",
    ]
    return "\n".join(lines) + "\n"

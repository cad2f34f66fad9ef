"""A fast run: QEMU under gdbserver with the in-process agent, the device's handlers traced
by fast tracepoints, the buffer saved and decoded into ``qtrace-trace/1`` records.

The steps, each through the capture's gdb (MI, :class:`~qtrace.launch.gdb_session.GdbSession`):

1. :meth:`FastRun.start`: build the jump-pad shim in the container, start QEMU under
   ``gdbserver --wrapper env LD_PRELOAD=shim:agent``, let the gdb side (``qtrace setup`` in
   its ``fast`` mode) stop it once at ``vm_start`` and discover the device (``qtrace
   discover``: the header is written, the reply names each handler and its opaques);
2. :meth:`FastRun.trace`: choose each tracepoint's location from this build's disassembly
   (:mod:`.locate`), define them from a command file (``actions`` reads lines, which MI
   cannot send), ``tstart``, and break on ``exit``, where the buffer is still in QEMU;
3. :meth:`FastRun.wait`: QEMU runs without a stop until it calls ``exit``, the timeout, or
   an interrupt;
4. :meth:`FastRun.finish`: ``tstop``, the agent's counts, ``tsave``; decode on the host
   (:mod:`.tsave`, :mod:`.decode`), symbolize each distinct stack once with gdb (``qtrace
   symbolize``), append the records and an ``end`` record carrying the self-checks
   (:mod:`.checks`).

Why each step (measured, ENVIRONMENT.md "GDB fast tracepoints"): tracepoints defined at
``main`` fail, at ``vm_start`` they install; the agent's jump pad must lie within 2 GiB of
the PIE executable (``gdbscripts/fast/jumppad_near.c``, preloaded before the agent); the
buffer lives in QEMU's memory, so it is saved at a breakpoint on ``exit`` (the probe ends
through isa-debug-exit, which calls ``exit``), with ``circular-trace-buffer off`` so a full
buffer stops tracing instead of overwriting; ``sysroot /`` keeps gdb from copying every
library through the remote protocol. Each accessor tracepoint carries a condition on its
MemoryRegion, evaluated by the agent: the accessors serve every device of the machine,
and only the captured device's hits are collected.

What it does not record (the header's ``arming`` says so): configuration space, interrupts,
DMA, work off the vCPU thread, KVM exits. QEMU's own output goes to gdbserver's stderr and
so to ``gdb.log`` (the wrapper must exec QEMU directly for the agent to load).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtrace.docker_env import LabelledContainer
from qtrace.errors import CollectorError, LaunchFailure, UsageError
from qtrace.image.layout import QEMU_SOURCE_ROOT
from qtrace.launch.fast.checks import FALLBACK_HINT, FastChecks
from qtrace.launch.fast.actions import hit_actions, variables
from qtrace.launch.fast.agent_buffer import AgentBuffer, enlarge_agent_buffer
from qtrace.launch.fast.decode import Role, decode_accesses, variable_numbers
from qtrace.launch.fast.locate import (
    ACCESSOR_ARGUMENTS,
    ACCESSORS,
    entry_location,
    parse_disassembly,
    spill_slots,
    value_location,
)
from qtrace.launch.fast.records import RegionOf, fast_records
from qtrace.launch.fast.tsave import Frame as TraceFrame
from qtrace.launch.fast.tsave import TsaveFormatError, parse_frames, parse_tsave
from qtrace.launch.gdb_session import GdbSession, shell_join
from qtrace.launch.interrupts import interrupt_reason
from qtrace.launch.mi import Stop
from qtrace.trace.codec import TraceWriter
from qtrace.trace.kinds import CaptureStatus
from qtrace.trace.schema import End, Frame, Region

__all__ = ["FastPlan", "FastRun", "FastOutcome", "generated_code", "plan_tracepoints"]

AGENT = "/usr/lib/libinproctrace.so"  # gdbserver's in-process agent (Debian's gdbserver)
logger = logging.getLogger(__name__)

SHIM_SOURCE = "fast/jumppad_near.c"  # under the gdbscripts mount
SHIM_IN_CONTAINER = "/tmp/qtrace-jumppad-near.so"
TSAVE_NAME = "fast.tsave"
AGENT_DUMP_NAME = ".fast-agent-buffer"
STACKS_NAME = ".fast-stacks.json"
TRACEPOINTS_NAME = "fast-tracepoints.gdb"
BUFFER_BYTES = 128 << 20
"""The agent's trace buffer (in QEMU's memory): about 36,000 hits at 3.7 KB each (measured).
A full buffer stops tracing (the self-checks say so); saving it through gdb takes about a
second per 1.5 MB here, which bounds it."""
DISCOVERY_TIMEOUT_S = 120.0
TSAVE_TIMEOUT_S = 600.0
_POLL_S = 0.25
_HANDLED_CALLBACKS = ("read", "write")
_TRACEPOINT_NUMBER = re.compile(r"(?:Fast )?[Tt]racepoint (\d+) at")


@dataclass(frozen=True)
class PlannedTracepoint:
    """One tracepoint: its address and what it records."""

    address: int
    role: Role
    where: str  # ``function+offset``, for the command file's comments and errors


@dataclass
class FastPlan:
    """The tracepoints of one run and what the decoder needs to read their frames."""

    tracepoints: list[PlannedTracepoint]
    regions: dict[int, RegionOf]  # MemoryRegion pointer -> the device's region
    numbers: dict[int, Role] = field(default_factory=dict)  # gdb's numbers, once defined


def device_regions(
    region_pointers: dict[str, str], header_regions: Sequence[Region]
) -> dict[int, RegionOf]:
    """The device's regions with handlers, by MemoryRegion pointer (discovery's reply and
    the header's ``regions``).

    Raises:
        UsageError: a region whose ops use ``*_with_attrs`` callbacks, which reach the
            device through other accessors than the ones the fast collector traces.
    """
    by_name = {r.name: r for r in header_regions}
    out: dict[int, RegionOf] = {}
    for pointer, name in region_pointers.items():
        region = by_name.get(name)
        if region is None or region.kind != "io":
            continue
        handlers = dict(region.handlers)
        unsupported = sorted(set(handlers) - set(_HANDLED_CALLBACKS))
        if unsupported:
            raise UsageError(
                f"the device's region {name} uses {', '.join(unsupported)} callbacks "
                f"({', '.join(handlers[k] for k in unsupported)}), which the fast collector "
                "does not trace yet.",
                hint=FALLBACK_HINT.capitalize() + ".",
            )
        out[int(pointer, 16)] = RegionOf(name, region.space, handlers)
    return out


def plan_tracepoints(
    regions: dict[int, RegionOf],
    disassemble: Callable[[str], str],
    arm_on: str | None,
) -> FastPlan:
    """Where each tracepoint goes in this build: the generic accessors' call sites
    (:data:`~.locate.ACCESSORS`) for the ops the device's regions use, and the start
    marker's function; from gdb's ``disassemble /r`` of each (``disassemble``).

    Raises:
        CollectorError: this build's accessors are not shaped as expected (no such call,
            arguments not spilled).
    """
    used = {op for region in regions.values() for op in region.handlers}
    tracepoints: list[PlannedTracepoint] = []
    for site in ACCESSORS:
        if site.op not in used:
            continue
        code = parse_disassembly(disassemble(site.accessor))
        at = value_location(code, site.callee)
        slots = spill_slots(code)
        missing = [r for r in ACCESSOR_ARGUMENTS if r not in slots]
        if at is None or missing:
            raise CollectorError(
                f"{site.accessor} in this build has no 5-byte call of {site.callee}"
                if at is None
                else f"{site.accessor} in this build does not spill {', '.join(missing)}"
            )
        role = Role(site.op, slots, site.value_register, site.shift_register,
                    site.mask_register, at.address)  # fmt: skip
        tracepoints.append(PlannedTracepoint(at.address, role, f"{site.accessor}+{at.offset}"))
    if arm_on is not None:
        at = entry_location(parse_disassembly(disassemble(arm_on)), 0)
        if at is None:
            raise CollectorError(f"no fast tracepoint can go in {arm_on} (the start marker)")
        tracepoints.append(
            PlannedTracepoint(at.address, Role("arm", address=at.address), f"{arm_on}+{at.offset}")
        )
    return FastPlan(tracepoints, regions)


def region_condition(role: Role, regions: Sequence[int]) -> str:
    """The agent-side condition that keeps an accessor's hit only for the device's regions
    (the MemoryRegion in its spill slot is one of ``regions``): the accessors serve every
    device of the machine, and a hit that fails it is neither collected nor stored."""
    slot = role.slots["rdi"]
    mr = f"*(unsigned long *)($rbp - {-slot})" if slot < 0 else f"*(unsigned long *)($rbp + {slot})"
    return " || ".join(f"{mr} == {pointer:#x}" for pointer in sorted(regions))


def tracepoint_commands(plan: FastPlan) -> str:
    """The command file that defines the actions' variables and the plan's tracepoints, in
    order (:mod:`.actions`: what each hit records)."""
    lines = [f"tvariable ${name}" for name in variables()]
    for tp in plan.tracepoints:
        role = tp.role
        lines += [f"# {role.kind} {tp.where}", f"ftrace *{tp.address:#x}"]
        if role.kind in ("read", "write"):
            lines.append(f"condition $bpnum {region_condition(role, list(plan.regions))}")
        lines += [
            "actions",
            *hit_actions(role.kind, dict(role.slots), role.value_register,
                         role.shift_register, role.mask_register),
            "end",
        ]  # fmt: skip
    return "\n".join(lines) + "\n"


def tracepoint_numbers(defined: str) -> list[int]:
    """gdb's numbers of the tracepoints a ``source`` of the command file defined, in order."""
    return [int(n) for n in _TRACEPOINT_NUMBER.findall(defined)]


def mappings(maps: str) -> list[tuple[int, int, str, str]]:
    """``/proc/PID/maps`` as (start, end, permissions, path)."""
    out: list[tuple[int, int, str, str]] = []
    for line in maps.splitlines():
        parts = line.split(None, 5)
        if len(parts) >= 5:
            start, _, end = parts[0].partition("-")
            path = parts[5].strip() if len(parts) > 5 else ""
            out.append((int(start, 16), int(end, 16), parts[1], path))
    return out


def thread_stacks(
    threads: Sequence[dict[str, Any]], maps: str
) -> list[tuple[int, int, str]]:
    """Each thread's stack mapping (start, end, name): the mapping its stack pointer is in."""
    out: list[tuple[int, int, str]] = []
    for start, end, _, _ in mappings(maps):
        names = [str(t["name"]) for t in threads if start <= int(t["sp"]) < end]
        if len(names) == 1:
            out.append((start, end, names[0]))
    return out


def generated_code(maps: str) -> tuple[int, int]:
    """Where TCG's generated code is, from ``/proc/PID/maps`` (``(0, 0)``: none, KVM): an
    executable mapping that is no file's code (QEMU maps its code buffer from a memfd,
    ``/memfd:tcg-jit (deleted)``, or anonymously), the largest one: the agent's jump pad
    is such a mapping too, of a few pages. A return address there takes the unwinder's
    TCG frame rule."""
    anonymous = [
        (start, end)
        for start, end, perms, path in mappings(maps)
        if "x" in perms and (not path or path.startswith("/memfd:"))
    ]
    return max(anonymous, key=lambda r: r[1] - r[0], default=(0, 0))


@dataclass(frozen=True)
class SavedFrames:
    """The frames of a run, the numbers of the actions' variables in them, and how they
    were read."""

    frames: tuple[TraceFrame, ...]
    numbers: dict[str, int]
    how: str


@dataclass
class FastOutcome:
    """What a fast run recorded and how it ended."""

    status: CaptureStatus
    reason: str | None
    accesses: int
    stacks: int
    checks: FastChecks | None
    hint: str | None = None


class FastRun:
    """One fast run's steps; see the module docstring."""

    def __init__(
        self,
        gdb: GdbSession,
        container: LabelledContainer,
        out_dir: Path,
        mount_out: str,
        mount_gdbscripts: str,
        argv: Sequence[str],
        status: Callable[[str], None],
    ) -> None:
        self.gdb = gdb
        self.container = container
        self.out_dir = out_dir
        self.mount_out = mount_out
        self.mount_gdbscripts = mount_gdbscripts
        self.argv = list(argv)
        self.status = status
        self.plan: FastPlan | None = None
        self.generated = (0, 0)  # TCG's code buffer
        self.agent_buffer: AgentBuffer | None = None  # where the agent keeps its frames
        self.started_tracing: float | None = None
        self.traced_s: float | None = None  # QEMU's run under the tracepoints, to its stop

    # ----- 1. QEMU under gdbserver, stopped once for discovery -----

    def start(self) -> dict[str, Any]:
        """Start QEMU under gdbserver and discover the device; the discovery reply."""
        built = self.container.exec(
            ["gcc", "-shared", "-fPIC", "-O2", "-o", SHIM_IN_CONTAINER,
             f"{self.mount_gdbscripts}/{SHIM_SOURCE}", "-ldl"]
        )  # fmt: skip
        if built.exit_code != 0:
            raise LaunchFailure(
                "building the fast collector's jump-pad shim failed", built.exit_code,
                built.output.splitlines()[-10:],
            )  # fmt: skip
        # Asynchronous MI: a remote target takes commands (-exec-interrupt) while it runs.
        self.gdb.command("-gdb-set mi-async on")
        for command in ("set pagination off", "set confirm off", "set height 0",
                        "set sysroot /", "handle SIGUSR1 SIGUSR2 SIGPIPE nostop noprint pass"):
            self.gdb.console(command)  # fmt: skip
        server = (
            f"env -u LD_PRELOAD gdbserver --wrapper env LD_PRELOAD={SHIM_IN_CONTAINER}:{AGENT} "
            f"-- - {shell_join(self.argv)}"
        )
        # The collector's settings are for a local inferior: sourced before the remote
        # target exists, they apply (with it, "disable-randomization" is refused).
        self.gdb.console(f"source {self.mount_gdbscripts}/qtrace_gdb.py")
        self.status("starting QEMU under gdbserver (fast tracepoints)")
        self.gdb.console(f"target remote | {server}", timeout_s=DISCOVERY_TIMEOUT_S)
        # Connecting reports QEMU stopped at its first instruction: that stop is not the
        # one asked for at vm_start.
        while self.gdb.wait_for_stop(0) is not None:
            pass
        if not self.gdb.console(f"qtrace setup {self.mount_out}/collector.json", timeout_s=60):
            raise CollectorError("the collector did not answer 'qtrace setup'")
        self.gdb.command("-exec-continue")
        stop = self.gdb.wait_for_stop(DISCOVERY_TIMEOUT_S)
        if stop is None:
            raise CollectorError(
                f"QEMU did not create its devices within {DISCOVERY_TIMEOUT_S:.0f} s under "
                "gdbserver (no stop at vm_start)"
            )
        if stop.reason.startswith("exited"):
            raise LaunchFailure("QEMU exited before creating its devices (see gdb.log)",
                                stop.exit_code, [])  # fmt: skip
        replies = self.gdb.console("qtrace discover", timeout_s=DISCOVERY_TIMEOUT_S)
        if not replies:
            raise CollectorError("the collector did not answer 'qtrace discover'")
        self.generated = generated_code(self._maps())
        return replies[0]

    def _qemu_pid(self) -> str | None:
        """QEMU's process id in the container, ``None`` when QEMU is gone."""
        pid = self.container.exec(["pgrep", "-x", "-n", "qemu-system-x86"]).output.strip()
        return pid if pid.isdigit() else None

    def _maps(self) -> str:
        """QEMU's ``/proc/PID/maps`` (read in the container; empty when QEMU is gone)."""
        pid = self._qemu_pid()
        return self.container.exec(["cat", f"/proc/{pid}/maps"]).output if pid else ""

    # ----- 2. the tracepoints -----

    def trace(
        self,
        discovery: dict[str, Any],
        header_regions: Sequence[Region],
        arm_on: str | None,
    ) -> None:
        """Define the tracepoints for the discovered regions and start tracing."""

        def disassemble(function: str) -> str:
            return self.gdb.console_text(f"disassemble /r {function}")

        regions = device_regions(dict(discovery.get("region_pointers") or {}), header_regions)
        if not regions:
            raise UsageError(
                "the device has no region with read/write handlers: the fast collector has "
                "nothing to trace.",
                hint=FALLBACK_HINT.capitalize() + ".",
            )
        plan = plan_tracepoints(regions, disassemble, arm_on)
        commands = tracepoint_commands(plan)
        (self.out_dir / TRACEPOINTS_NAME).write_text(commands, encoding="utf-8")
        defined = self.gdb.console_text(f"source {self.mount_out}/{TRACEPOINTS_NAME}")
        numbers = tracepoint_numbers(defined)
        if len(numbers) != len(plan.tracepoints):
            raise CollectorError(
                f"gdb defined {len(numbers)} of {len(plan.tracepoints)} fast tracepoints: "
                + " | ".join(defined.strip().splitlines()[-3:])
            )
        plan.numbers = {n: tp.role for n, tp in zip(numbers, plan.tracepoints, strict=True)}
        self.plan = plan
        self.gdb.console(f"set trace-buffer-size {BUFFER_BYTES}")
        self.gdb.console("set circular-trace-buffer off")
        # The agent's own buffer (5 MiB) loses a frame each time it fills: larger than
        # gdbserver's, it never does (.agent_buffer).
        self.agent_buffer = enlarge_agent_buffer(self.gdb.console_text, BUFFER_BYTES)
        started = self.gdb.console_text("tstart")
        if "error" in started.lower() or "too far" in started:
            raise CollectorError(f"tstart failed: {started.strip()}")
        self.gdb.console("break exit")
        self.status(f"tracing with {len(numbers)} fast tracepoints (QEMU is not stopped)")
        self.started_tracing = time.monotonic()
        self.gdb.command("-exec-continue")

    # ----- 3. running -----

    def wait(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> Stop | None:
        """QEMU's next stop (its ``exit`` call, a signal), or ``None`` after ``timeout_s``
        (QEMU is interrupted then)."""
        deadline = clock() + timeout_s
        try:
            while clock() < deadline:
                stop = self.gdb.wait_for_stop(_POLL_S)
                if stop is not None:
                    return stop
            self.interrupt()
            return None
        finally:
            if self.started_tracing is not None:
                self.traced_s = time.monotonic() - self.started_tracing

    def interrupt(self) -> None:
        """Stop QEMU (timeout, Ctrl-C) so that the buffer can be saved."""
        self.gdb.interrupt()
        self.gdb.wait_for_stop(10)

    def exit_status(self) -> int | None:
        """The status QEMU passes to ``exit`` (at the ``exit`` stop: its first argument)."""
        records = self.gdb.command("-data-evaluate-expression $rdi")
        for record in records:
            if record.get("type") != "result":
                continue
            value = (record.get("payload") or {}).get("value")
            if value is not None:
                return int(str(value), 0) & 0xFF
        return None

    # ----- 4. saving and decoding -----

    def finish(self, status: CaptureStatus, reason: str | None, trace_path: Path,
               elapsed: Callable[[], float]) -> FastOutcome:  # fmt: skip
        """Save the buffer, decode it, append the records and the ``end`` record.

        The buffer is what the capture keeps, and saving it can take a while, so it runs
        on a worker thread: an interrupt (Ctrl-C, or a signal the CLI delivers as one) while
        it runs is noted and the save goes on (the end record then says ``interrupted``);
        a second one abandons it (the host closes the trace). Raises the first interrupt
        once the end record is written."""
        asked: list[KeyboardInterrupt] = []
        done: list[FastOutcome | BaseException] = []

        def save() -> None:
            try:
                done.append(self._finish(status, reason, trace_path, elapsed, asked))
            except BaseException as exc:  # handed to the waiting thread
                done.append(exc)

        worker = threading.Thread(target=save, name="qtrace-fast-save", daemon=True)
        worker.start()
        while worker.is_alive():
            try:
                worker.join(_POLL_S)
            except KeyboardInterrupt as exc:
                if asked:
                    raise
                asked.append(exc)
                self.status("still saving the trace buffer; interrupt again to abandon it")
        result = done[0]
        if isinstance(result, BaseException):
            raise result
        if asked:
            raise asked[0]
        return result

    def _finish(self, status: CaptureStatus, reason: str | None, trace_path: Path,
                elapsed: Callable[[], float],
                asked: list[KeyboardInterrupt]) -> FastOutcome:  # fmt: skip
        assert self.plan is not None
        plan = self.plan
        self.gdb.console("tstop")
        threads = self.gdb.console("qtrace threads")
        stacks_of = thread_stacks(threads[0].get("threads", []) if threads else [], self._maps())

        def thread_of(sp: int) -> str | None:
            return next((name for start, end, name in stacks_of if start <= sp < end), None)

        created, full = self._trace_status()
        saved = self._frames(created)
        self.status("decoding the fast tracepoints' frames")
        generated = self.generated

        def in_generated_code(pc: int) -> bool:
            return generated[0] <= pc < generated[1]

        decoded = decode_accesses(
            saved.frames, plan.numbers, set(plan.regions), saved.numbers, in_generated_code
        )
        stacks = sorted({a.pcs for a in decoded.accesses}, key=str)
        frames = self._symbolize(stacks)
        records = list(
            fast_records(decoded.accesses, plan.regions, frames.__getitem__, thread_of)
        )
        accesses = sum(1 for r in records if r.type == "access")
        stack_count = sum(1 for r in records if r.type == "stack")
        checks = FastChecks(
            hits_by_agent=created,
            frames_saved=len(saved.frames),
            frames_decoded=sum(1 for f in saved.frames if not f.zeroed and f.undecodable is None),
            zeroed=sum(1 for f in saved.frames if f.zeroed),
            undecodable=sum(1 for f in saved.frames if f.undecodable is not None),
            buffer_full=full,
            without_values=decoded.frames_without_values,
            other_regions=decoded.other_devices,
        )
        hint = None
        if asked and status is CaptureStatus.OK:
            status = CaptureStatus.INTERRUPTED
            reason = (
                f"{interrupt_reason(asked[0])} while the trace buffer was saved; the guest "
                "had finished and everything traced is kept"
            )
        if status is CaptureStatus.OK and not checks.ok:
            status = CaptureStatus.ERROR
            reason = "the fast collector lost hits: " + "; ".join(checks.problems())
            hint = FALLBACK_HINT.capitalize() + "."
        # Beside the checks: how long QEMU ran traced, and how the frames were read.
        fast_checks = {**checks.record(), "traced_s": self._traced_s(), "read": saved.how}
        with TraceWriter.append_to(trace_path) as writer:
            writer.write_all(records)
            writer.write(
                End(status=status, accesses=accesses, stacks=stack_count,
                    elapsed_s=round(elapsed(), 3), reason=reason, fast_checks=fast_checks)
            )  # fmt: skip
        return FastOutcome(status, reason, accesses, stack_count, checks, hint)

    def _traced_s(self) -> float | None:
        """How long QEMU ran under the tracepoints (``tstart`` to its stop), in seconds."""
        return None if self.traced_s is None else round(self.traced_s, 3)

    def _trace_status(self) -> tuple[int, bool]:
        """The frames the agent created and whether its buffer filled (``-trace-status``)."""
        for record in self.gdb.command("-trace-status"):
            payload = record.get("payload") if record.get("type") == "result" else None
            if isinstance(payload, dict):
                full = payload.get("stop-reason") == "overflow"
                return int(payload.get("frames-created", 0)), full
        return 0, False

    def _frames(self, created: int) -> SavedFrames:
        """The agent's frames: read straight from its buffer in QEMU's memory (about a
        second), or, when that read does not give as many frames as the agent created,
        through gdb's ``tsave`` (about a second per 1.5 MB, measured). Once gdbserver has
        taken the agent's frames (its buffer filled), the agent's buffer starts again from
        its beginning: a full run reads fewer frames there and goes through ``tsave``
        (measured: 1 frame read of 36,812 created)."""
        direct = self._read_agent_buffer()
        if direct is not None and len(direct) == created:
            numbers = {n: i for i, n in enumerate(["trace_timestamp", *variables()], start=1)}
            return SavedFrames(direct, numbers, "read from the agent's buffer in QEMU")
        self.status("saving the trace buffer through gdb (tsave)")
        tsave = self.out_dir / TSAVE_NAME
        self.gdb.console(f"tsave {self.mount_out}/{TSAVE_NAME}", timeout_s=TSAVE_TIMEOUT_S)
        data = parse_tsave(tsave.read_bytes())
        return SavedFrames(data.frames, variable_numbers(data.header), "saved by gdb's tsave")

    def _read_agent_buffer(self) -> tuple[TraceFrame, ...] | None:
        """The agent's own buffer (:mod:`.agent_buffer`) copied out of QEMU's memory with
        ``dd`` in the container, parsed as frames; ``None`` when it cannot be read. After
        ``tstop`` the agent's frames are still there, in order from its start: gdbserver
        copies them into its own buffer, it does not move them."""
        buffer = self.agent_buffer
        pid = self._qemu_pid()
        if buffer is None or pid is None:
            return None
        dump = self.out_dir / AGENT_DUMP_NAME
        result = self.container.exec(
            ["dd", f"if=/proc/{pid}/mem", f"of={self.mount_out}/{AGENT_DUMP_NAME}", "bs=4M",
             "iflag=skip_bytes,count_bytes", f"skip={buffer.address}", f"count={buffer.size}"]
        )  # fmt: skip
        try:
            if result.exit_code != 0:
                logger.debug("reading the agent's buffer failed: %s", result.output[-300:])
                return None
            return parse_frames(dump.read_bytes())
        except (OSError, TsaveFormatError) as exc:
            logger.debug("the agent's buffer did not parse: %s", exc)
            return None
        finally:
            dump.unlink(missing_ok=True)

    def _symbolize(self, stacks: list[tuple[int, ...]]) -> dict[tuple[int, ...], tuple[Frame, ...]]:
        """Each distinct stack's frames, by gdb, in one command."""
        if not stacks:
            return {}
        path = self.out_dir / STACKS_NAME
        path.write_text(json.dumps([list(s) for s in stacks]), encoding="utf-8")
        replies = self.gdb.console(
            f"qtrace symbolize {self.mount_out}/{STACKS_NAME} {shlex.quote(QEMU_SOURCE_ROOT)}",
            timeout_s=120,
        )
        path.unlink(missing_ok=True)
        answered = replies[0].get("stacks") if replies else None
        if not isinstance(answered, list) or len(answered) != len(stacks):
            raise CollectorError("the collector did not answer 'qtrace symbolize'")
        return {
            pcs: tuple(Frame(f["func"], f.get("file"), f.get("line"), f.get("pc")) for f in frames)
            for pcs, frames in zip(stacks, answered, strict=True)
        }

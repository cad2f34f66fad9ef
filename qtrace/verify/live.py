"""``qtrace verify DEVICE --live``: differential testing of a model against QEMU via qtest.

Why: a replayed trace only covers what one guest happened to do. Here the test is the
guest: it drives the reference machine and a real QEMU (``-accel qtest``) with the same
steps, and after every step compares the value read, the device's interrupt line (QEMU:
the input its pack's ``[model.qtest] gsi`` names, intercepted with ``irq_intercept_in``)
and the guest RAM the device writes by DMA.

Two parts:

* the fixed scenarios of the device's support (in its pack),
  one machine reset before each;
* random sequences from the support's generator, one machine reset (QMP ``system_reset``)
  and a fresh model before each. Sequence ``i`` of seed ``s`` is made from
  ``random.Random(f"{s}:{i}")`` (seed 0 by default), so a run is the same on every machine
  and in every process. The first divergence is shrunk (:class:`_Shrinker`: runs of steps
  deleted, bits of written values cleared) and that counterexample is reported, with the
  bit coverage of the sequences run (:mod:`qtrace.verify.coverage`).

A pack may still give a hypothesis strategy instead (``DeviceSupport.sequences``); hypothesis
is then imported when random sequences run (it ships with the ``test`` extra).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from qtrace.errors import EnvironmentProblem, Unimplemented
from qtrace.refemu import PciDevice
from qtrace.verify.coverage import BitCoverage, CoverageReport
from qtrace.verify.netdev import check_wire, drain_frames
from qtrace.verify.steps import (
    DEFAULT_BARS,
    ModelSide,
    RegisterNames,
    Scenario,
    Side,
    Step,
    apply,
    bar_placement,
    setup_steps,
    sync_read,
)
from qtrace.verify.support import VerifyDevice

__all__ = [
    "Divergence",
    "LiveResult",
    "QemuMachine",
    "ScenarioResult",
    "run_live",
    "run_steps",
]

logger = logging.getLogger(__name__)

NicFactory = Callable[[], PciDevice]


class QemuMachine(Protocol):
    """What the runner needs from the QEMU side: a side to drive and a machine reset."""

    @property
    def side(self) -> Side: ...

    def system_reset(self) -> None: ...


@dataclass(frozen=True)
class Divergence:
    """The first point where QEMU and the model disagreed.

    Attributes:
        index: Index of the step in its sequence.
        step: The step, as text.
        what: ``read``, ``irq`` or ``dma``.
        register: Register read (for ``read``), ``INTx`` or ``ram[ADDR]``.
        qemu: QEMU's value (read value, line level, or the first differing byte).
        model: The model's value.
    """

    index: int
    step: str
    what: str
    register: str
    qemu: int
    model: int

    def __str__(self) -> str:
        return (
            f"step {self.index} `{self.step}`: {self.what} {self.register}: "
            f"QEMU {self.qemu:#x}, model {self.model:#x}"
        )


@dataclass
class Counts:
    """What one run of steps compared."""

    steps: int = 0
    reads_compared: int = 0
    irq_checks: int = 0
    irq_deferred: int = 0
    dma_bytes_compared: int = 0
    unimplemented: int = 0
    frames: int = 0  # frames the network backend sent (``net`` steps)

    def add(self, other: Counts) -> None:
        self.steps += other.steps
        self.reads_compared += other.reads_compared
        self.irq_checks += other.irq_checks
        self.irq_deferred += other.irq_deferred
        self.dma_bytes_compared += other.dma_bytes_compared
        self.unimplemented += other.unimplemented
        self.frames += other.frames


@dataclass
class ScenarioResult:
    """One fixed scenario's counts and divergence, if any."""

    name: str
    counts: Counts
    divergence: Divergence | None = None


@dataclass
class LiveResult:
    """The outcome of a live differential run.

    ``failing_sequence`` is the index of the random sequence that diverged (rerun it with
    the same seed), ``shrink_runs`` how many runs shrinking it took.
    """

    scenarios: list[ScenarioResult] = field(default_factory=list)
    sequences_run: int = 0
    sequence_counts: Counts = field(default_factory=Counts)
    counterexample: list[str] = field(default_factory=list)
    counterexample_divergence: Divergence | None = None
    seed: int | None = None
    elapsed_s: float = 0.0
    coverage: CoverageReport | None = None
    failing_sequence: int | None = None
    shrink_runs: int = 0

    @property
    def divergences(self) -> list[Divergence]:
        found = [s.divergence for s in self.scenarios if s.divergence is not None]
        if self.counterexample_divergence is not None:
            found.append(self.counterexample_divergence)
        return found

    @property
    def ok(self) -> bool:
        return not self.divergences

    @property
    def reads_compared(self) -> int:
        return self.sequence_counts.reads_compared + sum(
            s.counts.reads_compared for s in self.scenarios
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(replace(self, coverage=None))
        out["ok"] = self.ok
        out["reads_compared"] = self.reads_compared
        out["coverage"] = None if self.coverage is None else self.coverage.to_dict()
        return out


def run_steps(
    qemu: Side,
    model: Side,
    steps: Sequence[Step],
    watch: Sequence[tuple[int, int]] = (),
    names: RegisterNames | None = None,
    coverage: BitCoverage | None = None,
) -> tuple[Counts, Divergence | None]:
    """Run ``steps`` on both sides, comparing reads, the line and watched RAM after each.

    ``names`` (the model) names BAR registers in divergences; ``coverage`` is told of every
    register write both sides took and every read that agreed. A step followed by a sync
    step starts work QEMU finishes asynchronously: the line and watched RAM are compared
    after the last sync step, once QEMU has caught up. Watched RAM is ``watch`` and what
    the model wrote by DMA in the step; all the RAM the steps planted is compared once
    more after the last. With a network backend (a NIC) the frames are compared too: QEMU
    must have read what the model says it read (:func:`qtrace.verify.netdev.check_wire`)
    and transmitted what the model transmitted."""
    counts = Counts()
    for index, step in enumerate(steps):
        text = step.describe(names)
        counts.steps += 1
        counts.frames += step.space == "net"
        try:
            got, expected = _run_step(qemu, model, step)
        except (Unimplemented, ValueError):
            counts.unimplemented += 1
            continue
        wire = check_wire(qemu, model)
        if wire is not None:
            return counts, Divergence(index, text, *wire)
        if step.op != "write":
            counts.reads_compared += 1
            if got != expected:
                return counts, Divergence(
                    index, text, "read", step.register(names), got or 0, expected or 0
                )
            if coverage is not None:
                coverage.read(step.space, step.offset, step.size, step.bar)
        elif coverage is not None and step.space not in ("ram", "clock"):
            coverage.write(step.space, step.offset, step.size, step.value, step.bar)
        if index + 1 < len(steps) and steps[index + 1].op == "sync":
            continue  # QEMU is still at work: compared after the sync steps
        counts.irq_checks += 1
        if model.irq_level and not qemu.irq_level:
            # QEMU moderates interrupts (a raise soon after the previous one waits for a
            # timer); the model is untimed, so compare after that delay has passed (the
            # model's clock passes it too, for the timers it has).
            qemu.let_interrupt_delay_pass()
            delay_ns = getattr(qemu, "interrupt_delay_ns", 0)
            if delay_ns:
                model.clock_step(delay_ns)
            counts.irq_deferred += 1
            wire = check_wire(qemu, model)
            if wire is not None:
                return counts, Divergence(index, text, *wire)
        if qemu.irq_level != model.irq_level:
            return counts, Divergence(
                index, text, "irq", "INTx", int(qemu.irq_level), int(model.irq_level)
            )
        if (step.op == "write" and step.space != "ram") or step.op == "sync":
            written: list[tuple[int, int]] = getattr(model, "take_dma_written", list)()
            found = _ram_divergence(qemu, model, [*watch, *written], counts)
            if found is not None:
                return counts, Divergence(index, text, "dma", *found)
    planted = [(s.offset, len(s.data)) for s in steps if s.space == "ram" and s.op == "write"]
    found = _ram_divergence(qemu, model, planted, counts)
    if found is not None and steps:
        return counts, Divergence(len(steps) - 1, "(after the last step)", "dma", *found)
    return counts, None


def _ram_divergence(
    qemu: Side, model: Side, ranges: Sequence[tuple[int, int]], counts: Counts
) -> tuple[str, int, int] | None:
    """The first byte of ``ranges`` where the two RAMs differ: (where, QEMU's, the model's)."""
    for addr, length in ranges:
        ours, theirs = model.ram_read(addr, length), qemu.ram_read(addr, length)
        counts.dma_bytes_compared += length
        if ours != theirs:
            at = next(i for i in range(length) if ours[i] != theirs[i])
            return f"ram[{addr + at:#x}]", theirs[at], ours[at]
    return None


def _run_step(qemu: Side, model: Side, step: Step) -> tuple[int | None, int | None]:
    """(QEMU's value, the model's) of one step; a sync step reads the model first."""
    if step.op == "sync":
        read = sync_read(step)
        expected = model.sync(read, None)
        return qemu.sync(read, expected), expected
    if step.op == "adopt":
        adopted = apply(qemu, sync_read(step)) or 0
        model.adopt(step, adopted)
        return adopted, adopted
    got = apply(qemu, step)
    return got, apply(model, step)


class _Runner:
    def __init__(self, qemu: QemuMachine, device: VerifyDevice, make_nic: NicFactory) -> None:
        self.qemu = qemu
        self.device = device
        if device.qtest is None:
            raise EnvironmentProblem(f"the {device.name} pack has no [model.qtest] setup")
        self.slot, self.gsi = device.qtest.slot, device.qtest.gsi
        self.bars = dict(device.qtest.bars) or DEFAULT_BARS
        self.make_nic = self._learn_layout(make_nic)

    def _learn_layout(self, make_nic: NicFactory) -> NicFactory:
        """A model that takes its structures' layout from the device (``from_config_space``:
        a virtio-pci model reads its capabilities, as a driver does) is built from QEMU's
        configuration space, read once; other models as they are."""
        learn: Callable[[bytes], PciDevice] | None = getattr(make_nic, "from_config_space", None)
        if learn is None:
            return make_nic
        side = self.qemu.side
        config = b"".join(
            (apply(side, Step("read", "config", offset, 4)) or 0).to_bytes(4, "little")
            for offset in range(0, 256, 4)
        )
        return lambda: learn(config)

    def fresh(self) -> ModelSide:
        """Reset QEMU, build a new model, program both like firmware would."""
        self.qemu.system_reset()
        model = ModelSide(self.make_nic(), self.slot, self.bars)
        qemu = self.qemu.side
        placement = bar_placement([bar for bar, _ in model.nic.pci.bars], self.bars)
        # Not compared step by step: after a reset QEMU's ISA IRQ can keep the level it
        # had before (PIIX's PIRQ routing is reset to "disabled" first), until the routing
        # register is written again, which the setup does.
        for step in setup_steps(self.gsi, placement) + self.device.support.setup_steps():
            _run_step(qemu, model, step)
        drain_frames(qemu)  # frames an earlier run left waiting in QEMU's network layer
        model.take_dma_written()
        if qemu.irq_level != model.irq_level:
            raise EnvironmentProblem(
                f"after PCI setup the {self.device.name} line is {qemu.irq_level} in QEMU, "
                f"{model.irq_level} in the model"
            )
        return model

    def scenario(self, scenario: Scenario) -> ScenarioResult:
        model = self.fresh()
        counts, divergence = run_steps(
            self.qemu.side, model, scenario.steps, scenario.watch, model.nic
        )
        return ScenarioResult(scenario.name, counts, divergence)

    def sequence(
        self, steps: Sequence[Step], coverage: BitCoverage | None = None
    ) -> tuple[Counts, Divergence | None]:
        model = self.fresh()
        found = run_steps(
            self.qemu.side, model, steps, self.device.support.sequence_watch, model.nic, coverage
        )
        if coverage is not None:
            coverage.end_sequence()
        return found


def run_live(
    qemu: QemuMachine,
    device: VerifyDevice,
    sequences: int = 2000,
    seed: int | None = None,
    make_nic: NicFactory | None = None,
    scenarios: Sequence[Scenario] | None = None,
    progress: Callable[[str], None] | None = None,
) -> LiveResult:
    """Run the fixed scenarios, then ``sequences`` random sequences.

    Args:
        qemu: The QEMU side (a :class:`~qtrace.verify.qemu_qtest.QemuQtest` adapter).
        device: The device's verify view (:func:`~qtrace.verify.support.verify_device`).
        sequences: How many random sequences to run (0: none).
        seed: Which sequences (``None``: seed 0; the same sequences every time).
        make_nic: Builds the model (default: the pack's model; tests pass a deliberately
            broken subclass).
        scenarios: The fixed scenarios to run (default: the device's).
        progress: Told the name of each phase as it starts.

    Returns:
        Counts and, on divergence, the first divergence per scenario and the shrunk
        random counterexample.
    """
    started = time.perf_counter()
    runner = _Runner(qemu, device, make_nic or device.model)
    result = LiveResult(seed=seed)
    for scenario in device.support.scenarios if scenarios is None else scenarios:
        if progress is not None:
            progress(f"scenario: {scenario.name}")
        result.scenarios.append(runner.scenario(scenario))
    if sequences > 0:
        if progress is not None:
            progress(f"{sequences} random sequences")
        _random_sequences(runner, result, sequences, seed)
    result.elapsed_s = time.perf_counter() - started
    return result


# -- random sequences --------------------------------------------------------------------


def _random_sequences(runner: _Runner, result: LiveResult, count: int, seed: int | None) -> None:
    support = runner.device.support
    if support.generate is None:
        if support.sequences is None:
            raise EnvironmentProblem(
                f"the {runner.device.name} pack defines no random sequences",
                hint="Run with --sequences 0.",
            )
        _hypothesis_sequences(runner, result, count, seed)
        return
    coverage = BitCoverage(support.coverage) if support.coverage is not None else None
    result.seed = 0 if seed is None else seed
    for index in range(count):
        steps = support.generate(random.Random(f"{result.seed}:{index}"))
        counts, divergence = runner.sequence(steps, coverage)
        result.sequences_run += 1
        result.sequence_counts.add(counts)
        if divergence is not None:
            result.failing_sequence = index
            shrinker = _Shrinker(runner, support.sequence_valid)
            steps, divergence = shrinker.shrink(steps, divergence)
            result.shrink_runs = shrinker.runs
            names = runner.make_nic()
            result.counterexample = [s.describe(names) for s in steps]
            result.counterexample_divergence = divergence
            break
    if coverage is not None:
        result.coverage = coverage.report()


def _cut_after(steps: list[Step], index: int) -> list[Step]:
    """``steps`` up to the one at ``index``, and the sync steps right after it: they wait
    for the asynchronous work a step started, so a sequence never ends in the middle of it
    (QEMU would finish that work during the next run's setup)."""
    end = index + 1
    while end < len(steps) and steps[end].op == "sync":
        end += 1
    return steps[:end]


class _Shrinker:
    """Makes a diverging sequence short and its values simple, keeping it diverging.

    Three passes, repeated while one of them helps: cut the steps after the divergence;
    delete runs of steps, halving the run length down to single steps (as delta debugging
    does); clear the bits of written values, all at once and then one by one. ``ram``
    steps (the memory a sequence plants) are never deleted, and when the device says which
    sequences are valid (``sequence_valid``) only valid ones are tried, so a shorter
    sequence never does what the generator deliberately avoids. At most ``max_runs`` runs.
    """

    def __init__(
        self,
        runner: _Runner,
        valid: Callable[[Sequence[Step]], bool] | None,
        max_runs: int = 4000,
    ) -> None:
        self.runner = runner
        self.valid = valid
        self.max_runs = max_runs
        self.runs = 0

    def _diverges(self, steps: list[Step]) -> Divergence | None:
        if self.runs >= self.max_runs or (self.valid is not None and not self.valid(steps)):
            return None
        self.runs += 1
        return self.runner.sequence(steps)[1]

    def shrink(self, steps: list[Step], divergence: Divergence) -> tuple[list[Step], Divergence]:
        steps = _cut_after(steps, divergence.index)
        while True:
            before = (len(steps), sum(s.value.bit_count() for s in steps))
            steps, divergence = self._delete_runs(steps, divergence)
            steps, divergence = self._clear_bits(steps, divergence)
            if (len(steps), sum(s.value.bit_count() for s in steps)) == before:
                return steps, divergence

    def _delete_runs(
        self, steps: list[Step], divergence: Divergence
    ) -> tuple[list[Step], Divergence]:
        size = max(1, len(steps) // 2)
        while size >= 1:
            start = len(steps) - size
            while start >= 0:
                run = steps[start : start + size]
                if any(s.space == "ram" for s in run):
                    start -= size
                    continue
                trial = steps[:start] + steps[start + size :]
                found = self._diverges(trial)
                if found is not None:
                    steps, divergence = _cut_after(trial, found.index), found
                    start = min(start, len(steps)) - size
                else:
                    start -= size
            size //= 2
        return steps, divergence

    def _clear_bits(
        self, steps: list[Step], divergence: Divergence
    ) -> tuple[list[Step], Divergence]:
        index = -1
        while index + 1 < len(steps):  # steps may get shorter: a trial can diverge earlier
            index += 1
            step = steps[index]
            if step.op != "write" or step.space == "ram" or not step.value:
                continue
            candidates = [0] + [step.value & ~(1 << bit) for bit in range(31, -1, -1)]
            for value in candidates:
                if value == step.value or value & ~step.value:
                    continue  # only clear bits that are still set
                trial = [*steps[:index], replace(step, value=value), *steps[index + 1 :]]
                found = self._diverges(trial)
                if found is not None:
                    steps, divergence = _cut_after(trial, found.index), found
                    if index >= len(steps):
                        return steps, divergence
                    step = steps[index]
                    if not step.value:
                        break
        return steps, divergence


def _hypothesis_sequences(
    runner: _Runner, result: LiveResult, count: int, seed: int | None
) -> None:
    """Random sequences from a pack's hypothesis strategy (``DeviceSupport.sequences``)."""
    try:
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import seed as hypothesis_seed
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise EnvironmentProblem(
            "this pack's random live sequences need the hypothesis package",
            hint="pip install 'qtrace[test]' (or run with --sequences 0).",
        ) from exc
    strategy = runner.device.support.sequences
    assert strategy is not None
    spec = runner.device.support.coverage
    coverage = BitCoverage(spec) if spec is not None else None

    class _Diverged(Exception):
        def __init__(self, steps: list[Step], divergence: Divergence) -> None:
            super().__init__(str(divergence))
            self.steps = steps
            self.divergence = divergence

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=seed is None,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.generate, Phase.shrink),
        report_multiple_bugs=False,
        print_blob=False,
    )
    @given(strategy())
    def check(steps: list[Step]) -> None:
        counts, divergence = runner.sequence(steps, coverage)
        result.sequences_run += 1
        result.sequence_counts.add(counts)
        if divergence is not None:
            raise _Diverged(steps, divergence)

    test = hypothesis_seed(seed)(check) if seed is not None else check
    try:
        test()
    except _Diverged as exc:
        shrinker = _Shrinker(runner, runner.device.support.sequence_valid)
        steps, divergence = shrinker.shrink(exc.steps, exc.divergence)
        result.shrink_runs = shrinker.runs
        names = runner.make_nic()
        result.counterexample = [s.describe(names) for s in steps]
        result.counterexample_divergence = divergence
    finally:
        if coverage is not None:
            result.coverage = coverage.report()

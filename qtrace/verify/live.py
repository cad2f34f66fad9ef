"""``qtrace verify DEVICE --live``: differential testing of a model against QEMU via qtest.

Why: a replayed trace only covers what one guest happened to do. Here the test is the
guest: it drives the reference machine and a real QEMU (``-accel qtest``) with the same
steps, and after every step compares the value read, the device's interrupt line (QEMU:
the input its pack's ``[model.qtest] gsi`` names, intercepted with ``irq_intercept_in``)
and the guest RAM the device writes by DMA.

Two parts:

* the fixed scenarios of the device's support (in its pack),
  one machine reset before each;
* random sequences drawn by hypothesis from the support's strategy, one machine reset
  (QMP ``system_reset``) and a fresh model before each. On a divergence hypothesis
  shrinks the sequence and the
  smallest one that still diverges is reported. Runs are reproducible: ``seed`` picks
  hypothesis's seed; without one, hypothesis runs derandomized.

hypothesis is imported only when random sequences run (it ships with the ``test`` extra).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from qtrace.errors import EnvironmentProblem, Unimplemented
from qtrace.refemu import PciDevice
from qtrace.verify.steps import ModelSide, RegisterNames, Scenario, Side, Step, apply, setup_steps
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

    def add(self, other: Counts) -> None:
        self.steps += other.steps
        self.reads_compared += other.reads_compared
        self.irq_checks += other.irq_checks
        self.irq_deferred += other.irq_deferred
        self.dma_bytes_compared += other.dma_bytes_compared
        self.unimplemented += other.unimplemented


@dataclass
class ScenarioResult:
    """One fixed scenario's counts and divergence, if any."""

    name: str
    counts: Counts
    divergence: Divergence | None = None


@dataclass
class LiveResult:
    """The outcome of a live differential run."""

    scenarios: list[ScenarioResult] = field(default_factory=list)
    sequences_run: int = 0
    sequence_counts: Counts = field(default_factory=Counts)
    counterexample: list[str] = field(default_factory=list)
    counterexample_divergence: Divergence | None = None
    seed: int | None = None
    elapsed_s: float = 0.0

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
        out = asdict(self)
        out["ok"] = self.ok
        out["reads_compared"] = self.reads_compared
        return out


def run_steps(
    qemu: Side,
    model: Side,
    steps: Sequence[Step],
    watch: Sequence[tuple[int, int]] = (),
    names: RegisterNames | None = None,
) -> tuple[Counts, Divergence | None]:
    """Run ``steps`` on both sides, comparing reads, the line and watched RAM after each.

    ``names`` (the model) names BAR registers in divergences."""
    counts = Counts()
    for index, step in enumerate(steps):
        text = step.describe(names)
        counts.steps += 1
        got = apply(qemu, step)
        try:
            expected = apply(model, step)
        except (Unimplemented, ValueError):
            counts.unimplemented += 1
            continue
        if step.op == "read" and step.space != "ram":
            counts.reads_compared += 1
            if got != expected:
                return counts, Divergence(
                    index, text, "read", step.register(names), got or 0, expected or 0
                )
        counts.irq_checks += 1
        if model.irq_level and not qemu.irq_level:
            # QEMU moderates interrupts (a raise soon after the previous one waits for a
            # timer); the model is untimed, so compare after that delay has passed.
            qemu.let_interrupt_delay_pass()
            counts.irq_deferred += 1
        if qemu.irq_level != model.irq_level:
            return counts, Divergence(
                index, text, "irq", "INTx", int(qemu.irq_level), int(model.irq_level)
            )
        if step.op == "write" and step.space != "ram":
            for addr, length in watch:
                ours, theirs = model.ram_read(addr, length), qemu.ram_read(addr, length)
                counts.dma_bytes_compared += length
                if ours != theirs:
                    at = next(i for i in range(length) if ours[i] != theirs[i])
                    return counts, Divergence(
                        index, text, "dma", f"ram[{addr + at:#x}]", theirs[at], ours[at]
                    )
    return counts, None


class _Runner:
    def __init__(self, qemu: QemuMachine, device: VerifyDevice, make_nic: NicFactory) -> None:
        self.qemu = qemu
        self.device = device
        self.make_nic = make_nic
        if device.qtest is None:
            raise EnvironmentProblem(f"the {device.name} pack has no [model.qtest] setup")
        self.slot, self.gsi = device.qtest.slot, device.qtest.gsi

    def fresh(self) -> ModelSide:
        """Reset QEMU, build a new model, program both like firmware would."""
        self.qemu.system_reset()
        model = ModelSide(self.make_nic(), self.slot)
        qemu = self.qemu.side
        # Not compared step by step: after a reset QEMU's ISA IRQ can keep the level it
        # had before (PIIX's PIRQ routing is reset to "disabled" first), until the routing
        # register is written again, which the setup does.
        for step in setup_steps(self.gsi) + self.device.support.setup_steps():
            apply(qemu, step)
            apply(model, step)
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

    def sequence(self, steps: Sequence[Step]) -> tuple[Counts, Divergence | None]:
        model = self.fresh()
        return run_steps(
            self.qemu.side, model, steps, self.device.support.sequence_watch, model.nic
        )


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
        sequences: How many random sequences hypothesis generates (0: none).
        seed: hypothesis seed; ``None`` runs derandomized (the same sequences every time).
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
    try:
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import seed as hypothesis_seed
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise EnvironmentProblem(
            "random live sequences need the hypothesis package",
            hint="pip install 'qtrace[test]' (or run with --sequences 0).",
        ) from exc
    if runner.device.support.sequences is None:
        raise EnvironmentProblem(
            f"the {runner.device.name} pack defines no random sequences",
            hint="Run with --sequences 0.",
        )
    sequence = runner.device.support.sequences

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
    @given(sequence())
    def check(steps: list[Step]) -> None:
        counts, divergence = runner.sequence(steps)
        result.sequences_run += 1
        result.sequence_counts.add(counts)
        if divergence is not None:
            raise _Diverged(steps, divergence)

    test = hypothesis_seed(seed)(check) if seed is not None else check
    try:
        test()
    except _Diverged as exc:
        steps, divergence = _drop_needless_steps(
            runner, exc.steps[: exc.divergence.index + 1], exc.divergence
        )
        names = runner.make_nic()
        result.counterexample = [s.describe(names) for s in steps]
        result.counterexample_divergence = divergence


def _drop_needless_steps(
    runner: _Runner, steps: list[Step], divergence: Divergence
) -> tuple[list[Step], Divergence]:
    """Finish hypothesis's shrinking: drop each step whose removal keeps a divergence.

    hypothesis shrinks element values well but often keeps no-op steps; one greedy pass
    of deletions (a few dozen runs) leaves only the steps the divergence needs.
    """
    index = len(steps) - 1
    while index >= 1:  # step 0 plants the ring
        trial = steps[:index] + steps[index + 1 :]
        _, found = runner.sequence(trial)
        if found is not None:
            steps, divergence = trial[: found.index + 1], found
            index = min(index, len(steps)) - 1
        else:
            index -= 1
    return steps, divergence

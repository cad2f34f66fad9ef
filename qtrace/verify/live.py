"""``qtrace verify e1000 --live``: differential testing of the model against QEMU via qtest.

Why: a replayed trace only covers what one guest happened to do. Here the test is the
guest: it drives the reference machine and a real QEMU (``-accel qtest``) with the same
steps, and after every step compares the value read, the e1000's interrupt line (QEMU:
I/O APIC input :data:`~qtrace.verify.steps.E1000_GSI`, intercepted with
``irq_intercept_in ioapic``) and the guest RAM the device writes by DMA.

Two parts:

* the fixed scenarios of :mod:`qtrace.verify.scenarios`, one machine reset before each;
* random sequences drawn by hypothesis over the registers in :data:`RANDOM_REGISTERS`
  (where the model claims full support), one machine reset (QMP ``system_reset``) and a
  fresh model before each. On a divergence hypothesis shrinks the sequence and the
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
from qtrace.refemu import E1000
from qtrace.verify.scenarios import (
    BUF_BASE,
    DESC_BYTES,
    RING_BASE,
    RING_DESCRIPTORS,
    SCENARIOS,
    Scenario,
    tx_descriptor,
)
from qtrace.verify.steps import ModelSide, Side, Step, apply, setup_steps

__all__ = [
    "RANDOM_REGISTERS",
    "Divergence",
    "LiveResult",
    "QemuMachine",
    "ScenarioResult",
    "run_live",
    "run_steps",
]

logger = logging.getLogger(__name__)

NicFactory = Callable[[], E1000]


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
    qemu: Side, model: Side, steps: Sequence[Step], watch: Sequence[tuple[int, int]] = ()
) -> tuple[Counts, Divergence | None]:
    """Run ``steps`` on both sides, comparing reads, the line and watched RAM after each."""
    counts = Counts()
    for index, step in enumerate(steps):
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
                    index, str(step), "read", step.register, got or 0, expected or 0
                )
        counts.irq_checks += 1
        if model.irq_level and not qemu.irq_level:
            # QEMU moderates interrupts (a raise soon after the previous one waits for a
            # timer); the model is untimed, so compare after that delay has passed.
            qemu.let_interrupt_delay_pass()
            counts.irq_deferred += 1
        if qemu.irq_level != model.irq_level:
            return counts, Divergence(
                index, str(step), "irq", "INTx", int(qemu.irq_level), int(model.irq_level)
            )
        if step.op == "write" and step.space != "ram":
            for addr, length in watch:
                ours, theirs = model.ram_read(addr, length), qemu.ram_read(addr, length)
                counts.dma_bytes_compared += length
                if ours != theirs:
                    at = next(i for i in range(length) if ours[i] != theirs[i])
                    return counts, Divergence(
                        index, str(step), "dma", f"ram[{addr + at:#x}]", theirs[at], ours[at]
                    )
    return counts, None


class _Runner:
    def __init__(self, qemu: QemuMachine, make_nic: NicFactory) -> None:
        self.qemu = qemu
        self.make_nic = make_nic

    def fresh(self) -> ModelSide:
        """Reset QEMU, build a new model, program both like firmware would."""
        self.qemu.system_reset()
        model = ModelSide(self.make_nic())
        qemu = self.qemu.side
        # Not compared step by step: after a reset QEMU's ISA IRQ 10 can keep the level it
        # had before (PIIX's PIRQ routing is reset to "disabled" first), until the routing
        # register is written again, which the setup does.
        for step in setup_steps():
            apply(qemu, step)
            apply(model, step)
        if qemu.irq_level != model.irq_level:
            raise EnvironmentProblem(
                f"after PCI setup the e1000 line is {qemu.irq_level} in QEMU, "
                f"{model.irq_level} in the model"
            )
        return model

    def scenario(self, scenario: Scenario) -> ScenarioResult:
        model = self.fresh()
        counts, divergence = run_steps(self.qemu.side, model, scenario.steps, scenario.watch)
        return ScenarioResult(scenario.name, counts, divergence)

    def sequence(self, steps: Sequence[Step]) -> tuple[Counts, Divergence | None]:
        model = self.fresh()
        return run_steps(
            self.qemu.side, model, steps, ((RING_BASE, RING_DESCRIPTORS * DESC_BYTES),)
        )


def run_live(
    qemu: QemuMachine,
    sequences: int = 2000,
    seed: int | None = None,
    make_nic: NicFactory = E1000,
    scenarios: Sequence[Scenario] = SCENARIOS,
    progress: Callable[[str], None] | None = None,
) -> LiveResult:
    """Run the fixed scenarios, then ``sequences`` random sequences.

    Args:
        qemu: The QEMU side (a :class:`~qtrace.verify.qemu_qtest.QemuQtest` adapter).
        sequences: How many random sequences hypothesis generates (0: none).
        seed: hypothesis seed; ``None`` runs derandomized (the same sequences every time).
        make_nic: Builds the model's e1000 (tests pass a deliberately broken subclass).
        scenarios: The fixed scenarios to run.
        progress: Told the name of each phase as it starts.

    Returns:
        Counts and, on divergence, the first divergence per scenario and the shrunk
        random counterexample.
    """
    started = time.perf_counter()
    runner = _Runner(qemu, make_nic)
    result = LiveResult(seed=seed)
    for scenario in scenarios:
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

# Registers the model claims to implement fully, with the write values worth trying
# beyond random ones. Ring base registers only take the planted ring's address so the
# device never DMAs outside RAM the test controls.
RANDOM_REGISTERS: dict[str, tuple[int, ...]] = {
    "CTRL": (0x0014_0240, 0x0414_0240, 0x8014_0240, 0x0000_0001),
    "STATUS": (),
    # EECD writes keep CS low: the bit-bang protocol is the EECD scenario's job, and QEMU's
    # DO level on a CS rising edge mid-read is not yet understood (docs/refemu.md).
    "EECD": (0x0, 0x40, 0x30, 0x70, 0x1, 0x5, 0x45),
    "EERD": (0x1, 0x101, 0x3F01, 0x4001),
    "CTRL_EXT": (),
    "MDIC": (0x0822_0000, 0x0820_0000, 0x0821_0000, 0x0824_0000, 0x0424_01E1, 0x2822_0000),
    "FCAL": (), "FCAH": (), "FCT": (), "VET": (),
    "ICR": (0xFFFF_FFFF, 0x1, 0x4), "ITR": (),
    "ICS": (0x1, 0x2, 0x4, 0x80, 0x8000_0000),
    "IMS": (0x1, 0x3, 0x4, 0x9D, 0xFFFF_FFFF),
    "IMC": (0x1, 0x4, 0xFFFF_FFFF),
    "RCTL": (), "TCTL": (0x0, 0x2, 0x0004_010A), "TIPG": (), "LEDCTL": (), "PBA": (),
    "RDTR": (), "RXDCTL": (), "RADV": (), "RSRPD": (),
    "TDBAL": (RING_BASE,), "TDBAH": (0,), "TDLEN": (0x80, 0x0), "TDH": (0, 1, 7), "TDT": (0, 1, 3, 7),
    "TIDV": (), "TXDCTL": (), "TADV": (), "RXCSUM": (),
    "MTA[0]": (), "MTA[127]": (), "RAL[0]": (), "RAH[0]": (), "RAL[15]": (), "RAH[15]": (),
    "VFTA[0]": (), "WUC": (), "WUFC": (), "MANC": (),
    "TPT": (), "GPTC": (), "GOTCL": (), "GOTCH": (), "TOTL": (), "TOTH": (), "BPTC": (),
    "MPTC": (), "PTC64": (), "TSCTC": (),
}  # fmt: skip
_FREE_WRITE = {  # registers whose writes may take any value
    name for name, values in RANDOM_REGISTERS.items() if not values or name in ("IMS", "IMC", "ICR")
}
_RING_CMDS = (0x0B, 0x09, 0x03, 0x02, 0x0A, 0x1B, 0x13)
_ACCESS_SIZES = (4, 4, 4, 4, 4, 4, 2, 1)  # mostly dword accesses, as drivers make them
# Interrupt and transmit registers interact with each other, so they are drawn more often.
_WEIGHTS = {"ICR": 8, "ICS": 6, "IMS": 5, "IMC": 4, "TDT": 4, "TCTL": 3, "TDH": 2, "TDLEN": 2}
_DRAW_ORDER = tuple(name for name in sorted(RANDOM_REGISTERS) for _ in range(_WEIGHTS.get(name, 1)))


def _random_sequences(runner: _Runner, result: LiveResult, count: int, seed: int | None) -> None:
    try:
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import seed as hypothesis_seed
        from hypothesis import strategies as st
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise EnvironmentProblem(
            "random live sequences need the hypothesis package",
            hint="pip install 'qtrace[test]' (or run with --sequences 0).",
        ) from exc
    from qtrace.refemu import MAC_REGISTERS

    offsets = {name: MAC_REGISTERS.named(name).offset for name in RANDOM_REGISTERS}

    @st.composite
    def step(draw: Any) -> Step:
        name = draw(st.sampled_from(_DRAW_ORDER))
        offset = offsets[name]
        via_io = draw(st.integers(0, 9)) == 0
        known = RANDOM_REGISTERS[name]
        read = draw(st.booleans())
        if read and via_io:
            return Step("read", "io", 0x04)
        if not read and not (name in _FREE_WRITE or not known):
            # Registers limited to known values (ring bases, MDIC, EECD, ...): whole writes.
            return Step("write", "mmio", offset, 4, draw(st.sampled_from(known)))
        # Narrow (1- and 2-byte) accesses at any naturally aligned byte of the register:
        # QEMU widens them to a 4-byte access at that address (docs/refemu.md).
        size = draw(st.sampled_from(_ACCESS_SIZES))
        at = offset + size * draw(st.integers(0, 4 // size - 1))
        if read:
            return Step("read", "mmio", at, size)
        value = draw(
            st.one_of(st.sampled_from(known or (0, 0xFFFF_FFFF)), st.integers(0, 0xFFFF_FFFF))
        )
        return Step("write", "mmio", at, size, value & ((1 << (8 * size)) - 1))

    @st.composite
    def sequence(draw: Any) -> list[Step]:
        cmds = draw(
            st.lists(
                st.sampled_from(_RING_CMDS), min_size=RING_DESCRIPTORS, max_size=RING_DESCRIPTORS
            )
        )
        ring = b"".join(tx_descriptor(BUF_BASE + 0x40 * i, 60, c) for i, c in enumerate(cmds))
        return [
            Step("write", "ram", RING_BASE, data=ring),
            *draw(st.lists(step(), min_size=3, max_size=40)),
        ]

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
        result.counterexample = [str(s) for s in steps]
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

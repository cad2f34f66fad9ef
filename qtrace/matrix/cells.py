"""The cells of the device matrix (device x machine x QEMU version) and their shards.

A cell is one capture to run. A shard ``K/N`` is a stable partition of the cells: the cells
are sorted by their key and shard K takes every N-th one starting at the K-th, so the same
devices, machines and versions always give the same shards, whatever order they were named
in, and the N shards together hold every cell exactly once. Taking every N-th cell (rather
than consecutive blocks) spreads each device's machines and the slow device families over
the shards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from qtrace.errors import UsageError
from qtrace.trace.kinds import Machine

__all__ = ["Cell", "MachineSpec", "Shard", "parse_machines", "plan_cells"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True, order=True)
class MachineSpec:
    """A machine and, optionally, the topology the device sits in (``q35:root-port``)."""

    machine: str
    topology: str | None = None

    def __str__(self) -> str:
        return self.machine if self.topology is None else f"{self.machine}:{self.topology}"


@dataclass(frozen=True, order=True)
class Cell:
    """One capture of the matrix."""

    device: str
    machine: str
    qemu_version: str
    topology: str | None = None

    @property
    def machine_spec(self) -> MachineSpec:
        return MachineSpec(self.machine, self.topology)

    @property
    def key(self) -> str:
        """``device@machine[:topology]/version``: unique, stable, and usable in file names
        once ``/`` is replaced (see :attr:`slug`)."""
        return f"{self.device}@{self.machine_spec}/{self.qemu_version}"

    @property
    def slug(self) -> str:
        """A directory name for the cell's capture: ``device-machine[-topology]-version``."""
        parts = [self.device, self.machine, *([self.topology] if self.topology else [])]
        return "-".join([*parts, self.qemu_version])


def parse_machines(text: str) -> list[MachineSpec]:
    """``pc,q35,q35:root-port`` -> machine specs (duplicates dropped, order kept).

    Raises:
        UsageError: an empty list, an unknown machine or a malformed topology.
    """
    specs: list[MachineSpec] = []
    known = [m.value for m in Machine]
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        machine, _, topology = item.partition(":")
        if machine not in known:
            raise UsageError(
                f"unknown machine {machine!r} in --machines {text!r}",
                hint=f"Machines: {', '.join(known)} (add :TOPOLOGY, e.g. q35:root-port).",
            )
        if topology and not _NAME.match(topology):
            raise UsageError(f"malformed topology {topology!r} in --machines {text!r}")
        spec = MachineSpec(machine, topology or None)
        if spec not in specs:
            specs.append(spec)
    if not specs:
        raise UsageError(f"--machines {text!r} names no machine", hint="e.g. --machines pc,q35")
    return specs


def plan_cells(
    devices: Iterable[str], machines: Iterable[MachineSpec], versions: Iterable[str]
) -> list[Cell]:
    """Every (device, machine, version) combination, sorted by key, each once."""
    cells = {
        Cell(device, spec.machine, version, spec.topology)
        for device in devices
        for spec in machines
        for version in versions
    }
    return sorted(cells, key=lambda cell: cell.key)


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based, as CI matrices number their jobs)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``K/N`` with 1 <= K <= N.

        Raises:
            UsageError: anything else.
        """
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None or not 1 <= int(match[1]) <= int(match[2]):
            raise UsageError(
                f"--shard {text!r} is not K/N with 1 <= K <= N",
                hint="e.g. --shard 2/4 runs the second of four shards.",
            )
        return cls(int(match[1]), int(match[2]))

    def select(self, cells: Sequence[Cell]) -> list[Cell]:
        """This shard's cells: every ``count``-th cell of the sorted list, from the
        ``index``-th on."""
        ordered = sorted(set(cells), key=lambda cell: cell.key)
        return ordered[self.index - 1 :: self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

"""The host -> gdb contract: what the collector inside gdb is told to watch (``collector.json``).

One typed definition, with every default, on the host; the gdb side
(``gdbscripts/qtrace_gdb/contract.py``, standard library only) checks on load that the file
speaks its protocol and has each key it reads with the right type. A unit test loads both
and checks they agree key for key, so the two cannot drift (a key read by one side and
never written by the other fails it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qtrace.image.layout import QEMU_SOURCE_ROOT

__all__ = [
    "COLLECTOR_PROTOCOL",
    "DEFAULT_DMA_CAP_BYTES",
    "CollectorConfig",
    "ExitCaseSpec",
]

COLLECTOR_PROTOCOL = "qtrace-collector/2"
"""Bumped when a key changes meaning; the gdb side refuses a protocol it does not speak."""

DEFAULT_DMA_CAP_BYTES = 256
"""How many bytes of each DMA transfer a record keeps (the length is always recorded)."""


@dataclass(frozen=True)
class ExitCaseSpec:
    """One ``case KVM_EXIT_*:`` body of ``kvm_cpu_exec``: a ``file:line`` and its labels."""

    location: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class CollectorConfig:
    """Everything the collector needs; :meth:`write` makes ``collector.json`` of it.

    Attributes:
        trace_path: where the collector writes ``trace.jsonl`` (a container path).
        header: the trace's header record, less ``type`` and ``schema`` (the collector adds
            them and the arming facts).
        device_path: the captured device's QOM path (``/machine/peripheral/<qdev id>``):
            the collector finds it there at ``vm_start`` and breaks on the handlers of its
            regions (discovery from the running QEMU, ``gdbscripts/qtrace_gdb/discovery.py``).
        record_pci_config, record_irq, record_dma: whether the device's config accesses
            (and those to the bridges above it), interrupts and DMA are recorded.
        record_async: whether the device's work off the register path is recorded
            (ioeventfds, fd handlers, bottom halves, timers, irqfds: ``async`` records);
            a tuple of those kinds (``"timer"``, ...) records only them.
        exits: the exit cases of ``kvm_cpu_exec`` (KVM captures only).
        arm_on: the function whose first hit arms the collectors (``None``: from QEMU start).
        quiet_ports: ``(base, count)`` port ranges whose exits are counted, not recorded.
        max_hits: stop the capture after this many recorded hits (``None``: no limit).
        dma_cap_bytes: bytes of each DMA transfer kept in its record.
        fast_stacks: key stacks by their frame-pointer chain (gdb's unwinder once per
            distinct stack); ``False`` unwinds every hit with gdb.
        source_root: the QEMU source root in the image.
        collector: ``breakpoint`` (the collectors above, each a gdb breakpoint), or ``fast``:
            the gdb side only discovers the device and writes the header; the host records
            with fast tracepoints (:mod:`qtrace.launch.fast`).
    """

    trace_path: str
    header: dict[str, Any]
    device_path: str
    record_pci_config: bool = True
    record_irq: bool = True
    record_dma: bool = True
    record_async: bool | tuple[str, ...] = True
    exits: tuple[ExitCaseSpec, ...] = ()
    arm_on: str | None = None
    quiet_ports: tuple[tuple[int, int], ...] = ()
    max_hits: int | None = None
    dma_cap_bytes: int = DEFAULT_DMA_CAP_BYTES
    fast_stacks: bool = True
    source_root: str = QEMU_SOURCE_ROOT
    collector: str = "breakpoint"
    protocol: str = field(default=COLLECTOR_PROTOCOL, init=False)

    def as_json(self) -> dict[str, Any]:
        """The JSON object the gdb side reads."""
        data = asdict(self)
        data["exits"] = [{"location": e.location, "labels": list(e.labels)} for e in self.exits]
        data["quiet_ports"] = [list(p) for p in self.quiet_ports]
        return data

    def write(self, path: Path) -> None:
        """Write ``collector.json`` (indented: it is also evidence a person reads)."""
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")

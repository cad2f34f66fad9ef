"""The kernel events of the quiet devices (the serial console), counted instead of kept.

A probe guest prints its progress on COM1: every character is a port write that exits, and
QEMU's serial model lowers its interrupt line on nearly every register access, each a
``KVM_IRQ_LINE`` ioctl. In a KVM probe capture of virtio-blk that made 36,000 of the 36,187
``kvm:`` events (6 MB of ``kernel.jsonl``), none of them about the device. The trace already
counts the exits on those ports without recording them (the guest plan's ``quiet_ports``);
this does the same for the kernel's side:

- a ``kvm_pio`` on a quiet port, with the ``kvm_userspace_exit`` it caused (for a write, the
  exit after it; for a read, the exit before its completion, as
  :func:`~qtrace.trace.kernel_join.kernel_exits` pairs them) and that exit's ``kvm_exit``;
- a ``kvm_set_irq`` of a quiet GSI (the serial console's interrupt line).

What is left out is counted by event name (``kernel_end.quiet``), so a reader can say so.
Pure: events in, events out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from qtrace.trace.kernel import KernelEvent, KernelHeader, KernelLog
from qtrace.trace.kernel_join import kernel_exits

__all__ = ["quiet_events"]


def _on_quiet_port(event: KernelEvent, ports: Sequence[tuple[int, int]]) -> bool:
    if event.event != "kvm_pio":
        return False
    port = event.fields.get("port")
    return isinstance(port, int) and any(base <= port < base + n for base, n in ports)


def _quiet_irq(event: KernelEvent, gsis: Sequence[int]) -> bool:
    return event.event == "kvm_set_irq" and event.fields.get("gsi") in set(gsis)


def quiet_events(
    events: Sequence[KernelEvent],
    ports: Sequence[tuple[int, int]],
    gsis: Sequence[int],
) -> tuple[list[KernelEvent], dict[str, int]]:
    """``events`` without those of the quiet ports and interrupt lines (see the module
    docstring), and how many of each event name were left out."""
    if not ports and not gsis:
        return list(events), {}
    exits, _ = kernel_exits(KernelLog(KernelHeader("recorded"), list(events)))
    # (tid, ts) of each exit whose access lies on a quiet port, and of its hardware exit.
    dropped_at: set[tuple[str, int, float]] = set()
    for kexit in exits:
        seen = kexit.described
        if seen is None or seen.space != "pio":
            continue
        if not any(base <= seen.addr < base + n for base, n in ports):
            continue
        dropped_at.add(("kvm_userspace_exit", kexit.tid, kexit.ts))
        if kexit.hw_exit is not None:
            dropped_at.add((kexit.hw_exit.event, kexit.hw_exit.tid, kexit.hw_exit.ts))
    kept: list[KernelEvent] = []
    quiet: Counter[str] = Counter()
    for event in events:
        if (
            _on_quiet_port(event, ports)
            or _quiet_irq(event, gsis)
            or (event.event, event.tid, event.ts) in dropped_at
        ):
            quiet[event.event] += 1
        else:
            kept.append(event)
    return kept, dict(sorted(quiet.items()))

"""What a replay needs to follow a device beyond BAR 0 and beyond the vCPU thread.

Why apart from :mod:`qtrace.verify.replay`: the replay was written for a device whose
registers are one memory BAR and whose work happens inside the access that asks for it
(the e1000). Two things are needed for the others, and both come from the trace itself:

* :class:`BarRoutes`: an access's ``offset`` is relative to its MemoryRegion, and the
  header's discovered regions say which BAR holds that region and where. A model with
  several structures in several BARs (virtio-pci: common configuration, ISR, notifications
  in BAR 4, the MSI-X table in BAR 1) is given (BAR, offset in the BAR).
* :class:`Notifiers`: a write to an address an ioeventfd is registered for never reaches
  the device's handler (KVM, or QEMU's memory core under TCG, signals the eventfd), so the
  trace has no access for it, only the event loop running that eventfd's handler
  (``fd-handler run``). The guest's write is given back to the model there, as a write of
  the ioeventfd's data to its region and offset (a ``match_data`` ioeventfd says what was
  written; one without says only where: a virtio notification's value is not used). Each
  run counts as one write: QEMU may also run the handler once right after registering it
  (to catch a write made before), which a device with nothing new to take ignores.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from qtrace.trace import Access, Async, Trace
from qtrace.trace.schema import Header

__all__ = ["BarModel", "BarRoutes", "Notifiers"]

_NOTIFY_BYTES = 2  # what a driver writes when an ioeventfd does not say (a virtio queue index)


@runtime_checkable
class BarModel(Protocol):
    """A model that takes accesses by BAR and offset, and names what is there."""

    def bar_read(self, bar: int, offset: int, size: int) -> int: ...

    def bar_write(self, bar: int, offset: int, size: int, value: int) -> None: ...

    def bar_register_name(self, bar: int, offset: int) -> str: ...


class BarRoutes:
    """Region name (and space) -> its BAR and offset in it, from the trace header."""

    def __init__(self, header: Header) -> None:
        self._regions = {
            (region.name, region.space): (region.bar, region.offset)
            for region in header.regions
            if region.bar is not None
        }

    def locate(self, access: Access) -> tuple[int, int] | None:
        """(BAR, offset in it) of a BAR access, or ``None`` (config space, no region map)."""
        if access.region is None or access.space == "pci-config":
            return None
        found = self._regions.get((access.region, access.space))
        if found is None:
            return None
        bar, offset = found
        return bar, offset + access.offset


class Notifiers:
    """The guest writes ioeventfds swallowed, placed where their handler ran."""

    def __init__(self, trace: Trace) -> None:
        live: dict[str, Async] = {}  # notifier -> the ioeventfd that signals it
        handlers: dict[str, str] = {}  # notifier -> the fd handler registered for it
        spaces = {region.name: region.space for region in trace.header.regions}
        writes: list[Access] = []
        for record in trace.records:
            if not isinstance(record, Async) or record.kind not in ("ioeventfd", "fd-handler"):
                continue
            if record.kind == "ioeventfd" and record.notifier is not None:
                if record.op == "add":
                    live.setdefault(record.notifier, record)  # the first one registered
                elif record.op == "del":
                    live.pop(record.notifier, None)
            elif record.op == "register" and record.notifier and record.callback:
                handlers[record.notifier] = record.callback
            elif record.op == "unregister" and record.notifier:
                handlers.pop(record.notifier, None)
            elif record.op == "run":
                added = self._signalled(record, live, handlers)
                if added is not None:
                    writes.append(self._write(record, added, spaces))
        self._writes = writes
        self._seqs = [w.seq for w in writes]

    @staticmethod
    def _signalled(run: Async, live: dict[str, Async], handlers: dict[str, str]) -> Async | None:
        """The ioeventfd whose handler ``run`` is: by its notifier, or by its callback when
        one live notifier alone has it (a run record may name only the function)."""
        if run.notifier is not None:
            return live.get(run.notifier)
        candidates = [n for n, cb in handlers.items() if cb == run.callback and n in live]
        return live[candidates[0]] if len(candidates) == 1 else None

    @staticmethod
    def _write(run: Async, added: Async, spaces: Mapping[str, str]) -> Access:
        region = added.region or ""
        return Access(
            seq=run.seq,
            op="write",
            space="pio" if spaces.get(region) == "pio" else "mmio",
            region=region,
            offset=added.offset or 0,
            size=added.size or _NOTIFY_BYTES,
            value=added.data or 0,
            thread=run.thread,
        )

    def __len__(self) -> int:
        return len(self._writes)

    def between(self, after_seq: int, upto_seq: int) -> Sequence[Access]:
        """The swallowed writes whose handler ran after ``after_seq``, up to ``upto_seq``."""
        start = bisect.bisect_right(self._seqs, after_seq)
        end = bisect.bisect_right(self._seqs, upto_seq)
        return self._writes[start:end]

"""Replay a captured trace against a freshly reset reference model and compare reads.

Why: QEMU's device and the model (in the device's pack) were written from the same
datasheet by different hands; every read the guest made in a capture is a chance to see
them disagree. The model is built from the trace header's ``device_properties`` (MAC
address, option ROM); whether a network backend could deliver frames is whether the
device had a ``netdev``.

Rules of the replay:

* Only ``access`` records are replayed, in order. ``mmio`` offsets are BAR0 offsets
  (``pio``, or an ``mmio`` record whose region ends in ``-io``, go to the I/O BAR), and
  ``pci-config`` offsets are configuration-space offsets. Accesses go straight to the
  device at those offsets, so where the guest mapped the BARs does not matter.
* Writes go into the model. Reads are compared with the value QEMU returned, under the
  device's volatile rules (:mod:`qtrace.verify.volatile`).
* DMA: the ``dma`` reads recorded after an access are what the device fetched while
  handling it (descriptors, frame data). They are loaded into the model's RAM before
  that access is replayed, so the model fetches the same bytes QEMU did.
* Host input: events no access caused may be the host handing the device something (a
  network backend's frame). When the device's replay quirks recognise it
  (``host_input``), they give it to the model (``deliver``) at that point, and its DMA and
  line are compared as an access's are; the receive-related volatile rules then do not
  apply (``replays_host_frames``).
* Mid-life start (the default): captures are armed after firmware has already
  configured the device. The model starts with COMMAND = IO | MEMORY | MASTER, as
  firmware leaves it, and the configuration bytes firmware owns (COMMAND, cache line
  size, latency timer, BARs, interrupt line) are synchronised on their first read: until
  the trace writes such a byte, a read adopts QEMU's value into the model (through the
  normal write path, so read-only bits stay the model's) and then compares. A read whose
  value the model could hold counts as ``synced``; one it could not is a mismatch. Once
  the trace writes a byte (e.g. BAR sizing), reads of it are compared strictly. With
  ``from_reset=True`` nothing is adopted and the model starts at power-on state.
* Registers the model does not implement are counted and listed, never compared.
* Several BARs: a model with structures in several BARs (``bar_read``/``bar_write``, e.g.
  virtio-pci) gets each access at its BAR and offset, from the header's regions
  (:class:`~qtrace.verify.device_work.BarRoutes`); such a model may also be built from the
  header (``from_trace_header``: the layout its regions show).
* Work off the vCPU (:class:`~qtrace.refemu.AsyncDevice`): events no access caused may be
  the device's own thread, timer or bottom half finishing what an access started. The
  model does its pending work there (``settle``, timers included), after the guest's
  ioeventfd writes that QEMU's event loop handled meanwhile
  (:class:`~qtrace.verify.device_work.Notifiers`), and its DMA, messages and line are
  compared with those events. The writes are taken in the order their handlers ran, each
  with RAM as that run's DMA reads found it, and the model finishes its pending work
  between two of them when QEMU's work showed there (a DMA write, a message): under TCG
  the event loop may run a spurious handler call, the guest's kick and the bottom half
  between two guest accesses. A read that differs while the model still has work pending
  is compared again once it is done (QEMU had finished it before the read).
* Messages: MSI and MSI-X messages the device sent (``irq`` records on an ``MSI`` line)
  are compared by address and data with the model's, in order.
* A model may say its DMA reads are not compared (``compare_dma_reads = False``: how often
  a device reads a ring is not specified), and writes of random bytes (an entropy device's)
  are compared by address and length only.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from qtrace.errors import UsageError
from qtrace.refemu import CONFIG_HEADER, AsyncDevice, PciDevice, RefMachine, Unimplemented
from qtrace.refemu.pci import (
    COMMAND_IO,
    COMMAND_MASTER,
    COMMAND_MEMORY,
    DMA_RANDOM_WRITE,
    config_register_name,
)
from qtrace.refemu.regmap import Field, decode_bits
from qtrace.trace import Access, Dma, Irq, Trace, read_trace
from qtrace.verify.device_work import BarModel, BarRoutes, Notifiers
from qtrace.verify.events import attribute
from qtrace.verify.result import (
    EventMismatch,
    Mismatch,
    PriorAccess,
    UnimplementedUse,
    VerifyResult,
)
from qtrace.verify.support import VerifyDevice, verify_device
from qtrace.verify.volatile import explain, rules_for

__all__ = ["FIRMWARE_CONFIG_BYTES", "ReplayObserver", "replay", "verify_file"]

FIRMWARE_CONFIG_BYTES = frozenset({0x04, 0x05, 0x0C, 0x0D, 0x3C, *range(0x10, 0x28)})
HISTORY_DEPTH = 4
_INTX = "INTx"
_REPLAY_SLOT = 2  # where the model sits; accesses go to the device directly, so any slot


class ReplayObserver(Protocol):
    """Watches a replay access by access (``--explain``: :mod:`qtrace.verify.explain`)."""

    def attach(self, model: PciDevice, routes: BarRoutes) -> None:
        """The replay's model, built and configured, before the first access; ``routes``
        say which BAR and offset each access's region is (a model with several BARs)."""
        ...

    def begin(self, access: Access) -> None:
        """``access`` is about to be replayed."""
        ...

    def end(self, access: Access, model_value: int | None) -> None:
        """``access`` and the comparisons after it are done; ``model_value``: the model's
        answer to a read (``None`` for a write or a read the model could not take)."""
        ...

    def unimplemented(self, access: Access, reason: str) -> None:
        """The model does not implement what ``access`` touched."""
        ...

    def begin_events(self, events: list[Irq | Dma]) -> None:
        """Events no access caused (QEMU's timers, the host backend) are next."""
        ...

    def end_events(self, events: list[Irq | Dma], replayed: bool) -> None:
        """Those events are done; ``replayed``: the device's quirks gave the model what the
        host delivered in them (a received frame) and the model did its part."""
        ...


@dataclass(frozen=True)
class _Target:
    """Where one access goes and how to name and decode it."""

    key: tuple[str, int]  # (space, dword offset) for history and unimplemented counts
    name: str
    rule_name: str | None  # register name the volatile rules know, if any
    fields: tuple[Field, ...]


def verify_file(
    path: Path | str,
    device: str,
    *,
    from_reset: bool = False,
    observer: ReplayObserver | None = None,
) -> VerifyResult:
    """Read the trace at ``path`` and replay it against ``device``'s model; see :func:`replay`.

    Raises:
        TraceFormatError: The file is not a valid trace.
        UsageError: ``device`` has no model, or the trace is of a device the model is not for.
    """
    target = verify_device(device)
    trace = read_trace(path)
    if trace.header.device not in target.qom_types:
        raise UsageError(
            f"the trace is of {trace.header.device!r}, not of a device the {target.name} "
            f"model covers ({', '.join(target.qom_types)})",
            hint=f"Capture with `-device {target.name}`, or verify a trace of that device.",
        )
    return replay(trace, target, from_reset=from_reset, observer=observer)


def replay(
    trace: Trace,
    device: VerifyDevice,
    *,
    from_reset: bool = False,
    observer: ReplayObserver | None = None,
) -> VerifyResult:
    """Replay ``trace``'s accesses against a new model of ``device`` and compare every read.

    Args:
        trace: A trace of a device ``device``'s pack covers.
        device: The device's verify view (:func:`~qtrace.verify.support.verify_device`).
        from_reset: The capture started at power-on: no firmware preamble, no adoption.
        observer: Told of every access (begin, end) and of asynchronous events.

    Returns:
        Counts, mismatches and unimplemented registers.
    """
    return _Replayer(trace, device, from_reset, observer).run()


def _render_dma(op: str, addr: int, size: int, data_hex: str) -> str:
    text = f"{op} {addr:#x}+{size}"
    if op == "write":
        text += " " + (data_hex[:32] + "..." if len(data_hex) > 32 else data_hex)
    return text


def _has_network_backend(properties: dict[str, str] | None) -> bool:
    """Whether the captured device could receive frames: it had a ``netdev``.

    Properties that are not known (a synthetic trace without argv) are taken to allow
    it (the lenient choice)."""
    return properties is None or "netdev" in properties


class _Replayer:
    def __init__(
        self,
        trace: Trace,
        device: VerifyDevice,
        from_reset: bool,
        observer: ReplayObserver | None = None,
    ) -> None:
        self.trace = trace
        self.from_reset = from_reset
        self.volatile = device.support.volatile
        self.machine = RefMachine()
        properties = trace.header.device_properties
        name = f"00:{_REPLAY_SLOT:02x}.0"
        from_header = getattr(device.model, "from_trace_header", None)
        self.nic: PciDevice = self.machine.plug(
            _REPLAY_SLOT,
            from_header(trace.header, name)
            if from_header is not None
            else device.model.from_properties(properties, name),
        )
        self.routes = BarRoutes(trace.header)
        self._located: dict[tuple[str, int, str | None], tuple[int, int] | None] = {}
        self.by_bar = self.nic if isinstance(self.nic, BarModel) else None
        self.timed = self.nic if isinstance(self.nic, AsyncDevice) else None
        self.notifiers = Notifiers(trace)
        self.compare_dma_reads = bool(getattr(self.nic, "compare_dma_reads", True))
        self.model_msi: list[tuple[int, int]] = []
        self.nic.pci.msi_listeners.append(
            lambda address, data: self.model_msi.append((address, data))
        )
        self._after_seq = 0  # the last access replayed (where asynchronous work is placed)
        if not from_reset:
            self.nic.pci.config_write(0x04, 2, COMMAND_IO | COMMAND_MEMORY | COMMAND_MASTER)
        self.host_frames = _has_network_backend(properties)
        make_quirks = device.support.replay_quirks
        self.quirks = (
            None if make_quirks is None else make_quirks(trace, self.nic, self.host_frames)
        )
        if getattr(self.quirks, "replays_host_frames", False):
            self.host_frames = False  # every frame the host delivered is replayed
        self._intx_seqs: list[int] = []
        self._intx_events: list[tuple[int, int, bool]] = []
        self.config_written: set[int] = set()
        self.history: dict[tuple[str, int], deque[PriorAccess]] = {}
        self.unimplemented: dict[tuple[str, int], UnimplementedUse] = {}
        self.result = VerifyResult(device=trace.header.device)
        # Events are compared only when the capture recorded them.
        arming = trace.header.arming
        self.result.dma_recorded = "dma" in arming or any(isinstance(r, Dma) for r in trace.records)
        irqs = [r for r in trace.records if isinstance(r, Irq) and r.line == _INTX]
        self.result.irq_recorded = "irq" in arming or bool(irqs)
        # Only changes are recorded, so before the first record the line had the other level.
        self.qemu_level = (1 - irqs[0].level) if irqs else 0
        self.irq_apart = False  # an asynchronous change set QEMU's line apart from the model's
        self.model_dma: list[tuple[str, int, bytes]] = []
        self.nic.pci.dma_listeners.append(
            lambda op, addr, data: self.model_dma.append((op, addr, data))
        )
        self.observer = observer
        self.read_value: int | None = None  # the model's answer to the latest read
        self._targets: dict[tuple[str, int, int, str | None], _Target] = {}
        if observer is not None:
            observer.attach(self.nic, self.routes)

    def run(self) -> VerifyResult:
        steps = list(attribute(self.trace))
        find_input = getattr(self.quirks, "host_input", None)
        inputs = {
            id(step): found
            for step in steps
            if step.access is None
            and find_input is not None
            and (found := find_input(step.events)) is not None
        }
        # Every INTx change QEMU made, in order, and whether an access (or a replayed host
        # input) caused it (False: a timer), to recognise interrupts QEMU delayed
        # (interrupt mitigation).
        intx = sorted(
            (event.seq, event.level, step.access is None and id(step) not in inputs)
            for step in steps
            for event in step.events
            if isinstance(event, Irq) and event.line == _INTX
        )
        self._intx_seqs = [seq for seq, _, _ in intx]
        self._intx_events = intx
        for step in steps:
            self._preload(step.events)
            if step.access is not None:
                self._after_seq = step.access.seq
            if step.access is None:
                if self.observer is not None:
                    self.observer.begin_events(step.events)
                host_input = inputs.get(id(step))
                if host_input is None:
                    self._asynchronous(step.events)
                else:
                    self._host_input(step.events, host_input)
                if self.observer is not None:
                    self.observer.end_events(step.events, host_input is not None)
                continue
            self.model_dma.clear()
            self.model_msi.clear()
            if self.observer is not None:
                self.observer.begin(step.access)
            self._replay(step.access)
            target = self._target(step.access)
            if self.result.dma_recorded:
                self._compare_dma(step.access.seq, target.name, step.events)
            else:
                self.result.dma_unrecorded += sum(1 for m in self.model_dma if m[0] == "read")
            self._compare_msi(step.access.seq, target.name, step.events)
            if self.result.irq_recorded:
                self._compare_irq(step.access.seq, target.name, step.events, step.access)
            if self.observer is not None:
                self.observer.end(step.access, self.read_value)
        self.result.unimplemented = sorted(
            self.unimplemented.values(), key=lambda u: (u.space, u.offset)
        )
        self.result.unmodelled_features.update(self.nic.unimplemented_features)
        return self.result

    # -- events: DMA and the interrupt line ---------------------------------------------------

    def _preload(self, events: list[Irq | Dma]) -> None:
        """Put what QEMU's DMA reads returned into the model's RAM before the access runs."""
        # A truncated record carries only the first bytes; the rest stays unknown to the
        # model (it reads whatever its RAM holds there).
        for event in self._restore_reads(events):
            self.result.dma_preloaded += 1
            self.result.dma_truncated += int(event.truncated)

    def _restore_reads(self, events: list[Irq | Dma]) -> list[Dma]:
        """Put what QEMU's DMA reads among ``events`` returned into the model's RAM, in
        order; the reads loaded. Also used within a step: ``_preload`` loaded the whole
        step's, so a location read twice holds its last value until it is restored."""
        loaded = [e for e in events if isinstance(e, Dma) and e.op == "read" and e.data]
        for event in loaded:
            self.machine.memory.write(event.addr, bytes.fromhex(event.data or ""))
        return loaded

    def _asynchronous(self, events: list[Irq | Dma]) -> None:
        """Events no access caused: QEMU's timers, the host backend."""
        if self._device_work(events):
            return
        for event in events:
            if isinstance(event, Irq):
                if event.line == _INTX:
                    self.qemu_level = event.level
                    self.result.irq_async += 1
            else:
                self.result.dma_async += 1
        if self.qemu_level != int(self.nic.irq_level):
            self.irq_apart = True

    def _device_work(self, events: list[Irq | Dma]) -> bool:
        """The model's own asynchronous work, where QEMU's shows in the trace (see the
        module docstring); False when the model had none to do here."""
        if self.timed is None or not events:
            return False
        self.model_dma.clear()
        self.model_msi.clear()
        notified = self.notifiers.between(self._after_seq, events[-1].seq)
        ends = [write.seq for write in notified[1:]] + [events[-1].seq + 1]
        for write, end in zip(notified, ends, strict=False):  # no writes: nothing to end
            # Each handler run takes the guest's write as RAM was when it ran, and QEMU's
            # device work that shows before the next run (a bottom half's DMA writes, a
            # message) was done before that run: the model does the same, in that order.
            during = [e for e in events if write.seq < e.seq < end]
            self._restore_reads(during)
            self._write(write)
            if any(not (isinstance(e, Dma) and e.op == "read") for e in during):
                self.timed.settle(timers=True)
        if not self.timed.settle(timers=True) and not notified:
            return False
        self.result.async_work_replayed += 1
        seq, name = events[0].seq, "work off the vCPU"
        if self.result.dma_recorded:
            self._compare_dma(seq, name, events)
        self._compare_msi(seq, name, events)
        if self.result.irq_recorded:
            self._compare_irq(seq, name, events, None)
        return True

    def _compare_msi(self, seq: int, name: str, events: list[Irq | Dma]) -> None:
        """The MSI/MSI-X messages sent, in order (a masked MSI-X vector sends none)."""
        if not events and not self.model_msi:
            return
        qemu = [
            (e.address, e.data)
            for e in events
            if isinstance(e, Irq) and e.line.startswith("MSI") and not e.masked
        ]
        if not qemu and not self.model_msi:
            return
        self.result.msi_compared += len(qemu)
        if qemu != self.model_msi:

            def show(messages: list[tuple[int | None, int | None]]) -> str:
                return (
                    "; ".join(
                        f"{a:#x} <- {d:#x}" for a, d in messages if a is not None and d is not None
                    )
                    or "none"
                )

            self.result.event_mismatches.append(
                EventMismatch(seq, "msi", name, show(list(qemu)), show(list(self.model_msi)))
            )

    def _host_input(self, events: list[Irq | Dma], host_input: object) -> None:
        """What the host delivered (a frame) goes to the model, compared like an access."""
        self.model_dma.clear()
        self.result.host_inputs_replayed += getattr(host_input, "count", 1)
        getattr(self.quirks, "deliver")(host_input)
        seq, name = events[0].seq, str(host_input)
        if self.result.dma_recorded:
            self._compare_dma(seq, name, events)
        if self.result.irq_recorded:
            self._compare_irq(seq, name, events, None)

    def _compare_dma(self, seq: int, name: str, events: list[Irq | Dma]) -> None:
        if not events and not self.model_dma:  # most accesses: nothing to compare
            return
        qemu = [e for e in events if isinstance(e, Dma)]
        model = self.model_dma
        if not self.compare_dma_reads:
            qemu = [e for e in qemu if e.op != "read"]
            model = [m for m in model if m[0] != "read"]
        same = len(qemu) == len(model)
        for q, (op, addr, data) in zip(qemu, model, strict=False):
            if op == DMA_RANDOM_WRITE:  # random bytes: where and how many, not what
                same = same and q.op == "write" and q.addr == addr and q.size == len(data)
            elif q.op != op or q.addr != addr or q.size != len(data):
                same = False
            elif op == "write":
                known = bytes.fromhex(q.data or "")
                if data[: len(known)] != known:
                    same = False
        if same:
            for op, _addr, data in model:
                if op == "read":
                    self.result.dma_reads_compared += 1
                else:
                    self.result.dma_writes_compared += 1
                    self.result.dma_bytes_compared += len(data)
            return
        self.result.event_mismatches.append(
            EventMismatch(
                seq,
                "dma",
                name,
                "; ".join(_render_dma(e.op, e.addr, e.size, e.data or "") for e in qemu) or "none",
                "; ".join(_render_dma(op, a, len(d), d.hex()) for op, a, d in model) or "none",
            )
        )

    def _compare_irq(
        self, seq: int, name: str, events: list[Irq | Dma], access: Access | None
    ) -> None:
        for event in events:
            if isinstance(event, Irq) and event.line == _INTX:
                self.qemu_level = event.level
        model = int(self.nic.irq_level)
        if (
            self.qemu_level == 1
            and model == 0
            and access is not None
            and self._timer_cause_explains(access)
        ):
            model = int(self.nic.irq_level)
        if self.qemu_level == 0 and model == 1 and self._qemu_delays_the_raise(seq):
            self.irq_apart = True  # compared again once the delayed raise has happened
            self.result.irq_unsynced += 1
            return
        if self.irq_apart:
            if self.qemu_level != model:
                self.result.irq_unsynced += 1
                return
            self.irq_apart = False  # together again: compared from here on
        self.result.irq_compared += 1
        if self.qemu_level != model:
            self.result.event_mismatches.append(
                EventMismatch(seq, "irq", name, str(self.qemu_level), str(model))
            )
            self.irq_apart = True  # reported once, compared again when the lines agree

    def _qemu_delays_the_raise(self, seq: int) -> bool:
        """The model raised the line in this access, QEMU did not: did QEMU delay it?

        A device may moderate interrupts: a cause that comes soon after the previous
        interrupt raises the line later, from a timer on the main loop. The trace shows it
        as the next INTx change being an asynchronous rise. The model has no timers, so such
        a raise is counted as not compared (``irq_unsynced``), never hidden.
        """
        index = bisect.bisect_right(self._intx_seqs, seq)
        if index >= len(self._intx_events):
            return False
        _seq, level, asynchronous = self._intx_events[index]
        return level == 1 and asynchronous

    def _timer_cause_explains(self, access: Access) -> bool:
        """QEMU's line rose but the model's did not: does the device's replay quirk (e.g.
        a cause set by a QEMU timer the trace does not record) explain it? If so the quirk
        has brought the model along, and the change counts as asynchronous."""
        if self.quirks is None or not self.quirks.explains_raised_line(access):
            return False
        if not self.irq_apart:  # a recorded timer event was already counted as asynchronous
            self.result.irq_async += 1
        return True

    # -- one access ------------------------------------------------------------------------

    def _replay(self, access: Access) -> None:
        self.result.accesses_replayed += 1
        self.read_value = None
        target = self._target(access)
        try:
            if access.op == "write":
                self.result.writes += 1
                self._write(access)
            else:
                self._compare(access, target)
        except Unimplemented as exc:
            self._note_unimplemented(access, target, exc.reason)
        except ValueError as exc:  # an access shape the model cannot take (e.g. 8 bytes)
            self._note_unimplemented(access, target, str(exc))
        finally:
            prior = self.history.setdefault(target.key, deque(maxlen=HISTORY_DEPTH))
            prior.append(PriorAccess(access.seq, access.op, access.size, access.value))

    def _target(self, access: Access) -> _Target:
        """Where ``access`` goes and how it is named (memoised: names never change)."""
        key = (access.space, access.offset, access.size, access.region)
        found = self._targets.get(key)
        if found is None:
            found = self._targets[key] = self._new_target(access)
        return found

    def _new_target(self, access: Access) -> _Target:
        dword = access.offset & ~3
        located = self._bar_of(access)
        if located is not None:
            bar, offset = located
            name = self.by_bar.bar_register_name(bar, offset) if self.by_bar else f"bar{bar}"
            return _Target((f"bar{bar}", offset & ~3), name, name, ())
        if access.space == "pci-config":
            reg = CONFIG_HEADER.at(dword)
            name = config_register_name(access.offset, access.size)
            return _Target(("pci-config", dword), name, None, reg.fields if reg else ())
        if self._is_io_bar(access):
            # QEMU 10.2.2 does not forward IODATA to BAR0 (observed): the I/O BAR's
            # registers are named as themselves.
            return _Target(("pio", dword), self.nic.io_registers.name_at(dword), None, ())
        reg = self.nic.mmio_registers.at(dword)
        name = self.nic.mmio_registers.name_at(dword)
        return _Target(("mmio", dword), name, name, reg.fields if reg else ())

    def _bar_of(self, access: Access) -> tuple[int, int] | None:
        """(BAR, offset) for a model that takes accesses by BAR (:class:`BarModel`)."""
        if self.by_bar is None:
            return None
        key = (access.space, access.offset, access.region)
        if key not in self._located:
            self._located[key] = self.routes.locate(access)
        return self._located[key]

    @staticmethod
    def _is_io_bar(access: Access) -> bool:  # the I/O BAR's region is named "<device>-io"
        return access.space == "pio" or (access.region or "").endswith("-io")

    def _write(self, access: Access) -> None:
        located = self._bar_of(access)
        if located is not None and self.by_bar is not None:
            self.by_bar.bar_write(*located, access.size, access.value)
        elif access.space == "pci-config":
            self.config_written.update(range(access.offset, access.offset + access.size))
            self.nic.pci.config_write(access.offset, access.size, access.value)
        elif self._is_io_bar(access):
            self.nic.io_write(access.offset, access.size, access.value)
        else:
            self.nic.mmio_write(access.offset, access.size, access.value)

    def _read(self, access: Access) -> int:
        located = self._bar_of(access)
        if located is not None and self.by_bar is not None:
            value = self.by_bar.bar_read(*located, access.size)
        elif access.space == "pci-config":
            value = self.nic.pci.config_read(access.offset, access.size)
        elif self._is_io_bar(access):
            value = self.nic.io_read(access.offset, access.size)
        else:
            value = self.nic.mmio_read(access.offset, access.size)
        self.read_value = value
        return value

    def _compare(self, access: Access, target: _Target) -> None:
        adopted = access.space == "pci-config" and not self.from_reset and self._adopt(access)
        if adopted and self._read(access) == access.value:
            self.result.synced += 1
            return
        model = self._read(access)
        shift = 8 * (access.offset & 3)
        rules = (
            rules_for(
                self.volatile, target.rule_name, access.value << shift, host_frames=self.host_frames
            )
            if target.rule_name
            else ()
        )
        self.result.reads_compared += 1
        if model != access.value and self.timed is not None and self.timed.settle():
            # The model still had work pending that QEMU had finished before this read.
            self.result.async_work_replayed += 1
            model = self._read(access)
        if model == access.value:
            self.result.matches += 1
            return
        explained = explain(rules, access.value, model, shift)
        if explained:
            self.result.matches += 1
            self.result.masked += 1
            for rule in explained:
                self.result.rules_applied[f"{rule.register}: {rule.reason}"] += 1
        else:
            self.result.mismatches.append(
                Mismatch(
                    seq=access.seq,
                    space=access.space,
                    offset=access.offset,
                    size=access.size,
                    register=target.name,
                    expected=access.value,
                    actual=model,
                    fields=tuple(decode_bits(target.fields, access.value << shift, model << shift)),
                    previous=tuple(self.history.get(target.key, ())),
                    rule="; ".join(r.reason for r in rules) or None,
                )
            )

    def _adopt(self, access: Access) -> bool:
        """Copy QEMU's firmware-owned config bytes into the model; True if any were."""
        adopted = False
        for i in range(access.size):
            pos = access.offset + i
            if pos in FIRMWARE_CONFIG_BYTES and pos not in self.config_written:
                self.nic.pci.config_write(pos, 1, (access.value >> (8 * i)) & 0xFF)
                self.config_written.add(pos)
                adopted = True
        return adopted

    def _note_unimplemented(self, access: Access, target: _Target, reason: str) -> None:
        if self.observer is not None:
            self.observer.unimplemented(access, reason)
        use = self.unimplemented.get(target.key)
        if use is None:
            use = UnimplementedUse(target.key[0], target.key[1], target.name, reason)
            self.unimplemented[target.key] = use
        if access.op == "read":
            use.reads += 1
        else:
            use.writes += 1

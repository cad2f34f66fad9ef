"""``qtrace verify DEVICE --trace FILE --explain``: the model's account of every access.

Why: "agree" says the model and QEMU read the datasheet the same way; a reader learning the
device wants to know *why* a read returned its value and what a write did. The account
comes from the model's own state changes: :class:`Explainer` watches the replay
(:class:`~qtrace.verify.replay.ReplayObserver`), switches the model's provenance on
(:class:`~qtrace.refemu.provenance.Explainable`) and, after each access, reads back what
changed and who last set each bit. Nothing is looked up in a table of explanations; the
register map only names registers and fields.

For a read: which bits the read computed and why (the model says so as it computes them),
then, for the stored bits, which earlier access (or reset) set or cleared each flag and
wrote each field; counters say how many increments they hold. For a write: what was
stored, then everything the access did, in order: registers changed, DMA, descriptors,
frames, interrupt causes, the line, each under what the model was doing at the time.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeGuard

from qtrace.devices import pci_config_map, register_map
from qtrace.errors import UsageError
from qtrace.refemu import CONFIG_HEADER, PciDevice
from qtrace.refemu.pci import config_register_name
from qtrace.refemu.provenance import (
    RESET,
    Change,
    Explainable,
    LocatesState,
    Origin,
    Provenance,
    Stamped,
    Tally,
)
from qtrace.refemu.regmap import Kind, Reg
from qtrace.trace import Access, Dma, Irq
from qtrace.verify.device_work import BarModel, BarRoutes
from qtrace.verify.explain_text import (
    COUNTER_KINDS,
    bit_units,
    change_text,
    effect_lines,
    value_lines,
)
from qtrace.verify.result import VerifyResult
from qtrace.verify.support import VerifyDevice
from qtrace.verify.volatile import explain, rules_for

__all__ = ["AccessExplanation", "Explainer"]

_CONFIG = "pci-config"
_CAPABILITIES_FROM = 0x40  # the header ends here; capabilities follow (PCI 3.0, 6.7)
_MASK32 = 0xFFFF_FFFF
_AT_RESET = (0, RESET)
_KIND_READS = {
    Kind.WO: "reads 0: write-only",
    Kind.ZERO: "reads 0, writes are dropped",
}
_IGNORED = {Kind.RO: "read-only", Kind.ZERO: "not stored"}


@dataclass(frozen=True)
class AccessExplanation:
    """The model's account of one access (or of events no access caused: ``kind`` event).

    Attributes:
        seq: The access's (or first event's) ``seq`` in the trace.
        kind: ``access`` or ``event``.
        op: ``read`` or ``write`` (``event``: ``irq`` or ``dma``).
        space: ``mmio``, ``pio`` or ``pci-config``.
        offset: As recorded.
        size: In bytes.
        register: The register's name.
        desc: What the register is (the register map's description).
        qemu_value: The value QEMU read or the guest wrote.
        model_value: The model's answer to a read.
        value: Why the value read is what it is; for a write, what was stored.
        effects: What else the access did, in order.
    """

    seq: int
    kind: str
    op: str
    space: str
    offset: int
    size: int
    register: str
    desc: str
    qemu_value: int
    model_value: int | None
    value: tuple[str, ...]
    effects: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The account as text: a head line, then the value's reasons and the effects."""
        if self.kind == "event":
            head = f"seq {self.seq}  {self.register}"
        else:
            what = f" ({self.desc})" if self.desc else ""
            head = (
                f"seq {self.seq}  {self.space} {self.op} {self.register}{what} "
                f"= {self.qemu_value:#x}"
            )
        does = [
            f"    {'does: ' if i == 0 else '      '}{line}" for i, line in enumerate(self.effects)
        ]
        return [head, *(f"    {line}" for line in self.value), *does]


@dataclass(frozen=True)
class _Where:
    """Where an access's state is kept, and its name.

    ``shift``: the access's bit ``b`` is the state's bit ``b + shift`` (a byte of a dword:
    8 per byte; the high half of a 64-bit value: 32). ``computed``: the model's reason when
    the read computes its value. ``bar``: the access went to the model by BAR and offset.
    """

    space: str
    offset: int
    shift: int
    name: str
    computed: str = ""
    bar: bool = False


@dataclass(frozen=True)
class _Before:
    """A register as it was before a read (a read may clear it)."""

    value: int
    origins: dict[int, Stamped]
    tally: Tally


class Explainer:
    """A :class:`~qtrace.verify.replay.ReplayObserver` that explains every access.

    Args:
        device: The device's verify view (its pack's register map names the registers,
            its volatile rules say why QEMU may read other bits).

    Attributes:
        explanations: One per access and per run of events no access caused, in order.
    """

    def __init__(self, device: VerifyDevice, only: Collection[int] | None = None) -> None:
        self.device = device.name
        # The accesses (by seq) to write an account of; ``None``: every one. The model's
        # state and provenance follow every access either way: a report needs the account
        # of each register's last access only, and writing one costs more than replaying
        # the access (a million-access fast capture).
        self.only = None if only is None else frozenset(only)
        self.volatile = device.support.volatile
        self.explanations: list[AccessExplanation] = []
        self.provenance = Provenance()
        self._map = register_map(device.name)
        self._config_map = pci_config_map()
        self._model: PciDevice | None = None
        self._config: dict[int, int] = {}
        self._before: _Before | None = None
        self._unimplemented: str | None = None
        self._routes: BarRoutes | None = None
        self._at: _Where | None = None

    # -- ReplayObserver ------------------------------------------------------------------

    def attach(self, model: PciDevice, routes: BarRoutes | None = None) -> None:
        if not isinstance(model, Explainable):
            raise UsageError(
                f"the {self.device} model cannot explain its accesses (it does not "
                "implement qtrace.refemu.provenance.Explainable)"
            )
        self._model = model
        prov = self.provenance
        model.enable_provenance(prov)
        config = {d: model.pci.config_read_raw(d, 4) for d in range(0, 0x100, 4)}
        self._config = prov.track(_CONFIG, config, lambda d: self._config_name(d, 4))
        model.pci.config_listeners.append(self._config_written)
        model.pci.dma_listeners.append(prov.transfer)
        model.pci.msi_listeners.append(prov.message)
        model.irq.subscribe(lambda level: prov.line(level, model.line_reason()))
        self._routes = routes if isinstance(model, BarModel) else None

    def begin(self, access: Access) -> None:
        self._unimplemented = None
        at = self._at = self._where(access)
        self.provenance.begin(Origin(access.seq, _act(access, at.name)))
        self._before = None
        if access.op == "read":
            space, dword = at.space, at.offset
            prov = self.provenance
            self._before = _Before(
                prov.value(space, dword), prov.origins(space, dword), prov.tally(space, dword)
            )

    def end(self, access: Access, model_value: int | None) -> None:
        self.provenance.sync()
        if self.only is not None and access.seq not in self.only:
            if access.op == "read":  # its bookkeeping (adopting firmware's bits), no text
                at = self._at if self._at is not None else self._where(access)
                self._why_read(access, at, self._lookup(at.space, at.offset), model_value,
                               text=False)  # fmt: skip
            return
        at = self._at if self._at is not None else self._where(access)
        space, dword = at.space, at.offset
        reg = self._lookup(space, dword)
        if self._unimplemented is not None:
            value = [f"not modelled: {self._unimplemented}"]
        elif access.op == "read":
            value = self._why_read(access, at, reg, model_value)
        else:
            value = self._what_stored(access, at, reg)
        origin = self.provenance.origin
        effects = [
            e for e in self.provenance.effects
            if not (access.op == "write" and _is_the_store(e, space, dword, origin))
        ]  # fmt: skip
        if access.op == "read" and space == _CONFIG:
            effects = [e for e in effects if not (isinstance(e, Change) and e.space == _CONFIG)]
        self.explanations.append(
            AccessExplanation(
                seq=access.seq,
                kind="access",
                op=access.op,
                space=access.space,
                offset=access.offset,
                size=access.size,
                register=at.name,
                desc=self._desc(space, access.offset if space == _CONFIG else dword),
                qemu_value=access.value,
                model_value=model_value,
                value=tuple(value),
                effects=tuple(effect_lines(effects, origin, self.provenance.name, self._lookup)),
            )
        )

    def unimplemented(self, access: Access, reason: str) -> None:
        self._unimplemented = reason

    def begin_events(self, events: list[Irq | Dma]) -> None:
        self._unimplemented = None
        self.provenance.begin(Origin(None, f"the host (seq {events[0].seq})"))

    def end_events(self, events: list[Irq | Dma], replayed: bool) -> None:
        first = events[0]
        self.provenance.sync()
        own_work = not replayed and bool(self.provenance.effects)
        if replayed or own_work:  # the model did its part: its own account
            lines = [
                "the host delivered it (a frame from the network backend)"
                if replayed
                else _own_work(events)
            ]
            effects = effect_lines(
                self.provenance.effects, self.provenance.origin, self.provenance.name,
                self._lookup,
            )  # fmt: skip
        else:
            lines = [_unexplained(event) for event in events]
            effects = []
        self.explanations.append(
            AccessExplanation(
                seq=first.seq,
                kind="event",
                op="irq" if isinstance(first, Irq) else "dma",
                space="",
                offset=0,
                size=0,
                register="frame from the host"
                if replayed
                else "work off the vCPU"
                if own_work
                else "events no access caused",
                desc="",
                qemu_value=0,
                model_value=None,
                value=tuple(lines),
                effects=tuple(effects),
            )
        )

    # -- after the replay ----------------------------------------------------------------

    def mark(self, result: VerifyResult) -> None:
        """Say, for reads where QEMU and the model differ, whether the replay called it a
        mismatch or a volatile rule allowed it."""
        mismatched = {m.seq for m in result.mismatches}
        marked = []
        for e in self.explanations:
            if e.kind == "access" and e.model_value is not None and e.model_value != e.qemu_value:
                note = f"QEMU read {e.qemu_value:#x}, the model {e.model_value:#x}: "
                if e.seq in mismatched:
                    note += "MISMATCH"
                else:
                    shift = 8 * (e.offset & 3)
                    rules = rules_for(
                        self.volatile, e.register.split("+")[0], e.qemu_value << shift
                    )
                    why = explain(rules, e.qemu_value, e.model_value, shift) or ()
                    note += "allowed: " + "; ".join(r.reason for r in why)
                e = replace(e, value=(*e.value, note))
            marked.append(e)
        self.explanations = marked

    # -- reads and writes ------------------------------------------------------------------

    def _why_read(
        self, access: Access, at: _Where, reg: Reg | None, model_value: int | None,
        text: bool = True,
    ) -> list[str]:
        """The computed bits first (the model said why as it computed them), then the
        stored ones: who last set or cleared each flag and wrote each field. Without
        ``text`` only what a read changes in the account's own state is done (the origin
        of firmware's bits), and the lines are not written."""
        if model_value is None:
            return ["the model could not take this read"]
        prov = self.provenance
        space, dword, shift = at.space, at.offset, at.shift
        mask = ((1 << (8 * access.size)) - 1) << shift
        value = model_value << shift
        fields = reg.fields if reg is not None else ()
        whole = at.name
        if at.computed:
            return [f"{whole}: {at.computed}"]
        lines: list[str] = []
        for computed in prov.computed:
            bits = computed.mask & mask
            if not bits:
                continue
            mask &= ~bits
            lines.append(
                f"{', '.join(n for n, _ in bit_units(fields, bits, whole))}: {computed.text}"
            )
            if computed.source is not None and text:
                src, src_at, src_shift = computed.source

                def origin_of(bit: int) -> Stamped:
                    return prov.origin_of(src, src_at, bit - src_shift)

                reasons = value_lines(fields, bits, value, origin_of, whole)
                lines += [f"  {line}" for line in reasons]
        if not mask:
            return lines
        if reg is not None and reg.kind in _KIND_READS:
            return [*lines, _KIND_READS[reg.kind] + (f" ({reg.note})" if reg.note else "")]
        before = self._before
        if reg is not None and reg.kind in COUNTER_KINDS and before is not None:
            return [*lines, _counted(value >> shift, before.tally)]
        if space == _CONFIG or before is None:  # config reads change nothing but adoption
            self._adopt(access, space, dword)
            origins = prov.origins(space, dword)
        else:
            origins = before.origins
        if not text:
            return lines
        reasons = value_lines(fields, mask, value, lambda b: origins.get(b, _AT_RESET), whole)
        if not reasons:
            reasons = ["the other bits are 0, as at reset" if lines else "0, as at reset"]
        elif reg is not None and reg.reset and reg.note and any("at reset" in r for r in reasons):
            reasons.append(f"(reset value {reg.reset:#010x}: {reg.note})")
        return lines + reasons

    def _adopt(self, access: Access, space: str, dword: int) -> None:
        """Bits the replay adopted from QEMU in this read (firmware's) get that origin."""
        bits = 0
        for effect in self.provenance.effects:
            if isinstance(effect, Change) and effect.space == space and effect.offset == dword:
                bits |= effect.old ^ effect.new
        if bits:
            why = f"set before the capture was armed; QEMU's value adopted at seq {access.seq}"
            self.provenance.set_origin(space, dword, bits, Origin(None, "firmware", why))

    def _what_stored(self, access: Access, at: _Where, reg: Reg | None) -> list[str]:
        """What the write did to its own register (the rest are effects)."""
        space, dword, name = at.space, at.offset, at.name
        origin = self.provenance.origin
        stores = [e for e in self.provenance.effects if _is_the_store(e, space, dword, origin)]
        if not stores:
            if reg is not None and reg.kind in _IGNORED:
                return [f"ignored: {_IGNORED[reg.kind]}" + (f" ({reg.note})" if reg.note else "")]
            bits = ((1 << (8 * access.size)) - 1) << at.shift if at.bar else _MASK32
            if space == _CONFIG or self.provenance.latest(space, dword, bits).seq == access.seq:
                kept = self.provenance.value(space, dword)
                if at.bar:  # the accessed part of the state
                    kept = kept >> at.shift & ((1 << (8 * access.size)) - 1)
                return [f"{name} stays {kept:#x}: no bit changed"]
            return [] if self.provenance.effects else ["no state of the model changed"]
        change = Change(space, dword, stores[0].old, stores[-1].new, origin)
        if at.bar:  # the accessed part of the state
            part = (1 << (8 * access.size)) - 1
            change = replace(change, old=change.old >> at.shift & part,
                             new=change.new >> at.shift & part)  # fmt: skip
        text = change_text(change, name, reg)
        lines = [text if text.endswith(f"{change.new:#x}") else f"{text} (now {change.new:#x})"]
        if stores[-1].origin.detail:
            lines.append(stores[-1].origin.detail)
        if space == _CONFIG or (reg is not None and reg.kind is Kind.RW):  # plain storage
            shift = 8 * (access.offset & 3) if space == _CONFIG else 0
            width = ((1 << 8 * access.size) - 1) << shift if space == _CONFIG else _MASK32
            kept = ((access.value << shift) ^ change.new) & width
            if kept:
                lines.append(f"bits {kept:#x} are not writable: they kept their value")
        return lines

    # -- naming ------------------------------------------------------------------------

    def _where(self, access: Access) -> _Where:
        """Where the access's state is kept: configuration space and a plain model's BARs
        by dword (the byte's shift in it); a model with several BARs says itself
        (:class:`~qtrace.refemu.provenance.LocatesState`), else by dword of that BAR."""
        dword, shift = access.offset & ~3, 8 * (access.offset & 3)
        model = self._model
        located = None if self._routes is None else self._routes.locate(access)
        if located is not None and isinstance(model, BarModel):
            bar, offset = located
            name = model.bar_register_name(bar, offset)
            if isinstance(model, LocatesState):
                place = model.state_at(bar, offset)
                return _Where(place.space, place.offset, place.shift, name, place.computed, True)
            return _Where(f"bar{bar}", offset & ~3, 8 * (offset & 3), name, bar=True)
        space = self._key(access)
        return _Where(space, dword, shift, self._name(access))

    @staticmethod
    def _key(access: Access) -> str:
        if access.space == _CONFIG:
            return _CONFIG
        if access.space == "pio" or (access.region or "").endswith("-io"):
            return "pio"
        return "mmio"

    def _lookup(self, space: str, offset: int) -> Reg | None:
        model = self._model
        if space == "mmio" and model is not None:
            return model.mmio_registers.at(offset)
        if space == "pio" and model is not None:
            return model.io_registers.at(offset)
        if space == _CONFIG:
            return CONFIG_HEADER.at(offset)
        rows = self.provenance.rows.get(space)
        return None if rows is None else rows.at(offset)

    def _name(self, access: Access) -> str:
        space, dword = self._key(access), access.offset & ~3
        if space == _CONFIG:
            return self._config_name(access.offset, access.size)
        model = self._model
        table = model.io_registers if space == "pio" else model.mmio_registers  # type: ignore[union-attr]
        name = table.name_at(dword)
        return name if access.offset == dword else f"{name}+{access.offset - dword}"

    def _config_name(self, offset: int, size: int) -> str:
        """A header register's name, or where in one of the model's capabilities."""
        if self._model is not None and offset >= _CAPABILITIES_FROM:
            for cap in self._model.pci.capabilities:
                if cap.offset <= offset and offset + size <= cap.offset + cap.length:
                    return f"{cap.name}+{offset - cap.offset:#x}"
        return config_register_name(offset, size)

    def _desc(self, space: str, offset: int) -> str:
        if space == _CONFIG:
            found = self._config_map.find(_CONFIG, offset)
        else:
            found = self._map.find(space, offset) if self._map is not None else None
        return found.desc if found is not None else ""

    def _config_written(self, offset: int, size: int) -> None:
        model = self._model
        assert model is not None
        for dword in range(offset & ~3, offset + size, 4):
            self._config[dword] = model.pci.config_read_raw(dword, 4)


def _unexplained(event: Irq | Dma) -> str:
    if isinstance(event, Irq):
        return (
            f"QEMU's {event.line} {'rose' if event.level else 'fell'} outside any access "
            "(a device timer: interrupt moderation or autonegotiation); the model has no timers"
        )
    return f"QEMU did DMA {event.op} of {event.size} bytes at {event.addr:#x} outside any access"


def _own_work(events: list[Irq | Dma]) -> str:
    """What an events step the model did its own work at was, on QEMU's side."""
    threads = sorted({e.thread for e in events if e.thread})
    where = f" (thread {', '.join(threads)})" if threads else ""
    return (
        f"QEMU did this work off the vCPU{where}: the device's thread, timer or bottom half "
        "(after the writes its ioeventfds took); the model did its own pending work here"
    )


def _act(access: Access, name: str) -> str:
    if access.op == "write":
        return f"write {access.value:#x} to {name}"
    return f"read of {name}"


def _is_the_store(effect: object, space: str, dword: int, origin: Origin) -> TypeGuard[Change]:
    """The write's own store: a change of the written register by this access (whatever
    the model was doing in it)."""
    return (
        isinstance(effect, Change)
        and effect.space == space
        and effect.offset == dword
        and effect.origin.seq == origin.seq
        and effect.origin.what == origin.what
    )


def _counted(value: int, tally: Tally) -> str:
    if not value:
        return "0: nothing counted since it was last cleared (read) or reset"
    latest = "; ".join(str(o) for o in tally.latest)
    return f"{value}: {tally.count} increment(s) since it was last 0; latest: {latest}"

"""Provenance: who put each bit of a model's state where it is, recorded as the model runs.

Why: ``qtrace verify --explain`` tells, for every access, the model's own account of it
(why a read returned its value, what a write did). That account must come from the
model's state changes, not from a text table written beside it, or it would explain what
the table's author believed rather than what the model did. So a model that can explain
(:class:`Explainable`) hands its register stores to a :class:`Provenance`, which wraps
them (:class:`TrackedRegisters`): every store that changes bits records, per bit, the
:class:`Origin` acting at that moment (the access being replayed, and what the model was
doing within it). The model adds what only it knows: values a read computes rather than
stores (:meth:`Provenance.computes`), narration of work inside an access
(:meth:`Provenance.note`, :meth:`Provenance.detail`) and why its interrupt line moved.

State a model keeps in attributes rather than offset-keyed dicts (edu's registers, the
virtio transport's queues, an MSI-X table) is *watched* instead (:meth:`Provenance.watch`):
the model gives a function that reads it as ``{offset: value}``, and the provenance compares
it with what it last saw before every effect it records, when an origin changes and when
the replay says an access is over (:meth:`Provenance.sync`), so each change is recorded
with the origin that made it and in the order of the effects around it. A model with
structures in several BARs also says where an access's state is kept
(:class:`LocatesState`: a :class:`Place`).

Nothing here runs unless explaining is switched on: a model without a provenance keeps
plain dicts and pays one ``is not None`` test in the few hooks that narrate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from qtrace.refemu.regmap import RegisterMap

__all__ = [
    "RESET",
    "Change",
    "Computed",
    "Effect",
    "Explainable",
    "LineChange",
    "LocatesState",
    "Message",
    "Note",
    "Origin",
    "Place",
    "Provenance",
    "Stamped",
    "Tally",
    "TrackedRegisters",
    "Transfer",
]

StateKey = tuple[str, int]
"""A piece of state: (space, offset), e.g. ``("mmio", 0xC0)``, ``("phy", 1)``."""


@dataclass(frozen=True)
class Origin:
    """What acted when bits changed: an access (its ``seq``), or something no access did.

    Attributes:
        seq: The trace ``seq`` of the access; ``None`` for reset or a device timer.
        what: The act, e.g. ``"write 0x3 to TDT"``, ``"reset"``.
        detail: What the model was doing within it, e.g. ``"transmit pass from TDH 2"``.
    """

    seq: int | None
    what: str
    detail: str = ""

    def __str__(self) -> str:
        head = self.what if self.seq is None else f"seq {self.seq} ({self.what})"
        return f"{head}: {self.detail}" if self.detail else head


RESET = Origin(None, "reset")

Stamped = tuple[int, Origin]
"""An origin with the order it acted in (0: reset): the later of two has the larger stamp."""
_AT_RESET: Stamped = (0, RESET)


@dataclass(frozen=True)
class Change:
    """Bits of one piece of state changed."""

    space: str
    offset: int
    old: int
    new: int
    origin: Origin


@dataclass(frozen=True)
class Note:
    """The model's narration of something it did (a descriptor fetched, a frame sent)."""

    text: str
    origin: Origin


@dataclass(frozen=True)
class Transfer:
    """A DMA transfer the device made."""

    op: str
    addr: int
    size: int
    origin: Origin


@dataclass(frozen=True)
class LineChange:
    """The interrupt line moved; ``why`` is the model's reason (e.g. ``ICR & IMS``)."""

    level: bool
    why: str
    origin: Origin


@dataclass(frozen=True)
class Message:
    """An MSI or MSI-X message the device sent: ``data`` written at ``address``."""

    address: int
    data: int
    origin: Origin


@dataclass(frozen=True)
class Place:
    """Where the state an access at a BAR offset reads or writes is kept.

    Attributes:
        space: The tracked or watched space (``common``, ``queue0``, ``isr``).
        offset: The state's offset in that space.
        shift: The access's bit ``b`` is the state's bit ``b + shift`` (a 32-bit access to
            the high half of a 64-bit value: 32).
        computed: Not empty when the read computes its value instead of returning stored
            state: the model's reason (the features the device offers, a write-only field).
    """

    space: str
    offset: int
    shift: int = 0
    computed: str = ""


@dataclass(frozen=True)
class Computed:
    """Bits a read computed instead of returning stored ones.

    ``source`` names the state they come from and where it sits in the read value:
    ``(space, offset, shift)`` means the read's ``mask`` bits are that state's bits
    ``mask >> shift`` (ICS reads ICR's bits: shift 0; EECD.DO is the EEPROM's output bit
    0: shift 3), so their origins are that state's.
    """

    mask: int
    text: str
    source: tuple[str, int, int] | None = None


Effect = Change | Note | Transfer | LineChange | Message


@dataclass
class _Watched:
    """A watched space: how to read it, and what the provenance last saw of it."""

    read: Callable[[], Mapping[int, int]]
    known: dict[int, int]


@dataclass
class Tally:
    """How often a value changed since it was last 0 (a counter's increments)."""

    count: int = 0
    latest: deque[Origin] = field(default_factory=lambda: deque(maxlen=3))


class Provenance:
    """Per-bit origins of a model's state, and what the current access did.

    A replay calls :meth:`begin` before each access; the model's tracked stores call
    :meth:`changed`; listeners feed DMA (:meth:`transfer`) and the line (:meth:`line`).
    After the access, :attr:`effects` and :attr:`computed` hold its account.

    Attributes:
        origin: What acts now.
        effects: What happened since :meth:`begin`, in order.
        computed: Bits the current read computed (:meth:`computes`).
        stores: The tracked stores by space, to read values back.
        names: Per space, a function naming an offset (``"TDT"``, ``"PHY register 0x01"``).
        rows: Per space, the register rows that name its fields (where the model has them).
    """

    def __init__(self) -> None:
        self.origin = RESET
        self.effects: list[Effect] = []
        self.computed: list[Computed] = []
        self.stores: dict[str, Mapping[int, int]] = {}
        self.names: dict[str, Callable[[int], str]] = {}
        self.rows: dict[str, RegisterMap] = {}
        self._watched: dict[str, _Watched] = {}
        self._bits: dict[StateKey, dict[int, Stamped]] = {}
        self._tallies: dict[StateKey, Tally] = {}
        self._stamp = 0

    # -- the replay's side ----------------------------------------------------------------

    def begin(self, origin: Origin) -> None:
        """A new access starts; what follows is its account."""
        self.sync()
        self.origin = origin
        self.effects = []
        self.computed = []

    @contextmanager
    def acting(self, origin: Origin) -> Iterator[None]:
        """Within the block, changes are ``origin``'s (e.g. a device timer's)."""
        self.sync()
        saved, self.origin = self.origin, origin
        try:
            yield
        finally:
            self.sync()
            self.origin = saved

    def detail(self, text: str) -> AbstractContextManager[None]:
        """Within the block, the current origin carries ``text`` as what the model did."""
        joined = f"{self.origin.detail}; {text}" if self.origin.detail else text
        return self.acting(replace(self.origin, detail=joined))

    # -- the model's side -----------------------------------------------------------------

    def track(
        self,
        space: str,
        values: Mapping[int, int],
        name: Callable[[int], str],
        rows: RegisterMap | None = None,
    ) -> TrackedRegisters:
        """A tracked store for ``space`` holding ``values`` (their origins: reset)."""
        store = TrackedRegisters(self, space, values)
        self._register(space, store, name, rows)
        return store

    def watch(
        self,
        space: str,
        read: Callable[[], Mapping[int, int]],
        name: Callable[[int], str],
        rows: RegisterMap | None = None,
    ) -> None:
        """Watch state the model keeps elsewhere: ``read()`` gives it as ``{offset: value}``
        (what it holds now: origins reset); changes are found at each :meth:`sync`."""
        known = dict(read())
        self._watched[space] = _Watched(read, known)
        self._register(space, known, name, rows)

    def _register(
        self,
        space: str,
        store: Mapping[int, int],
        name: Callable[[int], str],
        rows: RegisterMap | None,
    ) -> None:
        self.stores[space] = store
        self.names[space] = name
        if rows is not None:
            self.rows[space] = rows
        for key in [k for k in self._bits if k[0] == space]:
            del self._bits[key]

    def sync(self) -> None:
        """Record what changed in watched state since the last look, as the current
        origin's doing (a model's narration and the replay call this at its edges)."""
        for space, watched in self._watched.items():
            now = watched.read()
            known = watched.known
            if now == known:
                continue
            for offset in sorted(now.keys() | known.keys()):
                old, new = known.get(offset, 0), now.get(offset, 0)
                if old != new:
                    known[offset] = new
                    self.changed(space, offset, old, new)

    def note(self, text: str) -> None:
        """Narrate something the model did in the current access."""
        self.sync()
        self.effects.append(Note(text, self.origin))

    def computes(self, mask: int, text: str, source: tuple[str, int, int] | None = None) -> None:
        """The current read's ``mask`` bits are computed, for the reason ``text``."""
        self.computed.append(Computed(mask, text, source))

    def changed(self, space: str, offset: int, old: int, new: int) -> None:
        """State changed: the changed bits now have the current origin."""
        origins = self._bits.setdefault((space, offset), {})
        self._stamp += 1
        stamped = (self._stamp, self.origin)
        diff = old ^ new
        while diff:
            low = diff & -diff
            origins[low.bit_length() - 1] = stamped
            diff ^= low
        tally = self._tallies.setdefault((space, offset), Tally())
        if new == 0:
            tally.count = 0
            tally.latest.clear()
        else:
            tally.count += 1
            tally.latest.append(self.origin)
        self.effects.append(Change(space, offset, old, new, self.origin))

    def set_origin(self, space: str, offset: int, mask: int, origin: Origin) -> None:
        """Give ``mask``'s bits ``origin`` without a change (e.g. loaded at reset from X)."""
        origins = self._bits.setdefault((space, offset), {})
        self._stamp += 1
        for bit in range(mask.bit_length()):
            if mask >> bit & 1:
                origins[bit] = (self._stamp, origin)

    # -- listeners ------------------------------------------------------------------------

    def transfer(self, op: str, addr: int, data: bytes) -> None:
        """A DMA transfer (a :attr:`PciFunction.dma_listeners` listener)."""
        self.sync()
        self.effects.append(Transfer(op, addr, len(data), self.origin))

    def line(self, level: bool, why: str) -> None:
        """The interrupt line changed, for the model's reason ``why``."""
        self.sync()
        self.effects.append(LineChange(level, why, self.origin))

    def message(self, address: int, data: int) -> None:
        """An MSI/MSI-X message (a :attr:`PciFunction.msi_listeners` listener)."""
        self.sync()
        self.effects.append(Message(address, data, self.origin))

    # -- questions ------------------------------------------------------------------------

    def value(self, space: str, offset: int) -> int:
        """The stored value of tracked state (0 when absent)."""
        store = self.stores.get(space)
        return 0 if store is None else store.get(offset, 0)

    def origin_of(self, space: str, offset: int, bit: int) -> Stamped:
        """What last changed ``bit`` of that state, stamped (reset if nothing has)."""
        return self._bits.get((space, offset), {}).get(bit, _AT_RESET)

    def origins(self, space: str, offset: int) -> dict[int, Stamped]:
        """A copy of that state's per-bit origins (bits absent: reset)."""
        return dict(self._bits.get((space, offset), {}))

    def latest(self, space: str, offset: int, mask: int) -> Origin:
        """The origin that acted last on any of ``mask``'s bits (:data:`RESET` if none)."""
        origins = self._bits.get((space, offset), {})
        stamped = [
            origins.get(bit, _AT_RESET) for bit in range(mask.bit_length()) if mask >> bit & 1
        ]
        return max(stamped, key=lambda s: s[0], default=_AT_RESET)[1]

    def groups(
        self, space: str, offset: int, mask: int, shift: int = 0
    ) -> list[tuple[int, Origin]]:
        """``mask``'s bits grouped by origin, as ``(bits, origin)`` in first-bit order.

        ``shift`` places the state's bits in the caller's value (the caller's bit ``b`` is
        the state's bit ``b - shift``)."""
        origins = self._bits.get((space, offset), {})
        grouped: dict[Origin, int] = {}
        for bit in range(mask.bit_length()):
            if mask >> bit & 1:
                origin = origins.get(bit - shift, _AT_RESET)[1]
                grouped[origin] = grouped.get(origin, 0) | 1 << bit
        return [(bits, origin) for origin, bits in grouped.items()]

    def tally(self, space: str, offset: int) -> Tally:
        """A copy of the changes since that state was last 0."""
        found = self._tallies.get((space, offset))
        return Tally() if found is None else Tally(found.count, deque(found.latest, maxlen=3))

    def name(self, space: str, offset: int) -> str:
        namer = self.names.get(space)
        return namer(offset) if namer is not None else f"{space}[{offset:#x}]"


class TrackedRegisters(dict[int, int]):
    """A register store (offset -> value) that reports every change to its provenance."""

    def __init__(self, provenance: Provenance, space: str, values: Mapping[int, int]) -> None:
        super().__init__(values)
        self._provenance = provenance
        self._space = space

    def __setitem__(self, key: int, value: int) -> None:
        old = self.get(key, 0)
        super().__setitem__(key, value)
        if old != value:
            self._provenance.changed(self._space, key, old, value)


@runtime_checkable
class Explainable(Protocol):
    """A model that can account for its accesses (``qtrace verify --explain``)."""

    def enable_provenance(self, provenance: Provenance) -> None:
        """Track state in ``provenance`` from now on (stores wrapped, hooks narrating)."""
        ...

    def line_reason(self) -> str:
        """Why the interrupt line has its level now, in the model's terms."""
        ...


@runtime_checkable
class LocatesState(Protocol):
    """An explainable model with structures in several BARs (accesses by BAR and offset)."""

    def state_at(self, bar: int, offset: int) -> Place:
        """Where the state an access at ``offset`` of ``bar`` reads or writes is kept now
        (it may depend on a select register: a virtio queue field is the selected queue's)."""
        ...

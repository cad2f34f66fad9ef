"""Random step sequences for any virtio-pci model, generated while running on the model.

Why model-driven: whether a request is well formed depends on the device's state (the
queue size it latched at enable, how many buffers it has taken, whether DRIVER_OK is set),
and that state follows from every step before. The generator runs each step on a model as
it writes it (:class:`Driver`), so a request always fits the device as the model sees it;
if QEMU sees it otherwise, the comparison says so at once.

What is held, and why (:data:`HELD`), as e1000's ring is: each sequence is of one of two
kinds. With the queue *live* the ring addresses written are the planted ring's and the
queue size stays within it (16 entries), since the device reads and writes where they
point; with the queue *parked* queue_enable is never written non-zero, so addresses and
sizes take any value and nothing is ever fetched from them. In both, MSI-X message
addresses point at a watched slot of RAM, and COMMAND keeps memory and I/O decoding on.

Not made at all (:meth:`Driver.forbidden`): a queue_size write while that queue is enabled.
The driver must configure a queue before enabling it (4.1.4.3.2); QEMU 10.2.2 applies such
a write to the running queue at once, which is its own business, not the specification's.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qtrace.devices.virtio.common_cfg import COMMON_FIELDS, STATUS_DRIVER_OK, field_at
from qtrace.devices.virtio.layout import CFG_COMMON, CFG_ISR, CFG_NOTIFY, VirtioPciLayout
from qtrace.devices.virtio.transport import FEATURE_VERSION_1, VirtioPci
from qtrace.devices.virtio.virtqueue import DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE
from qtrace.verify.coverage import CoverageSpec, HeldBits, TrackedRegister
from qtrace.verify.steps import ModelSide, Step, apply, bar_placement, setup_steps, sync_read

__all__ = [
    "LIVE_QUEUE",
    "PARKED_QUEUE",
    "RAM",
    "Driver",
    "Ram",
    "coverage_spec",
    "held_bits",
]

LIVE_QUEUE = "with the queue live"
PARKED_QUEUE = "with the queue parked"
STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_FEATURES_OK = 0x1, 0x2, 0x8
_MASK32 = 0xFFFF_FFFF


@dataclass(frozen=True)
class Ram:
    """Where the sequences plant their ring, buffers and MSI-X slot in guest RAM."""

    ring: int = 0x0200_0000  # descriptor table; driver area +0x200; device area +0x400
    indirect: int = 0x0200_0800  # indirect descriptor tables, 256 bytes each
    buffers: int = 0x0201_0000
    buffers_bytes: int = 0x1_0000
    msi_slot: int = 0x0202_0000  # vector n's message lands at +4n
    queue_entries: int = 16  # what the planted ring holds (queue_size is held below it)

    @property
    def driver_area(self) -> int:
        return self.ring + 0x200

    @property
    def device_area(self) -> int:
        return self.ring + 0x400

    @property
    def ring_bytes(self) -> int:
        return 0x1000

    def planted(self, addr: int, size: int) -> bool:
        """Whether ``size`` bytes at ``addr`` lie in RAM the sequence plants."""
        areas = (
            (self.ring, self.ring_bytes),
            (self.buffers, self.buffers_bytes),
            (self.msi_slot, 16),
        )
        return any(start <= addr and addr + size <= start + length for start, length in areas)

    @property
    def watch(self) -> tuple[tuple[int, int], ...]:
        """What the device writes and the live test compares: the used ring (with
        avail_event), the descriptor table (which it must not write) and the MSI slot."""
        used = 6 + 8 * self.queue_entries
        return ((self.device_area, used), (self.ring, 16 * self.queue_entries), (self.msi_slot, 16))


RAM = Ram()


def held_bits(ram: Ram = RAM) -> tuple[HeldBits, ...]:
    """The generator's held bits (see the module docstring)."""
    ring = {"desc": ram.ring, "driver": ram.driver_area, "device": ram.device_area}
    rules = [
        HeldBits(
            "common.queue_enable", 0xFFFF, 0,
            "the ring addresses and size take any value in these sequences: an enabled queue "
            "would be fetched from anywhere", sequences=PARKED_QUEUE,
        ),
        HeldBits(
            "common.queue_size", 0xFFF0, 0,
            "a queue may be enabled and used: it must fit the planted ring (16 entries)",
            sequences=LIVE_QUEUE,
        ),
    ]  # fmt: skip
    for name, addr in ring.items():
        rules.append(
            HeldBits(
                f"common.queue_{name}_lo",
                _MASK32,
                addr,
                "a queue may be enabled and used: its rings are the planted ones",
                sequences=LIVE_QUEUE,
            )
        )
        rules.append(
            HeldBits(
                f"common.queue_{name}_hi",
                _MASK32,
                0,
                "a queue may be enabled and used: its rings are the planted ones",
                sequences=LIVE_QUEUE,
            )
        )
    for vector in range(2):
        rules.append(
            HeldBits(
                f"msix.table+{16 * vector:#x}",
                _MASK32,
                ram.msi_slot + 4 * vector,
                "a message is a write by the device: it goes to a watched slot",
            )
        )
        rules.append(
            HeldBits(
                f"msix.table+{16 * vector + 4:#x}",
                _MASK32,
                0,
                "a message is a write by the device: it goes to a watched slot",
            )
        )
    return tuple(rules)


def coverage_spec(layout: VirtioPciLayout, vectors: int, ram: Ram = RAM) -> CoverageSpec:
    """The registers the sequences write: the common configuration's fields and the MSI-X
    table, each where ``layout`` puts it."""
    common = layout.first(CFG_COMMON)
    assert common is not None and layout.msix is not None
    registers = [
        TrackedRegister(
            f"common.{f.name}", "mmio", common.offset + f.offset, 8 * f.width, bar=common.bar
        )
        for f in COMMON_FIELDS
    ]
    msix = layout.msix
    for offset in range(0, 16 * vectors, 4):
        registers.append(
            TrackedRegister(
                f"msix.table+{offset:#x}", "mmio", msix.table_offset + offset, bar=msix.table_bar
            )
        )
    return CoverageSpec(registers=tuple(registers), held=held_bits(ram), narrow="lanes")


class Driver:
    """Writes a sequence and runs it on a model at once (see the module docstring).

    Args:
        rnd: Every choice comes from it.
        kind: :data:`LIVE_QUEUE` or :data:`PARKED_QUEUE`.
        model: A fresh model of the device.
        slot, gsi, bars: Where the live test puts the device.
        device_setup: The device's own setup steps (run before the sequence, not in it).
    """

    def __init__(
        self,
        rnd: random.Random,
        kind: str,
        model: VirtioPci,
        slot: int,
        gsi: int,
        bars: dict[int, int],
        device_setup: Callable[[], list[Step]],
        ram: Ram = RAM,
    ) -> None:
        self.rnd, self.kind, self.ram = rnd, kind, ram
        self.side = ModelSide(model, slot, bars)
        self.model = model
        self.layout = model.layout
        self.held = [h for h in held_bits(ram) if h.sequences in ("all", kind)]
        placement = bar_placement([bar for bar, _ in model.pci.bars], bars)
        for step in setup_steps(gsi, placement) + device_setup():
            self._run(step)
        self.steps: list[Step] = []
        self.next_desc = 0  # the next free descriptor slot (the generator's own bookkeeping)

    # -- emitting ---------------------------------------------------------------------------

    def _run(self, step: Step) -> None:
        if step.op == "sync":
            self.side.sync(sync_read(step), None)
        else:
            apply(self.side, step)

    def emit(self, step: Step) -> None:
        self.steps.append(step)
        self._run(step)

    def forbidden(self, step: Step) -> bool:
        """Whether ``step`` is one the generator never makes in the device's present state."""
        if step.op != "write" or step.space != "mmio" or step.bar is None:
            return False
        name = self.model.bar_register_name(step.bar, step.offset)
        return name == "common.queue_size" and self.model.common.selected.enabled

    def hold(self, name: str, value: int) -> int:
        for rule in self.held:
            if rule.register == name:
                value = rule.force(value)
        return value

    # -- addresses of the structures ------------------------------------------------------

    def _structure(self, cfg_type: int) -> tuple[int, int]:
        found = self.layout.first(cfg_type)
        assert found is not None
        return found.bar, found.offset

    def common_write(self, name: str, value: int, size: int | None = None) -> None:
        bar, base = self._structure(CFG_COMMON)
        field = next(f for f in COMMON_FIELDS if f.name == name)
        value = self.hold(f"common.{name}", value & ((1 << (8 * field.width)) - 1))
        step = Step("write", "mmio", base + field.offset, size or field.width, value, bar=bar)
        if self.forbidden(step):
            self.common_read(name)
            return
        self.emit(step)
        if name == "device_status" and value:
            self.sync_used()  # QEMU's device may work in a bottom half after any status write

    def common_read(self, name: str, size: int | None = None) -> None:
        bar, base = self._structure(CFG_COMMON)
        field = next(f for f in COMMON_FIELDS if f.name == name)
        self.emit(Step("read", "mmio", base + field.offset, size or field.width, bar=bar))

    def sync_used(self) -> None:
        """Wait for QEMU's bottom half: until its used index is the model's, then its
        device_status (a ring error the bottom half finds sets DEVICE_NEEDS_RESET and
        leaves the used index as it was)."""
        bar, base = self._structure(CFG_COMMON)
        status = next(f for f in COMMON_FIELDS if f.name == "device_status")
        self.emit(Step("sync", "ram", self.ram.device_area + 2, 2))
        self.emit(Step("sync", "mmio", base + status.offset, 1, bar=bar))

    def notify(self, queue: int) -> None:
        bar, base = self._structure(CFG_NOTIFY)
        offset = base + queue * self.layout.notify_multiplier
        self.emit(Step("write", "mmio", offset, 2, queue, bar=bar))
        self.sync_used()

    def read_isr(self) -> None:
        bar, base = self._structure(CFG_ISR)
        self.emit(Step("read", "mmio", base + self.rnd.choice((0, 0, 1, 3)), 1, bar=bar))

    # -- the driver's routines (spec 3.1.1, 4.1.5) ------------------------------------------

    def initialise(self, features: int, queue_size: int, vectors: Sequence[int]) -> None:
        """Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK, vectors, queue 0 on the
        planted ring (its rings zeroed first), DRIVER_OK."""
        self.common_write("device_status", 0)
        self.common_read("device_status")
        status = STATUS_ACKNOWLEDGE | STATUS_DRIVER
        self.common_write("device_status", STATUS_ACKNOWLEDGE)
        self.common_write("device_status", status)
        for select in (0, 1):
            self.common_write("driver_feature_select", select)
            self.common_write("driver_feature", features >> (32 * select) & _MASK32)
        status |= STATUS_FEATURES_OK
        self.common_write("device_status", status)
        self.common_read("device_status")
        self.common_write("config_msix_vector", vectors[0])
        self.common_write("queue_select", 0)
        self.common_write("queue_size", queue_size)
        self.common_write("queue_msix_vector", vectors[1])
        self.emit(Step("write", "ram", self.ram.ring, data=bytes(self.ram.ring_bytes)))
        self.next_desc = 0
        for ring in ("desc", "driver", "device"):
            self.common_write(f"queue_{ring}_lo", 0)
            self.common_write(f"queue_{ring}_hi", 0)
        self.common_write("queue_enable", 1)
        self.common_write("device_status", status | STATUS_DRIVER_OK)

    def ready_queue(self) -> tuple[int, int, int, int] | None:
        """(size, desc, driver, device) of queue 0 when the device would use it."""
        queue = self.model.queues[0]
        ready = self.model.common.status & STATUS_DRIVER_OK and not self.model.broken
        if not queue.enabled or queue.ring is None or not ready:
            return None
        return queue.ring

    def offer(self, chains: Sequence[Sequence[tuple[int, int, int]]], notify: bool) -> None:
        """Make ``chains`` (each a list of (address, length, flags)) available on queue 0,
        then notify. A chain of one INDIRECT entry has its table planted at ``indirect``."""
        ring = self.ready_queue()
        assert ring is not None
        size, desc, driver, _ = ring
        avail = int.from_bytes(self.side.ram_read(driver + 2, 2), "little")
        for number, chain in enumerate(chains):
            head = self.next_desc % size
            entries = list(chain)
            if entries[0][2] & DESC_F_INDIRECT:
                table = self.ram.indirect + 0x100 * (number % 8)
                inner = entries[1:]
                self.emit(Step("write", "ram", table, data=_descriptors(inner, 0, len(inner))))
                entries = [(table, 16 * len(inner), DESC_F_INDIRECT)]
            for position, (addr, length, flags) in enumerate(entries):
                index = (head + position) % size
                following = (head + position + 1) % size
                if position + 1 < len(entries):
                    flags |= DESC_F_NEXT
                self.emit(
                    Step(
                        "write",
                        "ram",
                        desc + 16 * index,
                        data=struct.pack("<QIHH", addr, length, flags, following),
                    )
                )
            self.next_desc += len(entries)
            slot = driver + 4 + 2 * ((avail + number) % size)
            self.emit(Step("write", "ram", slot, data=head.to_bytes(2, "little")))
        new_avail = (avail + len(chains)) & 0xFFFF
        self.emit(Step("write", "ram", driver + 2, data=new_avail.to_bytes(2, "little")))
        if notify:
            self.notify(0)


def _descriptors(entries: Sequence[tuple[int, int, int]], base: int, count: int) -> bytes:
    """An indirect table: ``entries`` chained in order (the last without NEXT)."""
    out = b""
    for position, (addr, length, flags) in enumerate(entries):
        flags = flags | DESC_F_NEXT if position + 1 < count else flags & ~DESC_F_NEXT
        out += struct.pack("<QIHH", addr, length, flags, base + position + 1)
    return out


def field_name(layout: VirtioPciLayout, bar: int, offset: int) -> str | None:
    """``common.<field>`` for a common-configuration offset of ``bar``, else ``None``."""
    common = layout.first(CFG_COMMON)
    if common is None or bar != common.bar:
        return None
    found = field_at(offset - common.offset)
    return None if found is None else f"common.{found.name}"


VERSION_1 = FEATURE_VERSION_1
DRIVER_OK = STATUS_DRIVER_OK
WRITE, NEXT, INDIRECT = DESC_F_WRITE, DESC_F_NEXT, DESC_F_INDIRECT

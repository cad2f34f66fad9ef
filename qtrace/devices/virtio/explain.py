"""What ``qtrace verify virtio-* --trace FILE --explain`` needs of the transport's state.

Why apart from :mod:`qtrace.devices.virtio.transport`: the transport keeps its state where
its rules want it (the common configuration's fields, each queue's registers and ring
position, ISR, the MSI-X table and pending bits), not in offset-keyed register dicts. This
module says, for the provenance, how to read that state as spaces of ``{offset: value}``
(:func:`watch`), how to name it and its bits (:data:`COMMON_ROWS`), and where the state an
access at a BAR offset reads or writes is kept now (:func:`state_at`: a queue field is the
selected queue's; a read that computes its value says why). Nothing here runs unless
explaining is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtrace.devices.virtio.common_cfg import COMMON_FIELDS, field_at
from qtrace.devices.virtio.layout import CFG_COMMON, CFG_DEVICE, CFG_ISR, CFG_NOTIFY
from qtrace.devices.virtio.virtqueue import VirtQueue
from qtrace.refemu.provenance import Place, Provenance
from qtrace.refemu.regmap import Field, Kind, Reg, RegisterMap

if TYPE_CHECKING:
    from qtrace.devices.virtio.transport import VirtioPci

__all__ = ["COMMON_ROWS", "ISR_ROWS", "state_at", "watch", "wrote"]

_MASK32 = 0xFFFF_FFFF
# Where a queue's state sits in its space: its common-configuration fields at their own
# offsets (each ring address as one 64-bit value at its low half's offset), then the
# device's own ring position, which no field shows.
_QUEUE_STATE = {
    0x18: "queue_size",
    0x1A: "queue_msix_vector",
    0x1C: "queue_enable",
    0x20: "queue_desc",
    0x28: "queue_driver",
    0x30: "queue_device",
    0x100: "last_avail_idx",
    0x102: "used_idx",
}
_RING_HALVES = {"desc": 0x20, "driver": 0x28, "device": 0x30}
_NOT_PLAIN = frozenset({"device_status", "queue_enable", "queue_reset"})  # writes that act
_STATUS_BITS = (  # device status (virtio 1.x, 2.1)
    Field("ACKNOWLEDGE", 0),
    Field("DRIVER", 1),
    Field("DRIVER_OK", 2),
    Field("FEATURES_OK", 3),
    Field("DEVICE_NEEDS_RESET", 6),
    Field("FAILED", 7),
)
COMMON_ROWS = RegisterMap(
    Reg(f.offset, f"common.{f.name}", kind=Kind.SPECIAL,
        fields=_STATUS_BITS if f.name == "device_status" else ())
    for f in COMMON_FIELDS
)  # fmt: skip
"""The common configuration's fields as register rows (names and device_status's bits)."""
ISR_ROWS = RegisterMap(
    [Reg(0, "isr", kind=Kind.SPECIAL, fields=(Field("QUEUE", 0), Field("CONFIG", 1)))]
)
"""ISR status (4.1.4.5): bit 0 a queue interrupt, bit 1 a configuration change."""


def watch(transport: VirtioPci, provenance: Provenance) -> None:
    """Watch the transport's state in ``provenance``: ``common``, ``queue<N>``, ``isr``,
    and ``msix.table``/``msix.pba`` when it has MSI-X."""
    common = transport.common
    provenance.watch(
        "common",
        lambda: {
            0x00: common.device_feature_select,
            0x08: common.driver_feature_select,
            0x0C: common.driver_features,
            0x10: common.config_msix_vector,
            0x14: common.status,
            0x15: common.generation,
            0x16: common.queue_select,
        },
        COMMON_ROWS.name_at,
        COMMON_ROWS,
    )
    for queue in common.queues:
        provenance.watch(
            f"queue{queue.index}",
            lambda queue=queue: _queue_state(queue),  # type: ignore[misc]
            lambda offset, index=queue.index: f"queue {index} {_QUEUE_STATE.get(offset, '?')}",  # type: ignore[misc]
        )
    provenance.watch("isr", lambda: {0: transport.isr}, lambda _offset: "isr", ISR_ROWS)
    msix = transport.msix
    if msix is not None:
        provenance.watch(
            "msix.table",
            lambda: {
                at: int.from_bytes(msix.table[at : at + 4], "little")
                for at in range(0, len(msix.table), 4)
            },
            _table_name,
        )
        provenance.watch("msix.pba", lambda: {0: msix.pending}, lambda _offset: "msix.pba")


def _queue_state(queue: VirtQueue) -> dict[int, int]:
    return {
        0x18: queue.size,
        0x1A: queue.msix_vector,
        0x1C: int(queue.enabled),
        0x20: queue.desc,
        0x28: queue.driver,
        0x30: queue.device,
        0x100: queue.last_avail,
        0x102: queue.used_idx,
    }


def _table_name(offset: int) -> str:
    vector, field = divmod(offset, 16)
    part = ("message address", "message upper address", "message data", "vector control")
    return f"MSI-X vector {vector} {part[field // 4]}"


def wrote(transport: VirtioPci, provenance: Provenance, bar: int, offset: int, size: int) -> None:
    """A common-configuration write that stores what it is given determined the field's
    bits, changed or not (so a later read names it, and the write says what it kept)."""
    kind, inside, _ = transport._route(bar, offset)
    field = field_at(inside)
    if kind != CFG_COMMON or field is None or not field.writable or field.name in _NOT_PLAIN:
        return
    place = _common_place(transport, inside)
    if not place.computed:
        provenance.sync()
        bits = ((1 << (8 * min(size, field.width))) - 1) << place.shift
        provenance.set_origin(place.space, place.offset, bits, provenance.origin)


def state_at(transport: VirtioPci, bar: int, offset: int) -> Place:
    """Where the state an access at ``offset`` of ``bar`` reads or writes is kept now."""
    kind, inside, region = transport._route(bar, offset)
    msix = transport.msix
    if region is not None and msix is not None:
        if region is msix.table_region:
            return Place("msix.table", inside & ~3, 8 * (inside & 3))
        return Place("msix.pba", 0, 8 * inside)
    if kind == CFG_COMMON:
        return _common_place(transport, inside)
    if kind == CFG_ISR:
        return Place("isr", 0)
    if kind == CFG_DEVICE:
        size = transport.device.config_bytes
        return Place("device", inside, 0, f"the device-specific configuration ({size} bytes; "
                     "beyond it all ones, observed)")  # fmt: skip
    if kind == CFG_NOTIFY:
        return Place("notify", inside, 0, "the notification structure is write-only: reads 0")
    return Place(f"bar{bar}", offset, 0, "no structure at this offset: reads 0")


def _common_place(transport: VirtioPci, inside: int) -> Place:
    common = transport.common
    field = field_at(inside)
    if field is None:
        return Place("common", inside, 0, "no field at this offset: reads 0 (observed)")
    name, select = field.name, common.queue_select
    if name == "device_feature":
        sel = common.device_feature_select
        bits = transport.device.features >> (32 * sel) & _MASK32 if sel < 2 else 0
        span = f"{32 * sel + 31}:{32 * sel}"
        why = f"the features the device offers, bits {span} (device_feature_select {sel})"
        return Place("common", inside, 0, f"{why}: {bits:#x}")
    if name == "driver_feature":
        sel = common.driver_feature_select
        if sel < 2:
            return Place("common", inside, 32 * sel)
        return Place("common", inside, 0, f"driver_feature_select {sel} is beyond 1: reads 0")
    if name == "num_queues":
        return Place("common", inside, 0, f"the device has {len(common.queues)} queue(s)")
    if name == "queue_notify_off":
        return Place("common", inside, 0, f"queue {select}'s notification offset: its index")
    if not field.writable or name == "queue_reset":
        return Place("common", inside, 0, "reads 0 (observed)")
    if not name.startswith("queue_") or name == "queue_select":
        return Place("common", inside)
    if select >= len(common.queues):
        return Place("common", inside, 0, f"queue {select} does not exist: size 0, other "
                     "fields as written")  # fmt: skip
    space = f"queue{select}"
    ring, _, half = name[len("queue_") :].rpartition("_")
    if ring in _RING_HALVES:
        return Place(space, _RING_HALVES[ring], 32 if half == "hi" else 0)
    return Place(space, inside)

"""The split virtqueue (virtio 1.x, "Split Virtqueues"), seen from the device.

Why apart from the transport: a device type (entropy, block, ...) takes descriptor chains
from the available ring and returns them on the used ring; how the rings are laid out
and when the driver wants a notification is the same for all of them.

From the specification: a descriptor is 16 bytes (le64 addr, le32 len, le16 flags, le16
next; flags NEXT 1, WRITE 2, INDIRECT 4); the available ring is le16 flags, le16 idx, le16
ring[size] and, with VIRTIO_F_EVENT_IDX, le16 used_event; the used ring is le16 flags, le16
idx, {le32 id, le32 len}[size] and le16 avail_event. The device takes heads from
``avail.ring[last_avail % size]`` while ``last_avail != avail.idx``, writes each used
element then the used index, and notifies unless the driver suppressed it: without
EVENT_IDX when ``avail.flags`` has NO_INTERRUPT, with it unless the used index passed
``used_event`` (``vring_need_event``). An indirect descriptor (with INDIRECT_DESC
negotiated) points at a table of ``len / 16`` descriptors chained from its first.

As QEMU 10.2.2 does it (observed): a used element is one 8-byte write, the used index a
2-byte write after it; with EVENT_IDX the device writes ``avail_event`` (its next
``last_avail``) after taking each chain; an indirect descriptor is followed whether or not
INDIRECT_DESC was negotiated (the driver must not use it unless it was).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "DESC_F_INDIRECT",
    "DESC_F_NEXT",
    "DESC_F_WRITE",
    "Buffer",
    "Chain",
    "RingError",
    "VirtQueue",
]

DESC_F_NEXT, DESC_F_WRITE, DESC_F_INDIRECT = 1, 2, 4
AVAIL_F_NO_INTERRUPT = 1
DESC_BYTES = 16
_U16 = 0xFFFF


class RingError(Exception):
    """The driver broke a rule of the ring the device can see (the device then needs a
    reset: DEVICE_NEEDS_RESET, spec 2.1.2)."""


@dataclass(frozen=True)
class Buffer:
    """One guest buffer of a chain: device-writable or device-readable."""

    addr: int
    length: int
    writable: bool


@dataclass(frozen=True)
class Chain:
    """A descriptor chain taken from the available ring: its head index, its buffers and
    how many entries of the queue's own descriptor table it uses."""

    head: int
    buffers: tuple[Buffer, ...]
    table_entries: int = 1

    @property
    def writable_bytes(self) -> int:
        return sum(b.length for b in self.buffers if b.writable)


class Memory:
    """What a virtqueue needs of the function: bus-master reads and writes of guest RAM."""

    def __init__(
        self, read: Callable[[int, int], bytes], write: Callable[[int, bytes], None]
    ) -> None:
        self.read = read
        self.write = write

    def u16(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 2), "little")


@dataclass
class VirtQueue:
    """One virtqueue: its registers in the common configuration and the device's state.

    ``size``, ``msix_vector``, ``enabled``, ``desc``, ``driver``, ``device`` are what the
    common configuration shows for it; the device works with the ring addresses and size
    taken when the driver enabled it (:meth:`enable`). As QEMU 10.2.2 keeps them (observed):
    the size the driver wrote is kept apart from the one shown, so a queue reset shows the
    maximum again but enabling the queue takes the driver's size back, and the ring
    addresses survive a queue reset (not a device reset).
    """

    index: int
    max_size: int
    size: int = 0
    driver_size: int = 0
    msix_vector: int = 0xFFFF
    enabled: bool = False
    desc: int = 0
    driver: int = 0
    device: int = 0
    last_avail: int = 0
    used_idx: int = 0
    signalled_used: int | None = None  # the used index last notified (None: not yet)
    ring: tuple[int, int, int, int] | None = field(default=None)  # size, desc, driver, device

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Device reset: unavailable to the device, defaults in every register."""
        self.queue_reset()
        self.driver_size = self.max_size
        self.desc = self.driver = self.device = 0

    def queue_reset(self) -> None:
        """queue_reset (VIRTIO_F_RING_RESET): the device forgets the queue; the ring
        addresses and the driver's size stay for the next enable."""
        self.size = self.max_size
        self.msix_vector = 0xFFFF
        self.enabled = False
        self.last_avail = self.used_idx = 0
        self.signalled_used = None
        self.ring = None

    def set_size(self, value: int) -> None:
        self.size = self.driver_size = value

    def enable(self) -> None:
        """The driver enabled the queue: the device takes the rings as configured now."""
        self.enabled = True
        self.size = self.driver_size
        self.ring = (self.size, self.desc, self.driver, self.device)

    # -- the device's side -------------------------------------------------------------------

    def pending(self, memory: Memory) -> int:
        """How many chains the driver has made available that the device has not taken.

        Raises:
            RingError: The driver moved the index by more than the queue size.
        """
        if self.ring is None:
            return 0
        size, _, driver, _ = self.ring
        count = (memory.u16(driver + 2) - self.last_avail) & _U16
        if count > size:
            raise RingError(f"available index moved {count} entries on a queue of {size}")
        return count

    def pop(self, memory: Memory, event_idx: bool, *, peek: bool = False) -> Chain:
        """Take the next available chain (``peek``: read it, but leave it available and
        do not check the order of its buffers, as QEMU sizes a request first).

        Raises:
            RingError: A head or ``next`` beyond the table, a loop, an indirect table where
                none may be, or a device-readable buffer after a device-writable one (the
                driver must put them in that order; QEMU 10.2.2 takes it as an error).
        """
        assert self.ring is not None
        size, desc, driver, device = self.ring
        head = memory.u16(driver + 4 + 2 * (self.last_avail % size))
        entries: list[int] = []
        buffers = tuple(self._walk(memory, desc, size, head, nested=False, entries=entries))
        if peek:
            return Chain(head, buffers, len(entries))
        self.last_avail = (self.last_avail + 1) & _U16
        if event_idx:
            memory.write(device + 4 + 8 * size, self.last_avail.to_bytes(2, "little"))
        writable = [b.writable for b in buffers]
        if writable != sorted(writable):
            raise RingError(f"chain {head}: a device-readable buffer after a device-writable one")
        return Chain(head, buffers, len(entries))

    def _walk(
        self,
        memory: Memory,
        table: int,
        count: int,
        index: int,
        nested: bool,
        entries: list[int] | None = None,
    ) -> list[Buffer]:
        buffers: list[Buffer] = []
        for _ in range(count + 1):
            if index >= count:
                raise RingError(f"descriptor {index} is beyond a table of {count}")
            if entries is not None:
                entries.append(index)
            addr, length, flags, following = struct.unpack(
                "<QIHH", memory.read(table + DESC_BYTES * index, DESC_BYTES)
            )
            if flags & DESC_F_INDIRECT:
                if nested or flags & DESC_F_NEXT or length % DESC_BYTES:
                    raise RingError(f"descriptor {index}: an indirect table not allowed here")
                buffers += self._walk(memory, addr, length // DESC_BYTES, 0, nested=True)
                return buffers
            buffers.append(Buffer(addr, length, bool(flags & DESC_F_WRITE)))
            if not flags & DESC_F_NEXT:
                return buffers
            index = following
        raise RingError("a descriptor chain longer than its table (a loop)")

    def next_used_slot(self) -> int:
        """Where the next used element goes."""
        assert self.ring is not None
        size, _, _, device = self.ring
        return device + 4 + 8 * (self.used_idx % size)

    def push(self, memory: Memory, chain: Chain, length: int) -> None:
        """Return ``chain`` with ``length`` bytes written: the used element, then the index."""
        assert self.ring is not None
        device = self.ring[3]
        memory.write(self.next_used_slot(), struct.pack("<II", chain.head, length))
        self.used_idx = (self.used_idx + 1) & _U16
        memory.write(device + 2, self.used_idx.to_bytes(2, "little"))

    def wants_notification(self, memory: Memory, event_idx: bool) -> bool:
        """Whether the driver wants to be told that the used index moved.

        With EVENT_IDX: whether the index passed ``used_event`` since the last
        notification, and always for the first one after a reset (QEMU 10.2.2 compares
        with the index it last notified, not with the one before this batch; observed)."""
        assert self.ring is not None
        size, _, driver, _ = self.ring
        if not event_idx:
            return not memory.u16(driver) & AVAIL_F_NO_INTERRUPT
        used_event = memory.u16(driver + 4 + 2 * size)
        old, new = self.signalled_used, self.used_idx
        self.signalled_used = new
        return old is None or (new - used_event - 1) & _U16 < (new - old) & _U16

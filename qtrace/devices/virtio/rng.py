"""The virtio entropy device (virtio 1.x, "Entropy Device") on the PCI transport.

From the specification: device ID 4, one queue (requestq), no feature bits of its own, no
device-specific configuration; the driver places device-writable buffers on the queue and
the device fills them with random bytes ("one or more ... it MAY use less than the entire
buffer length"); the driver reads the length written.

What QEMU 10.2.2 does where the specification leaves room (observed under qtest):

* it offers INDIRECT_DESC, EVENT_IDX, VERSION_1 and RING_RESET; the queue holds 8;
* the request is sized at the notification, and at every device_status write while the
  driver is ready (buffers made available before DRIVER_OK are filled then); the buffers
  are filled later, in a bottom half (rng-builtin's);
* it adds up the device-writable bytes of every chain available (all of them together
  using more entries of the descriptor table than the queue has is a driver error to it:
  two chains sharing a descriptor), then takes chains in
  ring order, filling each completely and returning it with the number of bytes written,
  until that many bytes are written, and sends one notification: a chain with no
  device-writable buffer is returned with length 0 only when a later chain has room, and
  nothing at all happens when no chain has any;
* the random bytes are written by mapping the guest buffer, one transfer per descriptor.

The bytes themselves are random: a replay or a live test compares where and how many,
never what (:data:`qtrace.refemu.pci.DMA_RANDOM_WRITE`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from qtrace.devices.virtio.common_cfg import STATUS_DRIVER_OK
from qtrace.devices.virtio.layout import VirtioPciLayout, qemu_default_layout
from qtrace.devices.virtio.transport import (
    FEATURE_EVENT_IDX,
    FEATURE_INDIRECT_DESC,
    FEATURE_VERSION_1,
    VirtioPci,
)
from qtrace.devices.virtio.virtqueue import Chain, RingError, VirtQueue
from qtrace.refemu.provenance import Origin

__all__ = ["ENTROPY_DEVICE_ID", "Entropy", "VirtioRngPci"]

ENTROPY_DEVICE_ID = 4
FEATURE_RING_RESET = 1 << 40
QUEUE_SIZE = 8  # QEMU 10.2.2's request queue (observed)
DEFAULT_VECTORS = 2  # QEMU 10.2.2's MSI-X table size for virtio-rng-pci (observed)


class Entropy:
    """The entropy device type: one request queue, filled with random bytes.

    Two phases, as QEMU 10.2.2 runs them (observed): on a notification (not while the
    device is broken) and on every device_status write, the request is sized at once (the
    device-writable bytes of every chain available; a ring error found here is reported
    then, so a status write on a broken ring reports it again); the chains are filled later,
    in the bottom half (:meth:`settle`), which takes nothing from a broken device.
    """

    device_id = ENTROPY_DEVICE_ID
    class_code = 0x00FF00  # "other" (observed; the specification does not say)
    features = FEATURE_INDIRECT_DESC | FEATURE_EVENT_IDX | FEATURE_VERSION_1 | FEATURE_RING_RESET
    queue_sizes: tuple[int, ...] = (QUEUE_SIZE,)
    config_bytes = 0

    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)
        self._transport: VirtioPci | None = None
        self.requests: list[int] = []  # bytes asked of the entropy source, not yet given
        self._sized_by: list[Origin | None] = []  # explaining: the access that sized each
        self.filled = 0

    def bind(self, transport: VirtioPci) -> None:
        self._transport = transport

    def reset(self) -> None:
        self.requests.clear()
        self._sized_by.clear()

    def config_read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def config_write(self, offset: int, size: int, value: int) -> None:
        return None

    def queue_notified(self, queue: VirtQueue) -> None:
        transport = self._transport
        if transport is not None and not transport.broken:
            self._size_request()

    def status_changed(self, old: int, new: int) -> None:
        self._size_request()

    def _size_request(self) -> None:
        transport = self._transport
        if transport is None or not transport.common.status & STATUS_DRIVER_OK:
            return
        queue = transport.queues[0]
        if not queue.enabled:
            return
        try:
            wanted = sum(chain.writable_bytes for chain in self._peek(transport, queue))
        except RingError as error:
            transport.ring_error(error)
            return
        prov = transport.provenance
        if wanted:
            self.requests.append(wanted)
            self._sized_by.append(None if prov is None else prov.origin)
        if prov is not None:
            prov.note(
                f"entropy request of {wanted} bytes sized (the device-writable bytes "
                "available); filled in a bottom half"
                if wanted
                else "no device-writable buffer available: nothing requested"
            )

    def settle(self) -> bool:
        """The bottom half: the entropy asked for arrives and fills the chains."""
        if not self.requests:
            return False
        transport = self._transport
        wanted, self.requests = self.requests, []
        sized_by, self._sized_by = self._sized_by, []
        if transport is not None:
            for size, by in zip(wanted, sized_by, strict=False):
                prov = transport.provenance
                if prov is None:
                    self._fill(transport, transport.queues[0], size)
                    continue
                detail = f"fills the request of {size} bytes" + (f" sized by {by}" if by else "")
                with prov.acting(Origin(None, "the entropy device's bottom half", detail)):
                    self._fill(transport, transport.queues[0], size)
        return True

    def _fill(self, transport: VirtioPci, queue: VirtQueue, wanted: int) -> None:
        """Fill chains until ``wanted`` bytes are written, then notify (unless suppressed)
        even when none could be taken: QEMU 10.2.2 does (observed: a broken ring still
        sets ISR bit 0)."""
        if not transport.common.status & STATUS_DRIVER_OK or not queue.enabled:
            return
        event_idx = transport.negotiated(FEATURE_EVENT_IDX)
        total = 0
        while total < wanted and not transport.broken and queue.pending(transport.memory):
            try:
                chain = queue.pop(transport.memory, event_idx)
            except RingError as error:
                transport.ring_error(error)
                break
            written = 0
            for buffer in chain.buffers:
                if buffer.writable and buffer.length:
                    data = self._random.randbytes(buffer.length)
                    transport.pci.dma_write(buffer.addr, data, random=True)
                    written += buffer.length
            slot = queue.next_used_slot()
            queue.push(transport.memory, chain, written)
            total += written
            if transport.provenance is not None:
                transport.provenance.note(
                    f"chain {chain.head}: {written} random bytes into {len(chain.buffers)} "
                    f"buffer(s); used element (id {chain.head}, len {written}) written at "
                    f"{slot:#x}, used index {queue.used_idx}"
                )
        self.filled += total
        if queue.wants_notification(transport.memory, event_idx):
            transport.notify_queue(queue)
        else:
            transport.narrate("the driver suppressed the used-buffer notification")

    @staticmethod
    def _peek(transport: VirtioPci, queue: VirtQueue) -> list[Chain]:
        """The chains available now, read without taking them (to size the request)."""
        saved = queue.last_avail
        chains: list[Chain] = []
        try:
            for _ in range(queue.pending(transport.memory)):
                chains.append(queue.pop(transport.memory, event_idx=False, peek=True))
                queue.last_avail = (queue.last_avail + 1) & 0xFFFF
                size = queue.ring[0] if queue.ring is not None else 0
                if sum(chain.table_entries for chain in chains) > size:
                    raise RingError("the chains available use more descriptors than the table")
        finally:
            queue.last_avail = saved
        return chains


class VirtioRngPci(VirtioPci):
    """virtio-rng-pci: the entropy device on the PCI transport (the pack's model).

    Built from QEMU's ``-device`` properties (``vectors``: the MSI-X table size), from the
    device's configuration space (:meth:`from_config_space`: the layout its capabilities
    state, as the live test reads them from QEMU) or from a trace header
    (:meth:`from_trace_header`: the layout its discovered regions show).
    """

    def __init__(self, name: str = "virtio-rng-pci", layout: VirtioPciLayout | None = None) -> None:
        super().__init__(Entropy(), layout or qemu_default_layout(DEFAULT_VECTORS), name)

    @classmethod
    def from_properties(
        cls, properties: Mapping[str, str] | None, name: str = "virtio-rng-pci"
    ) -> VirtioRngPci:
        vectors = int((properties or {}).get("vectors", DEFAULT_VECTORS))
        return cls(name, qemu_default_layout(vectors))

    @classmethod
    def from_config_space(cls, config: bytes, name: str = "virtio-rng-pci") -> VirtioRngPci:
        return cls(name, VirtioPciLayout.from_config_space(config, Entropy.config_bytes))

    @classmethod
    def from_trace_header(cls, header: Any, name: str = "virtio-rng-pci") -> VirtioRngPci:
        """The model for a trace: QEMU's layout with the header's regions applied."""
        model = cls.from_properties(header.device_properties, name)
        if header.regions:
            return cls(name, model.layout.with_regions(header.regions))
        return model

"""The virtio-pci common configuration structure (virtio 1.x, 4.1.4.3), as data and rules.

Why apart from the transport: it is the one structure every virtio-pci device has in the
same shape; its fields are a table (offset, name, width, who may write it) and each write
rule is one small function.

From the specification: a field is accessed at its offset with its width (64-bit ones as
two 32-bit halves, 4.1.3.1); feature bits are presented 32 at a time by their selects, and
0 for selects beyond 1; writing 0 to device_status resets the device; queue_enable,
queue_size, queue_msix_vector, the three ring addresses and queue_notify_off are those of
the queue queue_select names; a vector that cannot be mapped reads NO_VECTOR (0xFFFF).

Where the specification lets the device choose, as QEMU 10.2.2 chose (observed):

* an access at a field's offset acts on that field whatever its width (a 2-byte write
  to device_status stores its low byte; a 4-byte write of 0x10001 to config_msix_vector
  is that vector, not mapped); other offsets read 0 and ignore writes;
* driver_feature keeps all 32 bits written for selects 0 and 1 (the spec allows keeping
  bits it does not offer), and reads 0 otherwise;
* neither select is reset by a device reset;
* queue_select ignores values of 1024 (QEMU's queue limit) and more; queues that do not
  exist read size 0 but keep what is written to their other fields;
* queue_size takes 1 to 1024 (not only powers of 2) and ignores 0 and larger values; a
  queue that does not exist keeps size 0;
* a vector is mapped when it is below the MSI-X table size, whether or not MSI-X is on;
* queue_enable: 1 enables (again, if it was); any other value (the driver must not write
  0, and 1 means enabled) is a driver error to the device: it stops, as for a broken ring;
* queue_notify_off is the queue's index; queue_notif_config_data, the admin-queue fields
  and everything past them read 0;
* queue_reset: writing 1 resets the selected queue, whether or not RING_RESET was
  negotiated (it reads 0 again at once); see :class:`~qtrace.devices.virtio.virtqueue.
  VirtQueue` for what a queue reset keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qtrace.devices.virtio.virtqueue import VirtQueue

__all__ = ["COMMON_FIELDS", "NO_VECTOR", "QUEUE_LIMIT", "CommonConfig", "Field", "field_at"]

NO_VECTOR = 0xFFFF
QUEUE_LIMIT = 1024  # queues QEMU 10.2.2 can address (queue_select's bound, observed)
QUEUE_SIZE_LIMIT = 1024
STATUS_DRIVER_OK = 0x04
STATUS_FEATURES_OK = 0x08
STATUS_NEEDS_RESET = 0x40


@dataclass(frozen=True)
class Field:
    """One field: offset, name, width in bytes, and whether the driver writes it."""

    offset: int
    name: str
    width: int
    writable: bool


COMMON_FIELDS: tuple[Field, ...] = (
    Field(0x00, "device_feature_select", 4, True),
    Field(0x04, "device_feature", 4, False),
    Field(0x08, "driver_feature_select", 4, True),
    Field(0x0C, "driver_feature", 4, True),
    Field(0x10, "config_msix_vector", 2, True),
    Field(0x12, "num_queues", 2, False),
    Field(0x14, "device_status", 1, True),
    Field(0x15, "config_generation", 1, False),
    Field(0x16, "queue_select", 2, True),
    Field(0x18, "queue_size", 2, True),
    Field(0x1A, "queue_msix_vector", 2, True),
    Field(0x1C, "queue_enable", 2, True),
    Field(0x1E, "queue_notify_off", 2, False),
    Field(0x20, "queue_desc_lo", 4, True),
    Field(0x24, "queue_desc_hi", 4, True),
    Field(0x28, "queue_driver_lo", 4, True),
    Field(0x2C, "queue_driver_hi", 4, True),
    Field(0x30, "queue_device_lo", 4, True),
    Field(0x34, "queue_device_hi", 4, True),
    Field(0x38, "queue_notif_config_data", 2, False),
    Field(0x3A, "queue_reset", 2, True),
    Field(0x3C, "admin_queue_index", 2, False),
    Field(0x3E, "admin_queue_num", 2, False),
)
_BY_OFFSET = {f.offset: f for f in COMMON_FIELDS}
_MASK32 = 0xFFFF_FFFF


def field_at(offset: int) -> Field | None:
    """The field whose offset is ``offset``."""
    return _BY_OFFSET.get(offset)


class Hooks:
    """What the structure asks of its transport when a field's write has an effect."""

    def __init__(
        self,
        device_features: int,
        vectors: Callable[[], int],
        set_status: Callable[[int], None],
        queue_enabled: Callable[[VirtQueue], None],
        driver_error: Callable[[str], None],
        vectors_changed: Callable[[], None],
    ) -> None:
        self.device_features = device_features
        self.vectors = vectors
        self.set_status = set_status
        self.queue_enabled = queue_enabled
        self.driver_error = driver_error
        self.vectors_changed = vectors_changed


class CommonConfig:
    """The structure's state: selects, features, status, vectors and the queues."""

    def __init__(self, queue_sizes: tuple[int, ...], hooks: Hooks) -> None:
        self.hooks = hooks
        self.queues = [VirtQueue(i, size) for i, size in enumerate(queue_sizes)]
        self._absent: dict[int, VirtQueue] = {}
        self.device_feature_select = self.driver_feature_select = 0
        self.driver_features = 0
        self.config_msix_vector = NO_VECTOR
        self.status = 0
        self.generation = 0
        self.queue_select = 0

    def reset(self) -> None:
        """Device reset: status, features, vectors and queues; the selects stay."""
        self.driver_features = 0
        self.config_msix_vector = NO_VECTOR
        self.status = 0
        self.queue_select = 0
        for queue in (*self.queues, *self._absent.values()):
            queue.reset()

    def power_on(self) -> None:
        """The function's reset: a device reset, the selects and absent queues forgotten."""
        self.reset()
        self.device_feature_select = self.driver_feature_select = 0
        self._absent.clear()

    @property
    def selected(self) -> VirtQueue:
        """The queue queue_select names (one that does not exist has size 0)."""
        index = self.queue_select
        if index < len(self.queues):
            return self.queues[index]
        return self._absent.setdefault(index, VirtQueue(index, 0))

    # -- accesses -------------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        field = field_at(offset)
        if field is None:
            return 0
        return _READS[field.name](self) & ((1 << (8 * size)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        field = field_at(offset)
        if field is None or not field.writable:
            return
        _WRITES[field.name](self, value & ((1 << (8 * size)) - 1))

    # -- field rules --------------------------------------------------------------------------

    def _features_read(self, select: int, features: int) -> int:
        return features >> (32 * select) & _MASK32 if select < 2 else 0

    def _write_driver_feature(self, value: int) -> None:
        select = self.driver_feature_select
        if select < 2:
            shift = 32 * select
            self.driver_features = self.driver_features & ~(_MASK32 << shift) | value << shift

    def _vector(self, value: int) -> int:
        return value if value < self.hooks.vectors() else NO_VECTOR

    def _write_queue_select(self, value: int) -> None:
        if value < QUEUE_LIMIT:
            self.queue_select = value

    def _write_queue_size(self, value: int) -> None:
        queue = self.selected
        if queue.max_size and 0 < value <= QUEUE_SIZE_LIMIT:
            queue.set_size(value)

    def _write_queue_enable(self, value: int) -> None:
        if value != 1:
            self.hooks.driver_error(f"queue {self.queue_select}: queue_enable written {value}")
            return
        queue = self.selected
        queue.enable()
        self.hooks.queue_enabled(queue)

    def _write_queue_reset(self, value: int) -> None:
        if value == 1:
            self.selected.queue_reset()
            self.hooks.vectors_changed()

    def _write_vector(self, queue: VirtQueue | None, value: int) -> None:
        if queue is None:
            self.config_msix_vector = self._vector(value)
        else:
            queue.msix_vector = self._vector(value)
        self.hooks.vectors_changed()

    def vectors_in_use(self) -> set[int]:
        """The MSI-X vectors the configuration and the queues are mapped to."""
        queues = (*self.queues, *self._absent.values())
        return {self.config_msix_vector, *(q.msix_vector for q in queues)} - {NO_VECTOR}

    def _set_address(self, name: str, high: bool, value: int) -> None:
        queue = self.selected
        old = getattr(queue, name)
        new = (old & _MASK32) | value << 32 if high else (old & ~_MASK32) | value
        setattr(queue, name, new)


def _address_read(ring: str, shift: int) -> Callable[[CommonConfig], int]:
    def read(config: CommonConfig) -> int:
        return int(getattr(config.selected, ring)) >> shift & _MASK32

    return read


def _address_write(ring: str, high: bool) -> Callable[[CommonConfig, int], None]:
    def write(config: CommonConfig, value: int) -> None:
        config._set_address(ring, high, value)

    return write


def _address_rules() -> tuple[
    dict[str, Callable[[CommonConfig], int]], dict[str, Callable[[CommonConfig, int], None]]
]:
    """Each ring address's two halves: ``queue_desc_lo`` ... ``queue_device_hi``."""
    reads: dict[str, Callable[[CommonConfig], int]] = {}
    writes: dict[str, Callable[[CommonConfig, int], None]] = {}
    for ring in ("desc", "driver", "device"):
        for high in (False, True):
            name = f"queue_{ring}_{'hi' if high else 'lo'}"
            reads[name] = _address_read(ring, 32 if high else 0)
            writes[name] = _address_write(ring, high)
    return reads, writes


_ADDRESS_READS, _ADDRESS_WRITES = _address_rules()
_READS: dict[str, Callable[[CommonConfig], int]] = {
    "device_feature_select": lambda c: c.device_feature_select,
    "device_feature": lambda c: c._features_read(c.device_feature_select, c.hooks.device_features),
    "driver_feature_select": lambda c: c.driver_feature_select,
    "driver_feature": lambda c: c._features_read(c.driver_feature_select, c.driver_features),
    "config_msix_vector": lambda c: c.config_msix_vector,
    "num_queues": lambda c: len(c.queues),
    "device_status": lambda c: c.status,
    "config_generation": lambda c: c.generation,
    "queue_select": lambda c: c.queue_select,
    "queue_size": lambda c: c.selected.size if c.selected.max_size else 0,
    "queue_msix_vector": lambda c: c.selected.msix_vector,
    "queue_enable": lambda c: int(c.selected.enabled),
    "queue_notify_off": lambda c: c.queue_select,
    "queue_notif_config_data": lambda c: 0,
    "queue_reset": lambda c: 0,
    "admin_queue_index": lambda c: 0,
    "admin_queue_num": lambda c: 0,
    **_ADDRESS_READS,
}
_WRITES: dict[str, Callable[[CommonConfig, int], None]] = {
    "device_feature_select": lambda c, v: setattr(c, "device_feature_select", v & _MASK32),
    "driver_feature_select": lambda c, v: setattr(c, "driver_feature_select", v & _MASK32),
    "driver_feature": CommonConfig._write_driver_feature,
    "config_msix_vector": lambda c, v: c._write_vector(None, v),
    "device_status": lambda c, v: c.hooks.set_status(v & 0xFF),
    "queue_select": CommonConfig._write_queue_select,
    "queue_size": CommonConfig._write_queue_size,
    "queue_msix_vector": lambda c, v: c._write_vector(c.selected, v),
    "queue_enable": CommonConfig._write_queue_enable,
    "queue_reset": CommonConfig._write_queue_reset,
    **_ADDRESS_WRITES,
}

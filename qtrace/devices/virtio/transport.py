"""The virtio-pci modern transport (virtio 1.x, 4.1), for any virtio device type.

Why one transport: every virtio-pci device presents the same structures (common
configuration, notifications, ISR status, device-specific configuration, PCI configuration
access) and signals the same way (MSI-X, else INTx with ISR); only the device type behind
them differs. :class:`VirtioPci` is the PCI function; a :class:`DeviceType` (the entropy
device, ...) supplies its ID, features, queues, configuration and what it does with
buffers. Where the structures are comes from a :class:`~qtrace.devices.virtio.layout.
VirtioPciLayout`, itself read from the device's capabilities or a trace's regions.

Signalling (4.1.5.4-4.1.5.5): a used-buffer notification sets ISR bit 0; with MSI-X
enabled it is the queue's vector's message (none for NO_VECTOR), without it INTx is
asserted while ISR bit 0 is set. Reading ISR returns it, clears it and deasserts INTx.
As QEMU 10.2.2 does it (observed): ISR bit 0 is set with MSI-X enabled too; a notification
the driver suppressed sets nothing; a configuration-change notification sets ISR bits 0 and
1; a COMMAND write that leaves bus mastering off clears DRIVER_OK (the device stops), but
the device's DMA does not depend on bus mastering (QEMU's virtio DMA goes to system memory
unless VIRTIO_F_IOMMU_PLATFORM is negotiated): a driver that sets DRIVER_OK again with
bus mastering off gets its buffers used; only MSI-X messages are dropped then.

Other rules, from the specification: the PCI configuration access capability's bar, offset
and length fields are writable and its pci_cfg_data is a window of length bytes at offset of
that BAR (4.1.4.9), every configuration access to pci_cfg_data making the BAR access (QEMU
10.2.2 differs, observed: it ignores cap.bar and always addresses the BAR of the other
structures, and takes an offset that is not a multiple of the length (which a driver must
not write) rounded down to one; the model does the same); a driver error the device detects
on a ring (a head beyond the table, the index moved by more than the size, a loop; QEMU
10.2.2 also takes a 0 written to queue_enable as one) makes the device use no buffer until
reset and, with VERSION_1 negotiated, sets DEVICE_NEEDS_RESET and sends a configuration-
change notification (2.1.2; QEMU 10.2.2 sends it only once DRIVER_OK is set and shows
nothing without VERSION_1, observed). The legacy interface (the transitional I/O BAR) is not
modelled: accesses there raise ``Unimplemented``.

Explaining (``--explain``): :meth:`VirtioPci.enable_provenance` watches the transport's state
(:mod:`qtrace.devices.virtio.explain`) and the hooks narrate notifications, resets, queue
enables, negotiation, driver errors and through which path an interrupt went.

Accesses of 8 bytes to the common, ISR, notification and device structures are two 4-byte
accesses, low half first (QEMU's memory core splits them, observed).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

from qtrace.devices.virtio.common_cfg import (
    NO_VECTOR,
    STATUS_DRIVER_OK,
    STATUS_FEATURES_OK,
    STATUS_NEEDS_RESET,
    CommonConfig,
    Hooks,
    field_at,
)
from qtrace.devices.virtio.layout import (
    CFG_COMMON,
    CFG_DEVICE,
    CFG_ISR,
    CFG_NOTIFY,
    CFG_PCI,
    VENDOR_CAP_ID,
    Structure,
    VirtioPciLayout,
)
from qtrace.devices.virtio import explain
from qtrace.devices.virtio.virtqueue import Memory, RingError, VirtQueue
from qtrace.refemu.bus import CallRegion, Region
from qtrace.refemu.capability import Capability
from qtrace.refemu.intx import IntxPin
from qtrace.refemu.irq import IrqLine
from qtrace.refemu.msix import Msix
from qtrace.refemu.pci import COMMAND_INTX_DISABLE, PciFunction, PciIdentity
from qtrace.refemu.provenance import Place, Provenance
from qtrace.refemu.regmap import RegisterMap, Unimplemented

__all__ = ["DeviceType", "VirtioPci", "transitional_id"]

logger = logging.getLogger(__name__)

VENDOR = 0x1AF4
MODERN_ID_BASE = 0x1040
# Transitional PCI device IDs (4.1.2.1), by virtio device ID.
TRANSITIONAL_IDS = {1: 0x1000, 2: 0x1001, 5: 0x1002, 3: 0x1003, 8: 0x1004, 4: 0x1005, 9: 0x1009}
ISR_QUEUE, ISR_CONFIG = 0x1, 0x3  # a configuration change sets bit 0 too (observed)
FEATURE_INDIRECT_DESC = 1 << 28
FEATURE_EVENT_IDX = 1 << 29
FEATURE_VERSION_1 = 1 << 32
_STRUCTURE_NAMES = {
    CFG_COMMON: "common",
    CFG_ISR: "isr",
    CFG_DEVICE: "device",
    CFG_NOTIFY: "notify",
}
_MASK32 = 0xFFFF_FFFF
_COMMAND, _COMMAND_MASTER = 0x04, 0x0004
_LEGACY = "the virtio legacy interface (transitional I/O BAR) is not modelled"


def transitional_id(device_id: int) -> int | None:
    """The transitional PCI device ID of a virtio device type, if it has one."""
    return TRANSITIONAL_IDS.get(device_id)


class DeviceType(Protocol):
    """A virtio device type on the transport: what the specification's chapter gives it.

    Attributes:
        device_id: The virtio device ID (4: entropy).
        class_code: The PCI class the device presents.
        features: The feature bits it offers, transport bits included.
        queue_sizes: Each queue's maximum size.
        config_bytes: The length of its device-specific configuration.
    """

    device_id: int
    class_code: int
    features: int
    queue_sizes: tuple[int, ...]
    config_bytes: int

    def bind(self, transport: VirtioPci) -> None:
        """Plugged into ``transport`` (for DMA, queues and notifications)."""
        ...

    def reset(self) -> None:
        """Device reset."""
        ...

    def config_read(self, offset: int, size: int) -> int:
        """A read of the device-specific configuration (within ``config_bytes``)."""
        ...

    def config_write(self, offset: int, size: int, value: int) -> None:
        """A write to the device-specific configuration."""
        ...

    def queue_notified(self, queue: VirtQueue) -> None:
        """The driver sent an available-buffer notification for ``queue``."""
        ...

    def status_changed(self, old: int, new: int) -> None:
        """device_status went from ``old`` to ``new`` (neither a reset)."""
        ...

    def settle(self) -> bool:
        """Run work QEMU does in a bottom half or thread; True if anything ran."""
        ...


def _vendor_cap(structure: Structure) -> Capability:
    """struct virtio_pci_cap (4.1.4) for ``structure``: read-only, except the PCI
    configuration access capability's bar, offset, length and data (4.1.4.9)."""
    body = bytes((structure.cap_length, structure.cfg_type, structure.bar, 0, 0, 0))
    body += structure.offset.to_bytes(4, "little") + structure.length.to_bytes(4, "little")
    wmask = b""
    if structure.cfg_type == CFG_NOTIFY:
        body += structure.notify_multiplier.to_bytes(4, "little")
    elif structure.cfg_type == CFG_PCI:
        body += bytes(4)
        wmask = bytes((0, 0, 0xFF, 0, 0, 0)) + b"\xff" * 12
    return Capability(VENDOR_CAP_ID, structure.cap_offset, body, wmask)


class VirtioPci:
    """A virtio-pci function: the transport's structures around ``device``.

    Args:
        device: The device type (its ID, features, queues, configuration, behaviour).
        layout: Where the structures, MSI-X and BARs are.
        name: The PCI function's name.
        transitional: Whether the function has the legacy interface (transitional PCI
            device ID, revision 0, subsystem ID = device ID); default: when the layout has
            an I/O BAR.

    Attributes:
        irq: The INTx line; ``isr``: the ISR status; ``common``: the common configuration.
        unimplemented_features: Counts of what the guest used that the model skips.
    """

    io_registers = RegisterMap(())
    mmio_registers = RegisterMap(())
    compare_dma_reads = False
    """QEMU reads ring indexes as often as its code needs (several times per request); the
    specification does not fix how often a device reads them, so a replay compares what
    the device writes (the used ring, the buffers, the messages), not its reads."""

    def __init__(
        self,
        device: DeviceType,
        layout: VirtioPciLayout,
        name: str = "virtio",
        transitional: bool | None = None,
    ) -> None:
        self.device = device
        self.layout = layout
        self.irq = IrqLine(f"{name}/INTx")
        self.unimplemented_features: Counter[str] = Counter()
        self.isr = 0
        self._routes: dict[tuple[int, int], tuple[int, int, Region | None]] = {}
        self.features = 0  # negotiated: taken at FEATURES_OK
        self.broken = False
        self.provenance: Provenance | None = None  # set by enable_provenance (--explain)
        legacy = any(bar.io for bar in layout.bars) if transitional is None else transitional
        self.pci = PciFunction(
            name,
            self._identity(device, legacy),
            [(bar, self._bar_region(bar.index, bar.io)) for bar in layout.bars],
            capabilities=self._capabilities(),
            device_specific_writable=True,
        )
        self.pci.dma_ignores_master = True  # see the module docstring
        self.intx = IntxPin(self.pci, self.irq)
        if self.msix is not None:
            self.msix.bind(self.pci, on_enable=lambda: self.intx.set(False))
        self.memory = Memory(self.pci.dma_read, self.pci.dma_write)
        self.common = CommonConfig(
            device.queue_sizes,
            Hooks(
                device.features,
                self._vectors,
                self._set_status,
                self._queue_enabled,
                self.driver_error,
                self._release_vectors,
            ),
        )
        self._pci_cfg = layout.first(CFG_PCI)
        self.pci.config_read_listeners.append(self._config_read)
        self.pci.config_listeners.append(self._config_written)
        device.bind(self)
        self.reset()

    # -- building ------------------------------------------------------------------------

    @staticmethod
    def _identity(device: DeviceType, legacy: bool) -> PciIdentity:
        pci_id = transitional_id(device.device_id) if legacy else None
        return PciIdentity(
            vendor_id=VENDOR,
            device_id=pci_id if pci_id is not None else MODERN_ID_BASE + device.device_id,
            class_code=device.class_code,
            revision=0 if pci_id is not None else 1,
            subsystem_vendor_id=VENDOR,
            subsystem_id=device.device_id if pci_id is not None else 0x1100,
            interrupt_pin=1,
            command_wmask=0x0507,  # as QEMU 10.2.2 presents it (observed)
            latency_writable=False,
        )

    def _capabilities(self) -> list[Capability]:
        place = self.layout.msix
        self.msix = (
            None
            if place is None
            else Msix(
                place.cap_offset,
                place.vectors,
                place.table_bar,
                place.table_offset,
                place.pba_bar,
                place.pba_offset,
            )
        )
        by_offset = {s.cap_offset: _vendor_cap(s) for s in self.layout.structures}
        if self.msix is not None:
            by_offset[self.msix.offset] = self.msix.capability()
        return [by_offset[offset] for offset in self.layout.cap_order if offset in by_offset]

    def _bar_region(self, index: int, io: bool) -> CallRegion:
        if io:
            return CallRegion(self.io_read, self.io_write)
        return CallRegion(
            lambda offset, size: self.bar_read(index, offset, size),
            lambda offset, size, value: self.bar_write(index, offset, size, value),
        )

    # -- reset and the PciDevice protocol ---------------------------------------------------------

    def reset(self) -> None:
        """Power-on reset of the function."""
        self.pci.reset()
        if self.msix is not None:
            self.msix.reset()
        self.common.power_on()
        self._device_reset()

    def _device_reset(self) -> None:
        self.isr = 0
        self.features = 0
        self.broken = False
        self.intx.set(False)
        self.device.reset()
        self._release_vectors()

    def _release_vectors(self) -> None:
        """A vector nothing is mapped to any more loses its pending bit (QEMU 10.2.2,
        observed: a device reset clears the PBA)."""
        if self.msix is not None:
            for vector in range(self.msix.vectors):
                if vector not in self.common.vectors_in_use():
                    self.msix.pending &= ~(1 << vector)

    @property
    def irq_level(self) -> bool:
        return self.irq.level

    def mmio_read(self, offset: int, size: int) -> int:
        """A read at ``offset`` of the BAR holding the common configuration."""
        return self.bar_read(self._main_bar(), offset, size)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.bar_write(self._main_bar(), offset, size, value)

    def io_read(self, offset: int, size: int) -> int:
        """The legacy interface's I/O BAR: not modelled."""
        raise Unimplemented("pio", offset, f"legacy+{offset:#x}", _LEGACY)

    def io_write(self, offset: int, size: int, value: int) -> None:
        raise Unimplemented("pio", offset, f"legacy+{offset:#x}", _LEGACY)

    def settle(self, *, timers: bool = False) -> bool:
        """Run the device's bottom-half work (it has no timers of its own)."""
        return self.device.settle()

    def advance(self, ns: int) -> None:
        """The virtual clock moved: nothing of the transport's is timed."""

    def note_unimplemented(self, feature: str) -> None:
        self.unimplemented_features[feature] += 1

    # -- explaining (qtrace verify --explain) ------------------------------------------------------

    def enable_provenance(self, provenance: Provenance) -> None:
        """Watch the transport's state in ``provenance``; the hooks narrate from now on."""
        self.provenance = provenance
        explain.watch(self, provenance)

    def state_at(self, bar: int, offset: int) -> Place:
        """Where the state an access at ``offset`` of ``bar`` is kept now (explaining)."""
        return explain.state_at(self, bar, offset)

    def line_reason(self) -> str:
        """Why INTx has its level: ISR bit 0, MSI-X, COMMAND's INTx disable."""
        text = f"ISR {self.isr:#x}"
        if self.msix is not None and self.msix.enabled:
            return text + "; MSI-X is enabled, so INTx stays low"
        text += ": bit 0 set, INTx asserted" if self.intx.asserted else ": INTx deasserted"
        if self.pci.command & COMMAND_INTX_DISABLE:
            text += "; COMMAND.INTX_DISABLE is set, so the line stays low"
        return text

    def narrate(self, text: str) -> None:
        """While explaining: say what the device did (for the transport and device types)."""
        if self.provenance is not None:
            self.provenance.note(text)

    def doing(self, text: Callable[[], str]) -> AbstractContextManager[None]:
        """While explaining, changes in the block carry ``text()``; otherwise nothing."""
        return nullcontext() if self.provenance is None else self.provenance.detail(text())

    def _main_bar(self) -> int:
        common = self.layout.first(CFG_COMMON)
        return 0 if common is None else common.bar

    # -- names ------------------------------------------------------------------------------------

    def bar_register_name(self, bar: int, offset: int) -> str:
        """``common.queue_size``, ``isr``, ``notify+0x4``, ``msix.table+0x10``, ..."""
        msix = self.msix
        if (
            msix is not None
            and bar == msix.table_bar
            and 0 <= offset - msix.table_offset < msix.table_bytes
        ):
            return f"msix.table+{offset - msix.table_offset:#x}"
        if (
            msix is not None
            and bar == msix.pba_bar
            and 0 <= offset - msix.pba_offset < msix.pba_bytes
        ):
            return f"msix.pba+{offset - msix.pba_offset:#x}"
        structure = self.layout.structure_at(bar, offset)
        if structure is None:
            return f"bar{bar}+{offset:#x}"
        inside = offset - structure.offset
        name = _STRUCTURE_NAMES.get(structure.cfg_type, "?")
        if structure.cfg_type == CFG_COMMON:
            found = field_at(inside)
            return f"common.{found.name}" if found is not None else f"common+{inside:#x}"
        return f"{name}+{inside:#x}" if inside else name

    # -- the BARs ----------------------------------------------------------------------------------

    def bar_read(self, bar: int, offset: int, size: int) -> int:
        """A read of ``size`` bytes at ``offset`` of ``bar``."""
        if size == 8:
            return self.bar_read(bar, offset, 4) | self.bar_read(bar, offset + 4, 4) << 32
        kind, inside, region = self._route(bar, offset)
        if region is not None:
            return region.read(inside, size)
        if kind == CFG_COMMON:
            return self.common.read(inside, size)
        if kind == CFG_ISR:
            return self._read_isr()
        if kind == CFG_DEVICE:
            if inside + size > self.device.config_bytes:
                return (1 << (8 * size)) - 1  # beyond the configuration: all ones (observed)
            return self.device.config_read(inside, size)
        return 0  # notification (write-only), or nothing there

    def bar_write(self, bar: int, offset: int, size: int, value: int) -> None:
        """A write of ``size`` bytes at ``offset`` of ``bar``."""
        if size == 8:
            self.bar_write(bar, offset, 4, value & _MASK32)
            self.bar_write(bar, offset + 4, 4, value >> 32 & _MASK32)
            return
        kind, inside, region = self._route(bar, offset)
        if region is not None:
            region.write(inside, size, value)
        elif kind == CFG_COMMON:
            self.common.write(inside, size, value)
            if self.provenance is not None:
                explain.wrote(self, self.provenance, bar, offset, size)
        elif kind == CFG_DEVICE:
            if inside + size <= self.device.config_bytes:
                self.device.config_write(inside, size, value)
        elif kind == CFG_NOTIFY:
            self._notified(inside)

    def _route(self, bar: int, offset: int) -> tuple[int, int, Region | None]:
        """(structure type, offset in it, the MSI-X region if it is one) of a BAR offset;
        type 0 where nothing is. Remembered: the layout does not change."""
        found = self._routes.get((bar, offset))
        if found is None:
            found = self._routes[(bar, offset)] = self._find_route(bar, offset)
        return found

    def _find_route(self, bar: int, offset: int) -> tuple[int, int, Region | None]:
        msix = self.msix
        if msix is not None:
            if bar == msix.table_bar and 0 <= offset - msix.table_offset < msix.table_bytes:
                return 0, offset - msix.table_offset, msix.table_region
            if bar == msix.pba_bar and 0 <= offset - msix.pba_offset < msix.pba_bytes:
                return 0, offset - msix.pba_offset, msix.pba_region
        structure = self.layout.structure_at(bar, offset)
        if structure is None:
            return 0, 0, None
        return structure.cfg_type, offset - structure.offset, None

    # -- ISR, notifications, interrupts ------------------------------------------------------------

    def _read_isr(self) -> int:
        value, self.isr = self.isr, 0
        self.intx.set(False)
        return value

    def _notified(self, inside: int) -> None:
        multiplier = self.layout.notify_multiplier
        index = inside // multiplier if multiplier else 0
        if index < len(self.common.queues):
            if self.provenance is None:
                self.device.queue_notified(self.common.queues[index])
                return
            self.provenance.note(f"queue {index} notified (available buffers)")
            with self.provenance.detail(f"queue {index} notified"):
                self.device.queue_notified(self.common.queues[index])

    def _vectors(self) -> int:
        return 0 if self.msix is None else self.msix.vectors

    def notify_queue(self, queue: VirtQueue) -> None:
        """A used-buffer notification for ``queue`` (the device type decided one is due)."""
        with self.doing(lambda: f"used-buffer notification for queue {queue.index}"):
            self._signal(ISR_QUEUE, queue.msix_vector)

    def notify_config(self) -> None:
        """A configuration-change notification: config_generation moves on (4.1.4.3.1)."""
        with self.doing(lambda: "configuration-change notification"):
            self.common.generation = (self.common.generation + 1) & 0xFF
            self._signal(ISR_CONFIG, self.common.config_msix_vector)

    def adopt(self, bar: int | None, offset: int, size: int, value: int) -> None:
        """Take QEMU's config_generation (the live test's setup): QEMU 10.2.2 never resets
        it, neither at a device reset nor at a machine reset (observed), and no driver
        access sets it, so a fresh model starts from QEMU's count."""
        common = self.layout.first(CFG_COMMON)
        if common is None or bar != common.bar or field_at(offset - common.offset) is None:
            raise ValueError(f"nothing to adopt at bar {bar} offset {offset:#x}")
        if field_at(offset - common.offset).name != "config_generation":  # type: ignore[union-attr]
            raise ValueError(f"only config_generation is adopted, not offset {offset:#x}")
        self.common.generation = value & 0xFF

    def _signal(self, isr_bit: int, vector: int) -> None:
        self.isr |= isr_bit
        if self.broken:  # a broken device signals nothing more (QEMU 10.2.2, observed)
            self.narrate("the device is broken: nothing is signalled")
            return
        if self.msix is not None and self.msix.enabled:
            if vector == NO_VECTOR:
                self.narrate("no MSI-X vector mapped (NO_VECTOR): no message")
            elif self.msix.masked(vector):
                self.narrate(f"MSI-X vector {vector} is masked: its pending bit is set")
                self.msix.notify(vector)
            else:
                with self.doing(lambda: f"MSI-X is enabled: vector {vector}'s message"):
                    self.msix.notify(vector)
        else:
            with self.doing(lambda: "MSI-X is off: INTx follows ISR bit 0"):
                self.intx.set(bool(self.isr))

    # -- status and queues -------------------------------------------------------------------------

    def _set_status(self, value: int) -> None:
        if value == 0:
            self.narrate("device reset: status, features, queues, ISR and vectors to their "
                         "reset values (the selects stay)")  # fmt: skip
            with self.doing(lambda: "device reset (device_status written 0)"):
                self.common.reset()
                self._device_reset()
            return
        old = self.common.status
        self.common.status = value
        if value & STATUS_FEATURES_OK and not old & STATUS_FEATURES_OK:
            self.features = self.common.driver_features & self.device.features
            self.narrate(f"FEATURES_OK: the device takes the features {self.features:#x} "
                         "(the driver's and its own)")  # fmt: skip
        self.device.status_changed(old, value)
        # Stored again after the device saw it: an error it found meanwhile sets
        # DEVICE_NEEDS_RESET, which this write then overwrites (QEMU 10.2.2, observed).
        self.common.status = value

    def _queue_enabled(self, queue: VirtQueue) -> None:
        logger.debug("virtio queue %d enabled (size %d)", queue.index, queue.size)
        if self.provenance is not None:
            self.provenance.note(
                f"queue {queue.index} enabled: size {queue.size}, descriptor table "
                f"{queue.desc:#x}, available ring {queue.driver:#x}, used ring {queue.device:#x}"
            )

    def negotiated(self, feature: int) -> bool:
        """Whether ``feature`` was negotiated: offered, written by the driver and taken by
        the device when a device_status write set FEATURES_OK (3.1.1; a later
        driver_feature write changes what the register shows, not what the device uses,
        until FEATURES_OK is set again after a reset; observed)."""
        return bool(self.features & feature)

    def ring_error(self, error: RingError) -> None:
        """The driver broke a ring rule (see :meth:`driver_error`)."""
        self.driver_error(str(error))

    def driver_error(self, reason: str) -> None:
        """The driver broke a rule the device checks: the device takes no more buffers until
        it is reset; with VERSION_1 negotiated it sets DEVICE_NEEDS_RESET and, once
        DRIVER_OK is set, sends a configuration-change notification (2.1.2; QEMU 10.2.2
        sends none before DRIVER_OK, observed)."""
        logger.debug("virtio: %s", reason)
        self.narrate(f"driver error: {reason}; the device takes no more buffers until reset")
        if self.negotiated(FEATURE_VERSION_1):
            self.common.status |= STATUS_NEEDS_RESET
            if self.common.status & STATUS_DRIVER_OK:
                self.notify_config()
        self.broken = True

    # -- the PCI configuration access capability (4.1.4.9) -----------------------------------------

    def _window(self) -> tuple[int, int, int, int] | None:
        """(data offset, bar, offset, length) when the window addresses a BAR."""
        cap = self._pci_cfg
        if cap is None:
            return None
        at = cap.cap_offset
        bar = self._main_bar()  # not cap.bar: QEMU 10.2.2 ignores it (observed)
        length = self.pci.config_read_raw(at + 12, 4)
        if length not in (1, 2, 4):
            return None
        offset = self.pci.config_read_raw(at + 8, 4) // length * length
        sizes = {b.index: b.size_bytes for b in self.layout.bars if not b.io}
        if offset + length > sizes.get(bar, 0):
            return None
        return at + 16, bar, offset, length

    def _config_read(self, offset: int, size: int) -> None:
        window = self._window()
        if window is None or not (offset < window[0] + 4 and offset + size > window[0]):
            return
        data_at, bar, bar_offset, length = window
        value = self.bar_read(bar, bar_offset, length)
        self.pci.config_put(data_at, length, value)

    def _config_written(self, offset: int, size: int) -> None:
        covers_command = offset <= _COMMAND + 1 and offset + size > _COMMAND
        if covers_command and not self.pci.command & _COMMAND_MASTER:
            self.common.status &= ~STATUS_DRIVER_OK  # bus mastering off: the device stops
        window = self._window()
        if window is None or not (offset < window[0] + 4 and offset + size > window[0]):
            return
        data_at, bar, bar_offset, length = window
        self.bar_write(bar, bar_offset, length, self.pci.config_read_raw(data_at, length))

    # -- for device types --------------------------------------------------------------------------

    @property
    def queues(self) -> Sequence[VirtQueue]:
        return self.common.queues

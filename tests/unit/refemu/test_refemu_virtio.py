"""The virtio-pci transport and the entropy device, against the virtio 1.x specification and
what QEMU 10.2.2 was seen to do under qtest."""

from __future__ import annotations

import struct

from qtrace.devices.virtio.common_cfg import NO_VECTOR
from qtrace.devices.virtio.layout import (
    CFG_COMMON,
    CFG_NOTIFY,
    VirtioPciLayout,
    qemu_default_layout,
)
from qtrace.devices.virtio.rng import VirtioRngPci
from qtrace.refemu import RefMachine
from qtrace.refemu.pci import DMA_RANDOM_WRITE
from qtrace.trace.schema import Region

MEM, MSIX = 0xFE00_0000, 0xFEBF_0000
DESC, AVAIL, USED, BUF = 0x30_0000, 0x30_0100, 0x30_0200, 0x30_1000


def _machine() -> tuple[RefMachine, VirtioRngPci]:
    machine = RefMachine()
    rng = machine.plug(5, VirtioRngPci())
    machine.config_write(5, 0x14, 4, MSIX)
    machine.config_write(5, 0x20, 4, MEM)
    machine.config_write(5, 0x24, 4, 0)
    machine.config_write(5, 0x04, 2, 0x0007)
    return machine, rng


def _common(machine: RefMachine, offset: int, size: int, value: int | None = None) -> int:
    if value is None:
        return machine.read(MEM + offset, size)
    machine.write(MEM + offset, size, value)
    return 0


def _initialise(machine: RefMachine, features_hi: int = 1, size: int = 8) -> None:
    for status in (0, 1, 3):
        _common(machine, 0x14, 1, status)
    for select, value in ((0, 0), (1, features_hi)):
        _common(machine, 0x08, 4, select)
        _common(machine, 0x0C, 4, value)
    _common(machine, 0x14, 1, 0x0B)
    _common(machine, 0x16, 2, 0)
    _common(machine, 0x18, 2, size)
    for offset, addr in ((0x20, DESC), (0x28, AVAIL), (0x30, USED)):
        _common(machine, offset, 4, addr)
    _common(machine, 0x1C, 2, 1)
    _common(machine, 0x14, 1, 0x0F)


def _offer(
    machine: RefMachine, *descriptors: tuple[int, int, int, int], heads: tuple[int, ...] = (0,)
) -> None:
    for index, (addr, length, flags, following) in enumerate(descriptors):
        machine.memory.write(
            DESC + 16 * index, struct.pack("<QIHH", addr, length, flags, following)
        )
    ring = struct.pack(f"<HH{len(heads)}H", 0, len(heads), *heads)
    machine.memory.write(AVAIL, ring)


def test_configuration_space_is_what_qemu_presents() -> None:
    machine, _ = _machine()
    config = bytes(machine.config_read(5, offset, 1) for offset in range(256))
    assert config[:4] == bytes.fromhex("f41a0510")  # transitional 1af4:1005, entropy
    assert config[0x08:0x0C] == bytes.fromhex("0000ff00") and config[0x2C:0x30] == bytes.fromhex(
        "f41a0400"
    )
    assert config[0x34] == 0x98 and config[0x98:0xA4] == bytes.fromhex("118401000100000001080000")
    assert config[0x40:0x50] == bytes.fromhex("09001001040000000000000000100000")
    assert config[0x70:0x84] == bytes.fromhex("0960140204000000003000000010000004000000")
    layout = VirtioPciLayout.from_config_space(config)
    assert layout == qemu_default_layout()  # the layout is read back from the capabilities


def test_layout_follows_a_traces_regions() -> None:
    regions = [
        Region("virtio-pci", 4, 0, 0x8000, "container", "mmio", 0),
        Region("virtio-pci-common-virtio-rng", 4, 0x4000, 0x800, "io", "mmio", 1),
        Region("msix-table", 2, 0x100, 64, "io", "mmio", 1),
        Region("msix-pba", 2, 0x900, 8, "io", "mmio", 1),
    ]
    layout = qemu_default_layout().with_regions(regions)
    common = layout.first(CFG_COMMON)
    assert common is not None and (common.bar, common.offset, common.length) == (4, 0x4000, 0x800)
    assert layout.msix is not None and (layout.msix.vectors, layout.msix.table_bar) == (4, 2)
    assert next(b for b in layout.bars if b.index == 4).size_bytes == 0x8000


def test_features_selects_and_reset() -> None:
    machine, _ = _machine()
    assert _common(machine, 0x04, 4) == 0x3000_0000  # INDIRECT_DESC, EVENT_IDX
    _common(machine, 0x00, 4, 1)
    assert _common(machine, 0x04, 4) == 0x101  # VERSION_1, RING_RESET
    _common(machine, 0x00, 4, 2)
    assert _common(machine, 0x04, 4) == 0
    _common(machine, 0x08, 4, 0)
    _common(machine, 0x0C, 4, 0xFFFF_FFFF)  # kept as written, offered or not
    assert _common(machine, 0x0C, 4) == 0xFFFF_FFFF
    _common(machine, 0x14, 1, 0)  # device reset: features go, the selects stay
    assert _common(machine, 0x0C, 4) == 0 and _common(machine, 0x00, 4) == 2


def test_queue_fields_and_vectors() -> None:
    machine, _ = _machine()
    assert (_common(machine, 0x12, 2), _common(machine, 0x18, 2)) == (1, 8)
    _common(machine, 0x18, 2, 0)  # ignored
    _common(machine, 0x18, 2, 3)  # not only powers of 2
    assert _common(machine, 0x18, 2) == 3
    _common(machine, 0x1A, 2, 1)
    assert _common(machine, 0x1A, 2) == 1
    _common(machine, 0x1A, 2, 2)  # beyond the 2-entry table: not mapped
    assert _common(machine, 0x1A, 2) == NO_VECTOR
    _common(machine, 0x16, 2, 1)  # a queue that does not exist
    assert (_common(machine, 0x18, 2), _common(machine, 0x1E, 2)) == (0, 1)
    _common(machine, 0x16, 2, 1024)  # ignored
    assert _common(machine, 0x16, 2) == 1


def test_a_request_is_filled_with_random_bytes_and_returned_with_its_length() -> None:
    machine, rng = _machine()
    transfers: list[tuple[str, int, int]] = []
    rng.pci.dma_listeners.append(lambda op, addr, data: transfers.append((op, addr, len(data))))
    _initialise(machine)
    _offer(machine, (BUF, 16, 0x2, 0))
    machine.write(MEM + 0x3000, 2, 0)  # notify queue 0
    assert machine.memory.read(USED, 4) == bytes(4)  # the bottom half has not run
    assert rng.settle()
    assert struct.unpack("<HHII", machine.memory.read(USED, 12)) == (0, 1, 0, 16)
    assert (DMA_RANDOM_WRITE, BUF, 16) in transfers
    assert rng.irq_level and machine.read(MEM + 0x1000, 1) == 1  # ISR, read to clear
    assert not rng.irq_level and machine.read(MEM + 0x1000, 1) == 0


def test_a_chain_with_nothing_writable_is_returned_only_before_one_with_room() -> None:
    machine, rng = _machine()
    _initialise(machine)
    _offer(machine, (BUF, 16, 0x0, 0), (BUF + 0x100, 8, 0x2, 0), heads=(0, 1))
    machine.write(MEM + 0x3000, 2, 0)
    rng.settle()
    idx, first, second = machine.memory.read_int(USED + 2, 2), USED + 4, USED + 12
    assert idx == 2
    assert struct.unpack("<II", machine.memory.read(first, 8)) == (0, 0)
    assert struct.unpack("<II", machine.memory.read(second, 8)) == (1, 8)


def test_a_broken_ring_sets_needs_reset_and_a_config_interrupt() -> None:
    machine, _ = _machine()
    _initialise(machine)
    machine.memory.write(AVAIL, struct.pack("<HH", 0, 20))  # moved by more than the size
    machine.write(MEM + 0x3000, 2, 0)
    assert _common(machine, 0x14, 1) == 0x4F and _common(machine, 0x15, 1) == 1
    assert machine.read(MEM + 0x1000, 1) == 0x3
    _common(machine, 0x14, 1, 0)  # the generation survives a device reset (observed)
    assert _common(machine, 0x15, 1) == 1


def test_queue_enable_other_than_1_is_a_driver_error() -> None:
    machine, _ = _machine()
    _initialise(machine)
    _common(machine, 0x1C, 2, 2)
    assert _common(machine, 0x14, 1) & 0x40


def test_msix_delivers_the_queue_vector_and_isr_still_shows_it() -> None:
    machine, rng = _machine()
    _initialise(machine)
    machine.write(MSIX + 0, 4, 0x30_2000)
    machine.write(MSIX + 8, 4, 0x1234)
    machine.write(MSIX + 12, 4, 0)
    machine.config_write(5, 0x9A, 2, 0x8000)
    _common(machine, 0x1A, 2, 0)
    _offer(machine, (BUF, 4, 0x2, 0))
    machine.write(MEM + 0x3000, 2, 0)
    rng.settle()
    assert machine.memory.read_int(0x30_2000, 4) == 0x1234 and not rng.irq_level
    assert machine.read(MEM + 0x1000, 1) == 1


def test_the_pci_configuration_window_reads_the_structures() -> None:
    machine, _ = _machine()
    _common(machine, 0x00, 4, 1)
    machine.config_write(5, 0x88, 1, 7)  # cap.bar: QEMU 10.2.2 ignores it (observed)
    machine.config_write(5, 0x8C, 4, 0x06)  # rounded down to the length (observed)
    machine.config_write(5, 0x90, 4, 4)
    assert machine.config_read(5, 0x94, 4) == 0x101  # device_feature, select 1


def test_bus_mastering_off_stops_the_device() -> None:
    machine, _ = _machine()
    _initialise(machine)
    machine.config_write(5, 0x04, 2, 0x0003)
    assert _common(machine, 0x14, 1) == 0x0B  # DRIVER_OK cleared (observed)


def test_the_notify_offset_picks_the_queue() -> None:
    layout = qemu_default_layout()
    notify = layout.first(CFG_NOTIFY)
    assert notify is not None and layout.notify_multiplier == 4 and notify.offset == 0x3000

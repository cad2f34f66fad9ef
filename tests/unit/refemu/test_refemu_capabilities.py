"""PCI capabilities, 64-bit BARs, the INTx pin, MSI and MSI-X (PCI 3.0, 6.2, 6.7, 6.8),
as the refemu base gives them to any model."""

from __future__ import annotations

import pytest

from qtrace.refemu import RefMachine
from qtrace.refemu.bus import CallRegion
from qtrace.refemu.capability import Capability
from qtrace.refemu.intx import IntxPin
from qtrace.refemu.irq import IrqLine
from qtrace.refemu.msi import Msi
from qtrace.refemu.msix import Msix
from qtrace.refemu.pci import (
    COMMAND_INTX_DISABLE,
    STATUS_CAP_LIST,
    STATUS_INTERRUPT,
    BarDef,
    PciFunction,
    PciIdentity,
)

IDENTITY = PciIdentity(
    vendor_id=0x1234, device_id=0x5678, class_code=0xFF00, interrupt_pin=1, command_wmask=0x0507
)
NOWHERE = CallRegion(lambda offset, size: 0, lambda offset, size, value: None)


def _function(**kwargs: object) -> PciFunction:
    return PciFunction("00:05.0", IDENTITY, **kwargs)  # type: ignore[arg-type]


def test_capabilities_are_linked_in_the_order_given_and_announced() -> None:
    first = Capability(0x09, 0x60, bytes((4, 7, 7)), wmask=b"\x00\xff")
    second = Capability(0x05, 0x40, bytes(4))
    fn = _function(capabilities=[first, second])
    assert fn.config_read(0x06, 2) & STATUS_CAP_LIST
    assert fn.config_read(0x34, 1) == 0x60
    assert fn.config_read(0x60, 4) == 0x07_04_40_09  # id, next -> 0x40, body
    assert fn.config_read(0x40, 2) == 0x0005  # the last one ends the list
    fn.config_write(0x60, 4, 0xFFFF_FFFF)  # id, next and the first body byte are read-only
    assert fn.config_read(0x60, 4) == 0xFF_04_40_09


def test_device_specific_bytes_are_storage_only_when_the_model_says_so() -> None:
    plain, writable = _function(), _function(device_specific_writable=True)
    for fn in (plain, writable):
        fn.config_write(0xA0, 4, 0x1234_5678)
    assert plain.config_read(0xA0, 4) == 0 and writable.config_read(0xA0, 4) == 0x1234_5678


def test_a_64_bit_bar_sizes_with_both_dwords_and_decodes_above_4_gib() -> None:
    bar = BarDef(4, 0x4000, mem64=True, prefetchable=True)
    fn = _function(bars=[(bar, NOWHERE)])
    assert fn.config_read(0x20, 4) == 0b1100  # 64-bit, prefetchable
    fn.config_write(0x20, 4, 0xFFFF_FFFF)
    fn.config_write(0x24, 4, 0xFFFF_FFFF)
    assert (fn.config_read(0x20, 4), fn.config_read(0x24, 4)) == (0xFFFF_C00C, 0xFFFF_FFFF)
    fn.config_write(0x20, 4, 0xFE00_0000)
    fn.config_write(0x24, 4, 0x1)
    fn.config_write(0x04, 2, 0x2)
    assert fn.bar_address(4) == 0x1_FE00_0000


def test_the_intx_pin_shows_in_status_and_obeys_intx_disable() -> None:
    fn, line = _function(), IrqLine()
    pin = IntxPin(fn, line)
    pin.set(True)
    assert line.level and fn.config_read(0x06, 2) & STATUS_INTERRUPT
    fn.config_write(0x04, 2, COMMAND_INTX_DISABLE)
    assert not line.level and fn.config_read(0x06, 2) & STATUS_INTERRUPT
    fn.config_write(0x04, 2, 0)
    assert line.level
    pin.set(False)
    assert not line.level and not fn.config_read(0x06, 2) & STATUS_INTERRUPT


def _msi_function() -> tuple[RefMachine, PciFunction, Msi, list[str]]:
    machine, msi, events = RefMachine(), Msi(0x40), []
    fn = _function(capabilities=[msi.capability()])
    msi.bind(fn, on_enable=lambda: events.append("enabled"))
    machine.pci.add(0, 5, 0, fn)
    fn.attach(machine.memory_space, machine.io_space, machine.memory)
    return machine, fn, msi, events


def test_msi_sends_its_message_by_bus_master_once_enabled() -> None:
    machine, fn, msi, events = _msi_function()
    fn.config_write(0x44, 4, 0x0020_0003)  # bits 1:0 are reserved
    fn.config_write(0x48, 4, 0)
    fn.config_write(0x4C, 2, 0x4321)
    assert not msi.notify()  # disabled: the device uses INTx
    fn.config_write(0x42, 2, 0x0001)
    assert events == ["enabled"] and msi.message() == (0x0020_0000, 0x4321)
    fn.config_write(0x04, 2, 0x0004)
    assert msi.notify() and machine.memory.read_int(0x0020_0000, 4) == 0x4321
    machine.memory.write_int(0x0020_0000, 4, 0)
    fn.config_write(0x04, 2, 0)  # bus mastering off: the message is dropped
    assert msi.notify() and machine.memory.read_int(0x0020_0000, 4) == 0


def test_msi_multiple_message_enable_is_cut_to_one_vector_when_enabled() -> None:
    _, fn, _, _ = _msi_function()
    fn.config_write(0x42, 2, 0x0070)
    assert fn.config_read(0x42, 2) == 0x00F0  # stored while MSI is off (observed)
    fn.config_write(0x42, 2, 0x0071)
    assert fn.config_read(0x42, 2) == 0x0081


def _msix() -> tuple[RefMachine, PciFunction, Msix]:
    machine, msix = RefMachine(), Msix(0x98, 2, 1, 0, 1, 0x800)
    fn = _function(capabilities=[msix.capability()])
    msix.bind(fn)
    machine.pci.add(0, 5, 0, fn)
    fn.attach(machine.memory_space, machine.io_space, machine.memory)
    fn.config_write(0x04, 2, 0x0004)
    return machine, fn, msix


def test_msix_capability_describes_the_table_and_the_pba() -> None:
    _, fn, msix = _msix()
    assert fn.config_read(0x98, 4) == 0x0001_0011  # table size 2 (N-1 = 1)
    assert (fn.config_read(0x9C, 4), fn.config_read(0xA0, 4)) == (0x1, 0x801)
    assert msix.table_region.read(12, 4) == 1  # every vector masked at reset
    fn.config_write(0x9A, 2, 0xFFFF)
    assert fn.config_read(0x9A, 2) == 0xC001  # only Function Mask and Enable are writable


def test_a_masked_msix_vector_is_pending_until_unmasked() -> None:
    machine, fn, msix = _msix()
    table = msix.table_region
    table.write(16, 4, 0x0030_0000)
    table.write(24, 4, 0x55)
    assert not msix.notify(1)  # MSI-X disabled
    fn.config_write(0x9A, 2, 0x8000)
    assert msix.notify(1) and msix.pba_region.read(0, 4) == 0b10
    assert machine.memory.read_int(0x0030_0000, 4) == 0
    msix.pba_region.write(0, 4, 0)  # read-only
    table.write(28, 4, 0xFFFF_FFFE)  # unmask; the reserved bits are kept (observed)
    assert table.read(28, 4) == 0xFFFF_FFFE and msix.pba_region.read(0, 4) == 0
    assert machine.memory.read_int(0x0030_0000, 4) == 0x55


def test_the_function_mask_holds_every_vector_back() -> None:
    machine, fn, msix = _msix()
    msix.table_region.write(0, 4, 0x0030_0000)
    msix.table_region.write(8, 4, 0x66)
    msix.table_region.write(12, 4, 0)
    fn.config_write(0x9A, 2, 0xC000)  # enabled, function masked
    assert msix.notify(0) and msix.pending == 1
    fn.config_write(0x9A, 2, 0x8000)
    assert msix.pending == 0 and machine.memory.read_int(0x0030_0000, 4) == 0x66


def test_msix_table_accesses_dwords_qwords_as_two_and_refuses_narrow_ones() -> None:
    _, _, msix = _msix()
    table = msix.table_region
    table.write(8, 8, 0x0000_0001_0000_5678)  # data, then Vector Control
    assert (table.read(8, 4), table.read(12, 4), table.read(8, 8)) == (0x5678, 1, 0x1_0000_5678)
    table.write(8, 2, 0xFFFF)
    assert table.read(8, 4) == 0x5678 and table.read(12, 1) == 0
    with pytest.raises(ValueError, match="not modelled"):
        table.read(2, 4)

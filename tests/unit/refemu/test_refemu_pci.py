"""PCI configuration space and mechanism #1, from the PCI Local Bus Specification."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from refemu_nic import BAR0_BASE, SLOT, Nic

from qtrace.devices.e1000.model import E1000
from qtrace.refemu import RefMachine

STATUS = 0x0008


def test_bus_scan_finds_bridge_and_e1000_and_nothing_else() -> None:
    m = RefMachine()
    m.plug(SLOT, E1000())
    # ids seen by the probe guest in QEMU 10.2.2 (ENVIRONMENT.md)
    assert m.config_read(0, 0x00, 4) == 0x12378086
    assert m.config_read(SLOT, 0x00, 4) == 0x100E8086
    assert m.config_read(5, 0x00, 4) == 0xFFFFFFFF  # no device: master abort


def test_byte_and_word_accesses_at_cfc_plus_n() -> None:
    m = RefMachine()
    m.plug(SLOT, E1000())
    m.outl(0xCF8, 0x80000000 | SLOT << 11)
    assert m.inw(0xCFC) == 0x8086
    assert m.inw(0xCFE) == 0x100E
    assert m.inb(0xCFD) == 0x80
    assert m.inb(0xCFF) == 0x10
    assert m.inl(0xCF8) == 0x80000000 | SLOT << 11


def test_enable_bit_clear_reads_all_ones() -> None:
    m = RefMachine()
    m.plug(SLOT, E1000())
    m.outl(0xCF8, SLOT << 11)
    assert m.inl(0xCFC) == 0xFFFFFFFF


def test_bar0_sizing_reads_back_128k_mask() -> None:
    m = RefMachine()
    m.plug(SLOT, E1000())
    m.config_write(SLOT, 0x10, 4, 0xFFFFFFFF)
    assert m.config_read(SLOT, 0x10, 4) == 0xFFFE0000  # 128 KiB, 32-bit memory


def test_io_bar_sizing_reads_back_64_byte_mask_with_io_bit() -> None:
    m = RefMachine()
    m.plug(SLOT, E1000())
    m.config_write(SLOT, 0x14, 4, 0xFFFFFFFF)
    assert m.config_read(SLOT, 0x14, 4) == 0xFFFFFFC1


@given(st.integers(0, 0xFFFFFFFF))
def test_bar0_keeps_only_address_bits(value: int) -> None:
    m = RefMachine()
    m.plug(SLOT, E1000())
    m.config_write(SLOT, 0x10, 4, value)
    assert m.config_read(SLOT, 0x10, 4) == value & ~(128 * 1024 - 1) & 0xFFFFFFFF


@given(st.integers(0, 0xFFFFFFFF))
def test_ids_class_and_pin_are_read_only(value: int) -> None:
    m = RefMachine()
    m.plug(SLOT, E1000())
    before = [m.config_read(SLOT, off, 4) for off in (0x00, 0x08, 0x2C)]
    pin = m.config_read(SLOT, 0x3D, 1)
    for off in (0x00, 0x08, 0x2C, 0x3C):
        m.config_write(SLOT, off, 4, value)
    assert [m.config_read(SLOT, off, 4) for off in (0x00, 0x08, 0x2C)] == before
    assert m.config_read(SLOT, 0x3D, 1) == pin == 1  # INTA#
    assert m.config_read(SLOT, 0x3C, 1) == value & 0xFF  # interrupt line is writable


def test_programming_bar0_moves_the_register_window(nic: Nic) -> None:
    m = nic.machine
    assert m.read(BAR0_BASE + STATUS, 4) == 0x80080783
    new_base = 0xE0000000
    m.config_write(SLOT, 0x10, 4, new_base)
    assert m.read(new_base + STATUS, 4) == 0x80080783
    m.write(BAR0_BASE + STATUS, 4, 0x1234)  # old place is plain RAM now
    assert m.read(BAR0_BASE + STATUS, 4) == 0x1234


def test_memory_decode_off_unmaps_bar0(nic: Nic) -> None:
    m = nic.machine
    m.config_write(SLOT, 0x04, 2, 0x0001)  # IO only
    assert m.read(BAR0_BASE + STATUS, 4) == 0  # RAM, not the device
    m.config_write(SLOT, 0x04, 2, 0x0003)
    assert m.read(BAR0_BASE + STATUS, 4) == 0x80080783


def test_sizing_pattern_never_decodes(nic: Nic) -> None:
    m = nic.machine
    m.config_write(SLOT, 0x10, 4, 0xFFFFFFFF)
    assert m.memory_space.window_of(f"00:{SLOT:02x}.0/BAR0") is None


def test_io_bar_reads_zero_as_qemu_does(nic: Nic) -> None:
    """The SDM's IOADDR/IODATA window is not what QEMU 10.2.2 does: the I/O BAR reads 0."""
    m = nic.machine
    m.outl(0xC000, STATUS)  # IOADDR
    assert m.inl(0xC000) == 0
    assert m.inl(0xC004) == 0  # IODATA
    m.config_write(SLOT, 0x04, 2, 0x0002)  # IO decode off
    assert m.inl(0xC004) == 0xFFFFFFFF


def test_command_intx_disable_masks_the_line(nic: Nic) -> None:
    nic.wr(0xD0, 0x4)
    nic.wr(0xC8, 0x4)
    assert nic.dev.irq_level
    nic.machine.config_write(SLOT, 0x04, 2, 0x0407)
    assert not nic.dev.irq_level
    nic.machine.config_write(SLOT, 0x04, 2, 0x0007)
    assert nic.dev.irq_level


def test_status_error_bits_are_write_one_to_clear() -> None:
    m = RefMachine()
    nic = m.plug(SLOT, E1000())
    nic.pci.config[0x07] = 0xF8  # pretend errors were reported
    m.config_write(SLOT, 0x06, 2, 0x0800)
    assert m.config_read(SLOT, 0x06, 2) == 0xF000


def test_unclaimed_ports_read_all_ones_and_cf9_is_not_config_address() -> None:
    m = RefMachine()
    m.plug(SLOT, E1000())
    m.outl(0xCF8, 0x80000000)
    m.outb(0xCF9, 0x06)  # a byte at 0xCF9 is the reset-control port, not CONFIG_ADDRESS
    assert m.inl(0xCF8) == 0x80000000
    assert m.inb(0x80) == 0xFF
    assert m.inw(0x1234) == 0xFFFF

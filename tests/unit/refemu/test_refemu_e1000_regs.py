"""e1000 registers: reset values observed in QEMU, CTRL.RST, EEPROM, PHY, unimplemented."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from refemu_nic import Nic

from qtrace.devices.e1000.model import E1000
from qtrace.refemu import Unimplemented

CTRL, STATUS, EECD, EERD, MDIC = 0x0000, 0x0008, 0x0010, 0x0014, 0x0020
IMS, RCTL, RAL0, RAH0 = 0x00D0, 0x0100, 0x5400, 0x5404


def eerd_read(nic: Nic, word: int) -> int:
    nic.wr(EERD, (word << 8) | 1)  # START, 82540EM layout: address in bits 15:8
    value = nic.rd(EERD)
    assert value & (1 << 4), "DONE (bit 4) must be set"
    return value >> 16


def test_reset_values_seen_in_qemu(nic: Nic) -> None:
    assert nic.rd(STATUS) == 0x80080783
    assert nic.rd(CTRL) == 0x00140240


def test_eerd_reads_the_mac_words(nic: Nic) -> None:
    assert [eerd_read(nic, w) for w in range(3)] == [0x5452, 0x1200, 0x5634]


@given(st.binary(min_size=6, max_size=6))
def test_eeprom_sums_to_0xbaba_for_any_mac(mac: bytes) -> None:
    dev = E1000(mac=mac)
    words = []
    for w in range(64):
        dev.mmio_write(EERD, 4, (w << 8) | 1)
        words.append(dev.mmio_read(EERD, 4) >> 16)
    assert sum(words) & 0xFFFF == 0xBABA
    assert bytes(b for w in words[:3] for b in (w & 0xFF, w >> 8)) == mac


def microwire_read(nic: Nic, word: int) -> int:
    """Bit-bang a READ the way the Linux e1000 driver does (shift out, then shift in)."""
    sk, cs, di, do = 1, 2, 4, 8

    def clock(level: int) -> None:
        nic.wr(EECD, level | sk)
        nic.wr(EECD, level)

    nic.wr(EECD, 1 << 6)  # EE_REQ
    assert nic.rd(EECD) & (1 << 7), "EE_GNT"
    base = (1 << 6) | cs
    nic.wr(EECD, base)
    command = (0b110 << 6) | word  # start bit, READ opcode 10b, 6 address bits
    for bit in range(8, -1, -1):
        clock(base | (di if command >> bit & 1 else 0))
    value = 0
    for _ in range(16):
        nic.wr(EECD, base | sk)
        value = value << 1 | (1 if nic.rd(EECD) & do else 0)
        nic.wr(EECD, base)
    nic.wr(EECD, 0)
    return value


def test_bit_banged_eecd_agrees_with_eerd(nic: Nic) -> None:
    for word in (0, 1, 2, 0x0D, 0x3F):
        assert microwire_read(nic, word) == eerd_read(nic, word)


def _do_levels(nic: Nic, word: int, falling_edges: int) -> list[int]:
    """DO after every pin change: CS rise, the command, then SK low/high pairs."""
    sk, cs, di = 1, 2, 4
    base = (1 << 6) | cs
    levels = []

    def write(value: int) -> None:
        nic.wr(EECD, value)
        levels.append(nic.rd(EECD) >> 3 & 1)

    write(base)
    command = (0b110 << 6) | word
    for bit in range(8, -1, -1):
        level = base | (di if command >> bit & 1 else 0)
        write(level)
        write(level | sk)
    for _ in range(falling_edges):
        write(base)
        write(base | sk)
    return levels


def test_eecd_do_timing_as_observed_in_qemu(nic: Nic) -> None:
    """Observed in QEMU 10.2.2: DO is 1 while the command goes in; the completing rising
    edge shows the bit before D15 (D0 of the previous word); each falling edge then
    drives the next bit, D15 first, and rising edges change nothing."""
    words = [eerd_read(nic, w) for w in range(64)]
    levels = _do_levels(nic, 0x0E, 3)  # word 0x0E: 0x8086; word 0x0D: 0x100E
    assert levels[:18] == [1] * 18
    assert levels[18] == words[0x0D] & 1 == 0
    assert levels[19:] == [1, 1, 0, 0, 0, 0]  # D15, D14, D13 of 0x8086


def test_eecd_do_is_1_after_cs_rises_and_kept_when_cs_drops(nic: Nic) -> None:
    _do_levels(nic, 0x00, 1)  # D15 of 0x5452 is 0
    assert not nic.rd(EECD) & 8
    nic.wr(EECD, 1 << 6)  # CS low: DO kept
    assert not nic.rd(EECD) & 8
    nic.wr(EECD, 1 << 6 | 1)
    nic.wr(EECD, 1 << 6 | 3)  # CS rises with SK high (Linux's standby)
    assert nic.rd(EECD) & 8


def test_ral0_rah0_hold_the_mac_with_address_valid(nic: Nic) -> None:
    assert nic.rd(RAL0) == 0x12005452
    assert nic.rd(RAH0) == 0x80000000 | 0x5634


def test_ctrl_rst_self_clears_and_keeps_registers(nic: Nic) -> None:
    """Observed in QEMU 10.2.2: RST only self-clears; no register is reset."""
    nic.wr(IMS, 0x1F)
    nic.wr(RCTL, 0x8002)
    nic.wr(RAL0, 0xDEADBEEF)
    nic.wr(CTRL, nic.rd(CTRL) | (1 << 26))
    assert not nic.rd(CTRL) & (1 << 26)
    assert nic.rd(CTRL) == 0x00140240
    assert nic.rd(IMS) == 0x1F
    assert nic.rd(RCTL) == 0x8002
    assert nic.rd(RAL0) == 0xDEADBEEF


def mdic(nic: Nic, op: int, reg: int, data: int = 0, phy: int = 1) -> int:
    nic.wr(MDIC, op << 26 | phy << 21 | reg << 16 | data)
    value = nic.rd(MDIC)
    assert value & (1 << 28), "READY"
    return value


def test_phy_id_through_mdic(nic: Nic) -> None:
    assert mdic(nic, 2, 2) & 0xFFFF == 0x0141
    assert mdic(nic, 2, 3) & 0xFFFF == 0x0C20


def test_phy_link_up_autoneg_complete_clear_at_power_on(nic: Nic) -> None:
    status = mdic(nic, 2, 1) & 0xFFFF
    assert status == 0x794D  # observed in QEMU 10.2.2
    assert status & (1 << 2)  # link status
    assert not status & (1 << 5)  # autonegotiation complete: not yet at power-on


def test_mdic_to_another_phy_keeps_previous_contents_and_adds_error(nic: Nic) -> None:
    before = mdic(nic, 2, 4)
    assert mdic(nic, 2, 2, phy=2) == before | (1 << 30)


def test_phy_reset_self_clears(nic: Nic) -> None:
    mdic(nic, 1, 0, 0x8000 | 0x1140)
    assert not mdic(nic, 2, 0) & 0x8000


def test_phy_reset_and_ctrl_phy_rst_reset_no_phy_register(nic: Nic) -> None:
    """Observed in QEMU 10.2.2 (the Linux driver writes 0x10 before a PHY reset)."""
    mdic(nic, 1, 0x10, 0x0B60)
    mdic(nic, 1, 0x04, 0x0501)
    mdic(nic, 1, 0x00, 0x9140)
    assert mdic(nic, 2, 0x10) & 0xFFFF == 0x0B60
    assert mdic(nic, 2, 0x04) & 0xFFFF == 0x0501
    mdic(nic, 1, 0x00, 0x0100)
    nic.wr(CTRL, 0x80140240)
    assert nic.rd(CTRL) == 0x80140240  # PHY_RST is stored
    assert mdic(nic, 2, 0x00) & 0xFFFF == 0x0100
    assert mdic(nic, 2, 0x10) & 0xFFFF == 0x0B60


def test_mdic_wrong_phy_address_sets_error(nic: Nic) -> None:
    assert mdic(nic, 2, 2, phy=5) & (1 << 30)


def test_mdic_interrupt_enable_raises_mdac(nic: Nic) -> None:
    nic.wr(MDIC, 1 << 29 | 2 << 26 | 1 << 21 | 2 << 16)
    assert nic.rd(0x00C0) & (1 << 9)


@pytest.mark.parametrize(
    ("written", "reads"),
    [
        (0x0023_0000, 0x1023_0000),  # opcode 00b: stored, READY added, no ERROR
        (0x8023_0000, 0x9023_0000),  # bit 31 kept
        (0x4023_0000, 0x5023_0000),  # a written ERROR kept
        (0xC822_0000, 0xD822_0141),  # a read keeps bits 31:30 and replaces the data
        (0x8C22_ABCD, 0x9C22_0141),  # opcode 11b reads like 10b
        (0x8827_0000, 0xD827_0000),  # no such PHY register: ERROR, data as written
        (0x8420_1140, 0x9420_1140),  # a write: as written, READY added
        (0x0421_1234, 0x5421_1234),  # a write to a read-only PHY register: ERROR
        (0x0427_1234, 0x5427_1234),  # ... and to an absent one
    ],
)
def test_mdic_keeps_every_bit_written_as_qemu_does(nic: Nic, written: int, reads: int) -> None:
    """Observed in QEMU 10.2.2 under qtest (issue 13's arbitrary-value sequences)."""
    nic.wr(MDIC, written)
    assert nic.rd(MDIC) == reads


def test_a_write_to_a_read_only_phy_register_changes_nothing(nic: Nic) -> None:
    mdic(nic, 1, 0x01, 0x0A5A)
    assert mdic(nic, 2, 0x01) & 0xFFFF == 0x794D


def test_phy_control_bits_5_0_read_0(nic: Nic) -> None:
    """802.3 22.2.4.1 reserves them; observed in QEMU 10.2.2: 0x7DFF reads back 0x7DC0."""
    mdic(nic, 1, 0x00, 0x7DFF)
    assert mdic(nic, 2, 0x00) & 0xFFFF == 0x7DC0


def test_mdic_to_another_phy_raises_no_mdac(nic: Nic) -> None:
    """Observed in QEMU 10.2.2: IE with PHY address 2 or 7, any opcode, sets no MDAC."""
    nic.wr(MDIC, 1 << 29 | 2 << 26 | 7 << 21 | 2 << 16)
    assert not nic.rd(0x00C0) & (1 << 9)


@pytest.mark.parametrize("offset", [0x0178, 0x0180, 0x001C])  # TXCW, RXCW, FLA
def test_unimplemented_registers_are_reported(nic: Nic, offset: int) -> None:
    with pytest.raises(Unimplemented) as caught:
        nic.rd(offset)
    assert caught.value.offset == offset and caught.value.space == "mmio"
    with pytest.raises(Unimplemented):
        nic.wr(offset, 0)


def test_reserved_offset_is_reported_not_zero(nic: Nic) -> None:
    with pytest.raises(Unimplemented):
        nic.rd(0x0004)  # reserved in the 82540EM map


def test_statistics_clear_on_read(nic: Nic) -> None:
    nic.dev.set_reg("TPT", 7)
    nic.dev.set_reg("TOTL", 0x1000)
    nic.dev.set_reg("TOTH", 1)
    assert nic.rd(0x40D4) == 7
    assert nic.rd(0x40D4) == 0
    assert nic.rd(0x40C8) == 0x1000  # low half does not clear...
    assert nic.rd(0x40C8) == 0x1000
    assert nic.rd(0x40CC) == 1  # ...reading the high half clears both
    assert (nic.rd(0x40C8), nic.rd(0x40CC)) == (0, 0)


@given(st.integers(0, 0xFFFFFFFF))
def test_status_is_read_only(value: int) -> None:
    nic = Nic()
    nic.wr(STATUS, value)
    assert nic.rd(STATUS) == 0x80080783


def test_narrow_read_returns_the_registers_low_bytes(nic: Nic) -> None:
    """QEMU widens a narrow access to 4 bytes at the same (unaligned) address: the e1000
    handler returns the whole register and the guest gets its low bytes, whatever byte
    of the register it addressed (issue 16 #6; the model used to shift the byte out)."""
    assert nic.machine.read(0xFEBC0000 + STATUS + 3, 1) == 0x83
    assert nic.machine.read(0xFEBC0000 + STATUS + 2, 2) == 0x0783
    assert nic.machine.read(0xFEBC0000 + STATUS + 1, 1) == 0x83


def test_narrow_write_replaces_the_whole_register(nic: Nic) -> None:
    """A 1-byte write to RCTL clears RCTL[31:8]; a byte at CTRL+1 lands in CTRL[7:0]."""
    nic.wr(RCTL, 0xFFFF_FFFF)
    nic.machine.write(0xFEBC0000 + RCTL, 1, 0x5A)
    assert nic.rd(RCTL) == 0x5A
    nic.machine.write(0xFEBC0000 + CTRL + 1, 1, 0x41)
    assert nic.rd(CTRL) == 0x41
    nic.wr(RCTL, 0xFFFF_FFFF)
    nic.machine.write(0xFEBC0000 + RCTL + 2, 2, 0x1234)
    assert nic.rd(RCTL) == 0x1234


def test_narrow_write_to_ims_sets_the_low_bits_it_carries(nic: Nic) -> None:
    nic.machine.write(0xFEBC0000 + IMS + 1, 1, 0x04)  # LSC, not bit 10
    assert nic.rd(IMS) == 0x04


def test_unaligned_narrow_access_is_refused(nic: Nic) -> None:
    with pytest.raises(ValueError, match="naturally aligned"):
        nic.dev.mmio_read(STATUS + 1, 2)


def test_eerd_written_without_start_reads_back_all_32_bits(nic: Nic) -> None:
    """QEMU stores EERD whole and returns it unchanged without START: no DONE, no data
    (issue 16 #7; the model used to keep START|ADDR only and so dropped bits)."""
    nic.wr(EERD, 0xABCD_0512)
    assert nic.rd(EERD) == 0xABCD_0512
    nic.wr(EERD, 0x0000_0300)
    assert nic.rd(EERD) == 0x0000_0300


def test_eerd_high_bits_with_start_address_past_the_eeprom(nic: Nic) -> None:
    """With START the address is everything above bit 7: stray high bits mean no data."""
    nic.wr(EERD, 0x0001_0001)  # word 0x100 as QEMU reads it
    assert nic.rd(EERD) == 0x0001_0010
    nic.wr(EERD, 0x0000_0201)  # word 2, in range
    assert nic.rd(EERD) == 0x5634_0210

"""Register decoding, checked against datasheet values (8254x SDM, RTL8139, PCI 3.0)."""

from __future__ import annotations

from itertools import pairwise

import pytest

from qtrace.annotate import decode_access
from qtrace.devices import RegisterMap, all_packs, pci_config_map, register_map, register_map_for
from qtrace.trace import Access

MAP_NAMES = [pack.name for pack in all_packs() if pack.registers_file is not None] + ["pci-config"]


def load_register_map(name: str) -> RegisterMap:
    """A pack's register map by pack name (``pci-config``: the generic configuration header)."""
    found = pci_config_map() if name == "pci-config" else register_map(name)
    assert found is not None, name
    return found


def e1000(offset: int, value: int, size: int = 4):  # type: ignore[no-untyped-def]
    return load_register_map("e1000").decode("mmio", offset, size, value)


def test_eerd_start_done_addr_from_the_82540em_layout() -> None:
    d = e1000(0x14, 0x00000011)
    assert d.name == "EERD"
    assert (
        d.field("START").value,
        d.field("DONE").value,
        d.field("ADDR").value,
        d.field("DATA").value,
    ) == (1, 1, 0, 0)


def test_eerd_data_word() -> None:
    d = e1000(0x14, 0x54520011)
    assert d.field("DATA").value == 0x5452
    assert d.field("DONE").value == 1
    assert "DATA=0x5452" in d.summary()


def test_eerd_address_field() -> None:
    assert e1000(0x14, 0x00000201).field("ADDR").value == 2


def test_status_of_a_1000mbps_full_duplex_link() -> None:
    d = e1000(0x08, 0x80080783)
    assert d.field("FD").value == 1 and d.field("LU").value == 1
    assert d.field("SPEED").value == 2 and d.field("SPEED").meaning == "1000 Mb/s"
    assert d.field("TXOFF").value == 0
    assert d.other_bits & (1 << 31)  # undocumented bits are reported, not named


def test_ctrl_bits() -> None:
    d = e1000(0x00, (1 << 0) | (1 << 6) | (1 << 26) | (1 << 31) | (1 << 30) | (0b10 << 8))
    for name in ("FD", "SLU", "RST", "PHY_RST", "VME"):
        assert d.field(name).value == 1, name
    assert d.field("SPEED").value == 2
    assert d.field("ASDE").value == 0


def test_mdic_phy_read_command() -> None:
    # Read PHY register 2 (PHY ID 1) of PHY address 1: OP=10b in bits 27:26.
    d = e1000(0x20, (0b10 << 26) | (1 << 21) | (2 << 16))
    assert d.field("OP").meaning == "read"
    assert (d.field("PHYADD").value, d.field("REGADD").value, d.field("R").value) == (1, 2, 0)
    done = e1000(0x20, (1 << 28) | 0x0141)
    assert done.field("R").value == 1 and done.field("DATA").value == 0x141


@pytest.mark.parametrize("offset", [0xC0, 0xC8, 0xD0, 0xD8])
def test_interrupt_registers_share_cause_bits(offset: int) -> None:
    d = e1000(offset, 0x1F)
    assert [f.name for f in d.fields if f.value] == ["TXDW", "TXQE", "LSC", "RXSEQ", "RXDMT0"]
    assert e1000(offset, 1 << 7).field("RXT0").value == 1
    assert e1000(offset, 1 << 15).field("TXD_LOW").value == 1
    assert e1000(offset, 1 << 16).field("SRPD").value == 1


def test_rctl_and_tctl_fields() -> None:
    rctl = e1000(0x100, (1 << 1) | (1 << 15) | (1 << 26) | (0b01 << 8))
    assert [f.name for f in rctl.fields if f.value] == ["EN", "RDMTS", "BAM", "SECRC"]
    tctl = e1000(0x400, 0x0004010A)
    assert tctl.field("EN").value == 1 and tctl.field("PSP").value == 1
    assert tctl.field("CT").value == 0x10 and tctl.field("COLD").value == 0x40


@pytest.mark.parametrize(
    ("offset", "name"),
    [
        (0x0000, "CTRL"),
        (0x0008, "STATUS"),
        (0x0010, "EECD"),
        (0x0018, "CTRL_EXT"),
        (0x001C, "FLA"),
        (0x0028, "FCAL"),
        (0x002C, "FCAH"),
        (0x0030, "FCT"),
        (0x0038, "VET"),
        (0x00C4, "ITR"),
        (0x0170, "FCTTV"),
        (0x0178, "TXCW"),
        (0x0180, "RXCW"),
        (0x0410, "TIPG"),
        (0x0E00, "LEDCTL"),
        (0x1000, "PBA"),
        (0x2800, "RDBAL"),
        (0x2804, "RDBAH"),
        (0x2808, "RDLEN"),
        (0x2810, "RDH"),
        (0x2818, "RDT"),
        (0x2820, "RDTR"),
        (0x282C, "RADV"),
        (0x3800, "TDBAL"),
        (0x3804, "TDBAH"),
        (0x3808, "TDLEN"),
        (0x3810, "TDH"),
        (0x3818, "TDT"),
        (0x3820, "TIDV"),
        (0x3828, "TXDCTL"),
        (0x382C, "TADV"),
        (0x4000, "CRCERRS"),
        (0x4010, "MPC"),
        (0x4074, "GPRC"),
        (0x40D0, "TPR"),
        (0x40FC, "TSCTFC"),
        (0x5200, "MTA[0]"),
        (0x53FC, "MTA[127]"),
        (0x5400, "RAL[0]"),
        (0x5404, "RAH[0]"),
        (0x5478, "RAL[15]"),
        (0x547C, "RAH[15]"),
        (0x5600, "VFTA[0]"),
        (0x5800, "WUC"),
        (0x5808, "WUFC"),
        (0x5820, "MANC"),
    ],
)
def test_e1000_offsets_from_the_register_summary(offset: int, name: str) -> None:
    assert e1000(offset, 0).name == name


@pytest.mark.parametrize("offset", [0x0004, 0x0024, 0x4024, 0x9F00, 0x5480, 0x1FFFC])
def test_unlisted_e1000_offsets_are_unknown(offset: int) -> None:
    d = e1000(offset, 0x1234)
    assert not d.known and d.name.startswith("unknown")


def test_rah_valid_bit() -> None:
    d = e1000(0x5404, 0x80005634)
    assert d.field("AV").value == 1 and d.field("RAH").value == 0x5634


def test_byte_access_inside_a_register_is_named_relative() -> None:
    assert e1000(0x01, 0x02, size=1).name == "CTRL+0x1"


def test_rtl8139_registers() -> None:
    m = load_register_map("rtl8139")
    assert m.decode("pio", 0x37, 1, 0x10).field("RST").value == 1
    assert m.decode("pio", 0x37, 1, 0x0C).summary() == "TE RE"
    assert m.decode("mmio", 0x18, 4, 0).name == "TSD2"
    assert m.decode("pio", 0x2C, 4, 0).name == "TSAD3"
    assert m.decode("pio", 0x30, 4, 0).name == "RBSTART"
    assert m.decode("pio", 0x50, 1, 0xC0).field("EEM").meaning == "config register write enable"
    isr = m.decode("pio", 0x3E, 2, 0x0005)
    assert [f.name for f in isr.fields if f.value] == ["ROK", "TOK"]
    mac = m.decode("pio", 0x00, 4, 0x00545200)
    assert mac.name == "IDR0..IDR3" and [p.value for p in mac.parts] == [0x00, 0x52, 0x54, 0x00]
    for offset, name in (
        (0x62, "BMCR"),
        (0x64, "BMSR"),
        (0x66, "ANAR"),
        (0x68, "ANLPAR"),
        (0x6A, "ANER"),
        (0x5C, "MULINT"),
        (0x5E, "RERID"),
        (0x60, "TSAD"),
        (0x58, "MSR"),
        (0x51, "CONFIG0"),
    ):
        assert m.decode("pio", offset, 1, 0).name == name


def test_e1000e_shares_e1000_names_and_has_its_own() -> None:
    m = load_register_map("e1000e")
    for offset, name in (
        (0x0, "CTRL"),
        (0x8, "STATUS"),
        (0xD0, "IMS"),
        (0x3818, "TDT"),
        (0x18, "CTRL_EXT"),
        (0xE4, "IVAR"),
        (0xE8, "EITR[0]"),
        (0x5B00, "GCR"),
        (0x5B50, "SWSM"),
        (0x5B54, "FWSM"),
    ):
        assert m.decode("mmio", offset, 4, 0).name == name
    assert not m.decode("mmio", 0x3000, 4, 0).known  # TXDMAC is 8254x-only
    eerd = m.decode(
        "mmio", 0x14, 4, (0x5452 << 16) | (3 << 2) | 0b11
    )  # 82574: DONE is bit 1, ADDR 15:2
    assert (eerd.field("DONE").value, eerd.field("ADDR").value, eerd.field("DATA").value) == (
        1,
        3,
        0x5452,
    )


def test_pci_config_header() -> None:
    m = register_map_for("e1000", "pci-config")
    assert m is not None
    ids = m.decode("pci-config", 0x00, 4, 0x100E8086)
    assert [(p.name, p.value) for p in ids.parts] == [("VENDOR_ID", 0x8086), ("DEVICE_ID", 0x100E)]
    bar = m.decode("pci-config", 0x10, 4, 0xFEBC0000)
    assert (
        bar.name == "BAR0"
        and bar.field("IO_SPACE").value == 0
        and bar.field("ADDRESS").value == 0xFEBC0000
    )
    io_bar = m.decode("pci-config", 0x14, 4, 0xC001)
    assert io_bar.name == "BAR1" and io_bar.field("IO_SPACE").value == 1
    cmd = m.decode("pci-config", 0x04, 2, 0x0107)
    assert [f.name for f in cmd.fields if f.value] == ["IO", "MEMORY", "MASTER", "SERR"]
    assert m.decode("pci-config", 0x3D, 1, 1).field("PIN").meaning == "INTA#"
    assert m.decode("pci-config", 0x0E, 1, 0x80).field("MULTI_FUNCTION").value == 1
    assert m.decode("pci-config", 0x2C, 2, 0x1AF4).name == "SUBSYSTEM_VENDOR_ID"
    assert m.decode("pci-config", 0x34, 1, 0xDC).name == "CAPABILITY_LIST"
    assert not m.decode("pci-config", 0xDC, 4, 0).known


def test_decode_access_dispatches_on_device_and_space() -> None:
    cfg = Access(seq=1, op="read", space="pci-config", offset=0x10, size=4, value=0xFEBC0000)
    assert decode_access("rtl8139", cfg).name == "BAR0"
    mmio = Access(seq=2, op="read", space="mmio", offset=0x14, size=4, value=0x11)
    assert decode_access("e1000-82545em", mmio).name == "EERD"
    assert not decode_access("virtio-net-pci", mmio).known
    pio = Access(seq=3, op="write", space="pio", offset=0x4, size=4, value=0)
    assert decode_access("e1000", pio).name == "IODATA"
    assert {t for pack in all_packs() for t in pack.qom_types} >= {"e1000", "e1000e", "rtl8139"}


@pytest.mark.parametrize("name", MAP_NAMES)
def test_register_maps_have_no_overlapping_registers(name: str) -> None:
    m = load_register_map(name)
    for space in ("mmio", "pio", "pci-config"):
        regs = m.registers(space)
        for a, b in pairwise(regs):
            assert a.offset + a.size <= b.offset, f"{name}/{space}: {a.name} overlaps {b.name}"
        assert len({r.name for r in regs}) == len(regs), f"{name}/{space}: duplicate names"

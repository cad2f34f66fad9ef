"""The 82540EM register map, as data.

Why: one table serves the model (reset values, access kinds, writable masks), the trace
replay (register names and bit-field decoding of mismatches) and the docs. Offsets, reset
values and bit positions come from Intel's PCI/PCI-X Family of Gigabit Ethernet
Controllers Software Developer's Manual (8254x, rev. 4.0), section 13. Where a reset
value was observed in QEMU 10.2.2 instead (CTRL, STATUS), the row says so.

:data:`UNIMPLEMENTED` is the one list of what the model knows exists but does not
model, over both BAR0 and configuration space; everything there raises
:class:`~qtrace.refemu.regmap.Unimplemented` when touched. Offsets inside BAR0 that
have no row at all are reported the same way (as reserved), never as a silent 0.
"""

from __future__ import annotations

from qtrace.refemu.regmap import Field, Kind, Reg, RegisterMap, array

__all__ = [
    "CAUSE_FIELDS",
    "CTRL_PHY_RST",
    "CTRL_RST",
    "EERD_DONE",
    "EERD_START",
    "ICR_BITS",
    "IMS_VALID",
    "IO_REGISTERS",
    "MAC_REGISTERS",
    "RAH_AV",
    "RCTL_EN",
    "STAT_REGISTERS",
    "TCTL_EN",
    "UNIMPLEMENTED",
]

# Interrupt cause bits, shared by ICR, ICS, IMS and IMC (SDM 13.4.17-13.4.21).
ICR_BITS: dict[str, int] = {
    "TXDW": 0,
    "TXQE": 1,
    "LSC": 2,
    "RXSEQ": 3,
    "RXDMT0": 4,
    "RXO": 6,
    "RXT0": 7,
    "MDAC": 9,
    "RXCFG": 10,
    "PHYINT": 12,
    "GPI_SDP6": 13,
    "GPI_SDP7": 14,
    "TXD_LOW": 15,
    "SRPD": 16,
}
CAUSE_FIELDS = tuple(Field(name, bit) for name, bit in ICR_BITS.items())
IMS_VALID = sum(1 << bit for bit in ICR_BITS.values())

CTRL_RST = 1 << 26
CTRL_PHY_RST = 1 << 31
EERD_START = 1 << 0
EERD_DONE = 1 << 4
RCTL_EN = 1 << 1
TCTL_EN = 1 << 1
RAH_AV = 1 << 31

_CTRL_FIELDS = (
    Field("FD", 0),
    Field("LRST", 3),
    Field("ASDE", 5),
    Field("SLU", 6),
    Field("ILOS", 7),
    Field("SPEED", 8, 9),
    Field("FRCSPD", 11),
    Field("FRCDPLX", 12),
    Field("SDP0_DATA", 18),
    Field("SDP1_DATA", 19),
    Field("ADVD3WUC", 20),
    Field("EN_PHY_PWR_MGMT", 21),
    Field("SDP0_IODIR", 22),
    Field("SDP1_IODIR", 23),
    Field("RST", 26),
    Field("RFCE", 27),
    Field("TFCE", 28),
    Field("VME", 30),
    Field("PHY_RST", 31),
)
_STATUS_FIELDS = (
    Field("FD", 0),
    Field("LU", 1),
    Field("FUNC_ID", 2, 3),
    Field("TXOFF", 4),
    Field("TBIMODE", 5),
    Field("SPEED", 6, 7),
    Field("ASDV", 8, 9),
    Field("PCI66", 11),
    Field("BUS64", 12),
    Field("PCIX_MODE", 13),
    Field("PCIXSPD", 14, 15),
)
_EECD_FIELDS = (
    Field("SK", 0),
    Field("CS", 1),
    Field("DI", 2),
    Field("DO", 3),
    Field("FWE", 4, 5),
    Field("EE_REQ", 6),
    Field("EE_GNT", 7),
    Field("EE_PRES", 8),
    Field("EE_SIZE", 9),
)
_EERD_FIELDS = (Field("START", 0), Field("DONE", 4), Field("ADDR", 8, 15), Field("DATA", 16, 31))
_MDIC_FIELDS = (
    Field("DATA", 0, 15),
    Field("REGADD", 16, 20),
    Field("PHYADD", 21, 25),
    Field("OP", 26, 27),
    Field("READY", 28),
    Field("IE", 29),
    Field("ERROR", 30),
)
_RCTL_FIELDS = (
    Field("EN", 1),
    Field("SBP", 2),
    Field("UPE", 3),
    Field("MPE", 4),
    Field("LPE", 5),
    Field("LBM", 6, 7),
    Field("RDMTS", 8, 9),
    Field("MO", 12, 13),
    Field("BAM", 15),
    Field("BSIZE", 16, 17),
    Field("VFE", 18),
    Field("CFIEN", 19),
    Field("CFI", 20),
    Field("DPF", 22),
    Field("PMCF", 23),
    Field("BSEX", 25),
    Field("SECRC", 26),
)
_TCTL_FIELDS = (
    Field("EN", 1),
    Field("PSP", 3),
    Field("CT", 4, 11),
    Field("COLD", 12, 21),
    Field("SWXOFF", 22),
    Field("RTLC", 24),
)
_RAH_FIELDS = (Field("RAH", 0, 15), Field("ASEL", 16, 17), Field("AV", 31))
_RING_LEN_MASK = 0x000F_FF80  # bits 19:7: a multiple of 128 bytes (8 descriptors)
_RING_BASE_MASK = 0xFFFF_FFF0  # 16-byte aligned
_HEAD_TAIL_MASK = 0x0000_FFFF

# The one list of registers the model deliberately does not model: (space, offset, name, reason).
UNIMPLEMENTED: tuple[tuple[str, int, str, str], ...] = (
    ("mmio", 0x001C, "FLA", "flash access: the 82540EM has no flash in QEMU's machine"),
    ("mmio", 0x0178, "TXCW", "TBI/SerDes autonegotiation; the 82540EM is copper-only"),
    ("mmio", 0x0180, "RXCW", "TBI/SerDes autonegotiation; the 82540EM is copper-only"),
    ("mmio", 0x2410, "RDFH", "internal packet-buffer FIFO pointer; the model has no FIFO"),
    ("mmio", 0x2418, "RDFT", "internal packet-buffer FIFO pointer; the model has no FIFO"),
    ("mmio", 0x2420, "RDFHS", "internal packet-buffer FIFO pointer; the model has no FIFO"),
    ("mmio", 0x2428, "RDFTS", "internal packet-buffer FIFO pointer; the model has no FIFO"),
    ("mmio", 0x2430, "RDFPC", "internal packet-buffer FIFO count; the model has no FIFO"),
    ("mmio", 0x3410, "TDFH", "internal packet-buffer FIFO pointer; the model has no FIFO"),
    ("mmio", 0x3418, "TDFT", "internal packet-buffer FIFO pointer; the model has no FIFO"),
    ("mmio", 0x3420, "TDFHS", "internal packet-buffer FIFO pointer; the model has no FIFO"),
    ("mmio", 0x3428, "TDFTS", "internal packet-buffer FIFO pointer; the model has no FIFO"),
    ("mmio", 0x3430, "TDFPC", "internal packet-buffer FIFO count; the model has no FIFO"),
    ("mmio", 0x5810, "WUS", "wake-up status: power-management wake-up is not modelled"),
    ("mmio", 0x5838, "IPAV", "wake-up IP address filtering is not modelled"),
    ("mmio", 0x5900, "WUPL", "wake-up packet capture is not modelled"),
    (
        "pci-config",
        0x30,
        "ROM_BAR",
        "the option ROM's size comes from the host's romfile; not modelled",
    ),
)

_STATS_32 = (
    (0x4000, "CRCERRS"), (0x4004, "ALGNERRC"), (0x4008, "SYMERRS"), (0x400C, "RXERRC"),
    (0x4010, "MPC"), (0x4014, "SCC"), (0x4018, "ECOL"), (0x401C, "MCC"), (0x4020, "LATECOL"),
    (0x4028, "COLC"), (0x4030, "DC"), (0x4034, "TNCRS"), (0x4038, "SEC"), (0x403C, "CEXTERR"),
    (0x4040, "RLEC"), (0x4048, "XONRXC"), (0x404C, "XONTXC"), (0x4050, "XOFFRXC"),
    (0x4054, "XOFFTXC"), (0x4058, "FCRUC"), (0x405C, "PRC64"), (0x4060, "PRC127"),
    (0x4064, "PRC255"), (0x4068, "PRC511"), (0x406C, "PRC1023"), (0x4070, "PRC1522"),
    (0x4074, "GPRC"), (0x4078, "BPRC"), (0x407C, "MPRC"), (0x4080, "GPTC"), (0x40A0, "RNBC"),
    (0x40A4, "RUC"), (0x40A8, "RFC"), (0x40AC, "ROC"), (0x40B0, "RJC"), (0x40B4, "MGTPRC"),
    (0x40B8, "MGTPDC"), (0x40BC, "MGTPTC"), (0x40D0, "TPR"), (0x40D4, "TPT"), (0x40D8, "PTC64"),
    (0x40DC, "PTC127"), (0x40E0, "PTC255"), (0x40E4, "PTC511"), (0x40E8, "PTC1023"),
    (0x40EC, "PTC1522"), (0x40F0, "MPTC"), (0x40F4, "BPTC"), (0x40F8, "TSCTC"), (0x40FC, "TSCTFC"),
)  # fmt: skip
# 64-bit octet counters: reading the high half clears both halves (SDM 13.7).
_STATS_64 = ((0x4088, "GORC"), (0x4090, "GOTC"), (0x40C0, "TOR"), (0x40C8, "TOT"))
_STATS_NOTE = "statistics counter: saturates, cleared on read (SDM 13.7)"


def _stats() -> list[Reg]:
    regs = [Reg(off, name, kind=Kind.RC, note=_STATS_NOTE) for off, name in _STATS_32]
    for off, stem in _STATS_64:
        low, high = (
            ("GORCL", "GORCH")
            if stem == "GORC"
            else ("GOTCL", "GOTCH")
            if stem == "GOTC"
            else (f"{stem}L", f"{stem}H")
        )
        regs.append(
            Reg(off, low, kind=Kind.RC_LOW, note=_STATS_NOTE + "; cleared with the high half")
        )
        regs.append(
            Reg(off + 4, high, kind=Kind.RC_HIGH, note=_STATS_NOTE + "; clears both halves")
        )
    return regs


STAT_REGISTERS = RegisterMap(_stats())

_SPECIAL = Kind.SPECIAL
_ZERO_NOTE = "observed in QEMU 10.2.2: reads 0 after any write (the register is not stored)"
MAC_REGISTERS = RegisterMap(
    [
        Reg(0x0000, "CTRL", 0x0014_0240, _SPECIAL, fields=_CTRL_FIELDS,
            note="reset value observed in QEMU 10.2.2 (SLU, 1000 Mb/s, SDP0_DATA, ADVD3WUC); RST self-clears"),
        Reg(0x0008, "STATUS", 0x8008_0783, Kind.RO, fields=_STATUS_FIELDS,
            note="value observed in QEMU 10.2.2: full duplex, link up, 1000 Mb/s"),
        Reg(0x0010, "EECD", 0, _SPECIAL, fields=_EECD_FIELDS, note="Microwire bit-bang EEPROM interface"),
        Reg(0x0014, "EERD", 0, _SPECIAL, fields=_EERD_FIELDS, note="EEPROM read register (82540EM layout)"),
        Reg(0x0018, "CTRL_EXT", 0, Kind.ZERO, note=_ZERO_NOTE),
        Reg(0x0020, "MDIC", 0, _SPECIAL, fields=_MDIC_FIELDS, note="MDI control: PHY register access"),
        Reg(0x0028, "FCAL", 0, Kind.ZERO, note=_ZERO_NOTE),
        Reg(0x002C, "FCAH", 0, Kind.ZERO, note=_ZERO_NOTE),
        Reg(0x0030, "FCT", 0, Kind.ZERO, note=_ZERO_NOTE),
        Reg(0x0038, "VET", 0x8100, note="reset 0x8100 (802.1Q) and all 32 bits stored: observed in QEMU 10.2.2"),
        Reg(0x00C0, "ICR", 0, _SPECIAL, fields=CAUSE_FIELDS, note="read clears; writing 1 clears a cause"),
        Reg(0x00C4, "ITR", 0, wmask=0xFFFF),
        Reg(0x00C8, "ICS", 0, _SPECIAL, fields=CAUSE_FIELDS,
            note="write sets causes; a read returns the pending causes without clearing (unconfirmed)"),
        Reg(0x00D0, "IMS", 0, _SPECIAL, fields=CAUSE_FIELDS,
            note="write sets mask bits (all 32 are kept, observed); read returns the mask"),
        Reg(0x00D8, "IMC", 0, Kind.WO, fields=CAUSE_FIELDS, note="write clears mask bits; write-only"),
        Reg(0x0100, "RCTL", 0, fields=_RCTL_FIELDS, note="all 32 bits stored (observed in QEMU 10.2.2)"),
        Reg(0x0170, "FCTTV", 0, Kind.ZERO, note=_ZERO_NOTE),
        Reg(0x0400, "TCTL", 0, _SPECIAL, fields=_TCTL_FIELDS, note="setting EN starts transmission"),
        Reg(0x0410, "TIPG", 0, Kind.ZERO, note=_ZERO_NOTE),
        Reg(0x0458, "AIT", 0, Kind.ZERO, note=_ZERO_NOTE),
        Reg(0x0E00, "LEDCTL", 0x0000_0602, note="reset value observed in QEMU 10.2.2"),
        Reg(0x1000, "PBA", 0x0010_0030, note="48 KiB receive / 16 KiB transmit; all bits stored (observed)"),
        Reg(0x2160, "FCRTL", 0, Kind.ZERO, note=_ZERO_NOTE),
        Reg(0x2168, "FCRTH", 0, Kind.ZERO, note=_ZERO_NOTE),
        Reg(0x2800, "RDBAL", 0, wmask=_RING_BASE_MASK),
        Reg(0x2804, "RDBAH", 0),
        Reg(0x2808, "RDLEN", 0, wmask=_RING_LEN_MASK),
        Reg(0x2810, "RDH", 0, wmask=_HEAD_TAIL_MASK),
        Reg(0x2818, "RDT", 0, wmask=_HEAD_TAIL_MASK),
        Reg(0x2820, "RDTR", 0, wmask=0xFFFF),
        Reg(0x2828, "RXDCTL", 0, Kind.ZERO, note=_ZERO_NOTE),
        Reg(0x282C, "RADV", 0, wmask=0xFFFF),
        Reg(0x2C00, "RSRPD", 0, Kind.ZERO, note=_ZERO_NOTE),
        Reg(0x3800, "TDBAL", 0, wmask=_RING_BASE_MASK),
        Reg(0x3804, "TDBAH", 0),
        Reg(0x3808, "TDLEN", 0, wmask=_RING_LEN_MASK),
        Reg(0x3810, "TDH", 0, wmask=_HEAD_TAIL_MASK),
        Reg(0x3818, "TDT", 0, _SPECIAL, wmask=_HEAD_TAIL_MASK, note="writing it starts transmission"),
        Reg(0x3820, "TIDV", 0, Kind.ZERO, note=_ZERO_NOTE),
        Reg(0x3828, "TXDCTL", 0, note="all 32 bits stored (observed in QEMU 10.2.2)"),
        Reg(0x382C, "TADV", 0, wmask=0xFFFF),
        Reg(0x5000, "RXCSUM", 0, Kind.ZERO, note=_ZERO_NOTE),
        *array(0x5200, "MTA", 128),
        *[
            reg
            for i in range(16)
            for reg in (
                Reg(0x5400 + 8 * i, f"RAL[{i}]", 0),
                Reg(0x5404 + 8 * i, f"RAH[{i}]", 0, fields=_RAH_FIELDS,
                    note="all 32 bits stored (observed in QEMU 10.2.2)"),
            )
        ],
        *array(0x5600, "VFTA", 128),
        Reg(0x5800, "WUC", 0, Kind.ZERO, note=_ZERO_NOTE),
        Reg(0x5808, "WUFC", 0, note="all 32 bits stored (observed in QEMU 10.2.2)"),
        Reg(0x5820, "MANC", 0x0022_2300, Kind.RO, note="reset value observed in QEMU 10.2.2; writes change nothing there"),
        *STAT_REGISTERS,
        *[Reg(off, name, kind=Kind.UNIMPL, note=why) for space, off, name, why in UNIMPLEMENTED if space == "mmio"],
    ]
)  # fmt: skip

# The I/O BAR: an address/data pair onto the BAR0 registers (SDM 13.2.1 / 13.3).
IO_REGISTERS = RegisterMap(
    [
        Reg(
            0x00,
            "IOADDR",
            0,
            Kind.ZERO,
            note="SDM: BAR0 offset for IODATA; QEMU 10.2.2 reads 0, ignores writes",
        ),
        Reg(
            0x04,
            "IODATA",
            0,
            Kind.ZERO,
            note="SDM: the register IOADDR selects; QEMU 10.2.2 reads 0, ignores writes",
        ),
    ]
)

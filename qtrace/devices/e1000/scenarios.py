"""The e1000's fixed scenarios of the live differential test, as data: lists of guest steps.

Each scenario is what a driver would do for one feature (reset values, BAR sizing, the
EEPROM through EERD and bit-banged EECD, the PHY through MDIC, interrupt cause/mask
sequences, CTRL.RST, the I/O BAR, a transmit ring with wraparound). The runner compares
every read, the interrupt line after every step, and the RAM ranges listed in
``watch`` (descriptor rings the device writes back into).

Receive is not a scenario: QEMU's e1000 receives only from a network backend, and the
qtest machine has none (``-nodefaults``, no ``-netdev``), so there is no way to hand it a
frame through qtest; see docs/refemu.md.
"""

from __future__ import annotations

import struct

from qtrace.devices.e1000.model import MAC_REGISTERS
from qtrace.devices.e1000.model.e1000_regs import ICR_BITS
from qtrace.refemu import Kind
from qtrace.verify.steps import COMMAND_ENABLE, IO_BASE, Scenario, Step

__all__ = [
    "BUF_BASE",
    "DESC_BYTES",
    "RING_BASE",
    "RING_DESCRIPTORS",
    "SCENARIOS",
    "tx_descriptor",
    "tx_ring_steps",
]

RING_BASE = 0x0010_0000
BUF_BASE = 0x0010_1000
RING_DESCRIPTORS = 8
DESC_BYTES = 16
_EECD, _EERD, _MDIC = 0x10, 0x14, 0x20
_ICR, _ICS, _IMS, _IMC = 0xC0, 0xC8, 0xD0, 0xD8
_TCTL, _TDBAL, _TDBAH, _TDLEN, _TDH, _TDT = 0x400, 0x3800, 0x3804, 0x3808, 0x3810, 0x3818
_TCTL_EN_PSP = 0x2 | 0x8
_CMD_EOP, _CMD_IFCS, _CMD_RS = 0x01, 0x02, 0x08


def _r(offset: int, size: int = 4) -> Step:
    return Step("read", "mmio", offset, size)


def _w(offset: int, value: int, size: int = 4) -> Step:
    return Step("write", "mmio", offset, size, value)


def _reset_values() -> Scenario:
    steps = [
        Step("read", "mmio", reg.offset) for reg in MAC_REGISTERS if reg.kind is not Kind.UNIMPL
    ]
    steps += [Step("read", "config", off) for off in range(0x00, 0x40, 4) if off != 0x30]
    steps += [Step("read", "io", 0x00), Step("read", "io", 0x04)]
    return Scenario("reset values", tuple(steps))


def _bar_sizing() -> Scenario:
    steps: list[Step] = []
    for bar, base in ((0x10, None), (0x14, IO_BASE | 1), (0x18, 0), (0x20, 0)):
        steps += [Step("write", "config", bar, 4, 0xFFFF_FFFF), Step("read", "config", bar)]
        if base is not None:
            steps.append(Step("write", "config", bar, 4, base))
    steps += [
        Step("write", "config", 0x10, 4, 0xFEBC_0000),
        Step("write", "config", 0x04, 2, 0xFFFF),
        Step("read", "config", 0x04),
        Step("write", "config", 0x04, 2, 0),
        Step("read", "mmio", 0x08),
        Step("write", "config", 0x04, 2, COMMAND_ENABLE),
        Step("read", "mmio", 0x08),
        Step("write", "config", 0x3C, 4, 0xFFFF_FFFF),
        Step("read", "config", 0x3C),
        Step("write", "config", 0x0C, 4, 0xFFFF_FFFF),
        Step("read", "config", 0x0C),
    ]
    return Scenario("BAR sizing and COMMAND", tuple(steps))


def _eerd() -> Scenario:
    steps: list[Step] = [_r(_EERD)]
    for word in range(64):
        steps += [_w(_EERD, 1 | word << 8), _r(_EERD)]
    steps += [_w(_EERD, 0x0000_0300), _r(_EERD)]  # address written without START
    return Scenario("EEPROM via EERD", tuple(steps))


def _eecd_bits(sk: int, cs: int, di: int) -> int:
    return 0x40 | sk | cs << 1 | di << 2  # EE_REQ held


def _eecd() -> Scenario:
    # DO is read after every pin change: QEMU changes it on CS rising, on the edge that
    # completes the command and on SK falling edges.
    steps: list[Step] = [_r(_EECD), _w(_EECD, 0x40), _r(_EECD)]
    for start_word in (0x00, 0x0E, 0x3E):
        steps += [_w(_EECD, _eecd_bits(0, 1, 0)), _r(_EECD)]
        command = 0b110 << 6 | start_word
        for bit in range(8, -1, -1):
            di = (command >> bit) & 1
            steps += [_w(_EECD, _eecd_bits(0, 1, di)), _r(_EECD)]
            steps += [_w(_EECD, _eecd_bits(1, 1, di)), _r(_EECD)]
        for _ in range(16 * 3):  # three words, read sequentially
            steps += [_w(_EECD, _eecd_bits(0, 1, 0)), _r(_EECD)]
            steps += [_w(_EECD, _eecd_bits(1, 1, 0)), _r(_EECD)]
        # Linux's standby between words: CS low, SK high, CS high, SK low
        for sk, cs in ((0, 0), (1, 0), (1, 1), (0, 1), (0, 0)):
            steps += [_w(_EECD, _eecd_bits(sk, cs, 0)), _r(_EECD)]
    steps += [_w(_EECD, 0), _r(_EECD)]
    return Scenario("EEPROM via bit-banged EECD", tuple(steps))


def _mdic(op: int, phy: int, reg: int, data: int = 0) -> int:
    return op << 26 | phy << 21 | reg << 16 | data


def _phy() -> Scenario:
    steps: list[Step] = []
    for reg in range(32):
        steps += [_w(_MDIC, _mdic(2, 1, reg)), _r(_MDIC)]
    steps += [_w(_MDIC, _mdic(2, 2, 2)), _r(_MDIC)]  # no PHY at address 2
    steps += [_w(_MDIC, _mdic(1, 1, 4, 0x01E1)), _r(_MDIC), _w(_MDIC, _mdic(2, 1, 4)), _r(_MDIC)]
    steps += [_w(_MDIC, _mdic(1, 1, 0x10, 0x0068)), _w(_MDIC, _mdic(2, 1, 0x10)), _r(_MDIC)]
    steps += [_w(_MDIC, _mdic(1, 1, 2, 0x1234)), _w(_MDIC, _mdic(2, 1, 2)), _r(_MDIC)]
    # PCTRL.RESET (as Linux's e1000 does it): it self-clears and resets no register
    steps += [_w(_MDIC, _mdic(1, 1, 9, 0x0200)), _w(_MDIC, _mdic(1, 1, 0, 0x9140)), _r(_MDIC)]
    for reg in (0x00, 0x04, 0x09, 0x10):
        steps += [_w(_MDIC, _mdic(2, 1, reg)), _r(_MDIC)]
    steps += [_w(_IMS, 1 << ICR_BITS["MDAC"]), _w(_MDIC, _mdic(2, 1, 1) | 1 << 29), _r(_MDIC)]
    steps += [_r(_ICR)]
    return Scenario("PHY via MDIC", tuple(steps))


def _interrupts() -> Scenario:
    txdw, lsc, rxt0 = (1 << ICR_BITS[n] for n in ("TXDW", "LSC", "RXT0"))
    steps = [
        _r(_ICR), _w(_ICS, txdw), _r(_ICS), _w(_IMS, lsc), _r(_IMS),
        _w(_IMS, txdw), _r(_IMS), _w(_IMC, txdw), _r(_IMS), _w(_IMS, txdw | rxt0),
        _r(_ICR), _r(_ICR), _w(_ICS, rxt0 | lsc), _w(_ICR, rxt0), _r(_ICS),
        _w(_IMC, 0xFFFF_FFFF), _r(_IMS), _w(_IMS, 0xFFFF_FFFF), _r(_IMS), _r(_ICR),
        _w(_ICS, 0xFFFF_FFFF), _r(_ICS), _w(_IMC, 0xFFFF_FFFF), _w(_IMS, lsc), _r(_ICR),
        _w(_ICS, 1 << 31), _r(_ICR), _w(_ICS, 0x3), _w(_IMC, 0x3), _r(_IMC), _r(_ICR),
        Step("write", "config", 0x04, 2, COMMAND_ENABLE | 0x400), _w(_ICS, lsc), _r(_ICR),
        Step("write", "config", 0x04, 2, COMMAND_ENABLE),
    ]  # fmt: skip
    return Scenario("interrupt cause and mask", tuple(steps))


def _ctrl_reset() -> Scenario:
    steps = [
        _w(0x100, 0x0400_8002), _w(0x400, 0x0004_0108), _w(_IMS, 0x9D), _w(0x18, 0x1234_5678),
        _w(0x5400, 0xDEAD_BEEF), _w(0x5404, 0x8000_1234), _w(0x5200, 0x55AA), _w(0x28, 0x00C2_8001),
        _w(0x3818, 0), _w(_ICS, 0x4), _w(0x0, 0x0414_0240), _r(0x0), _r(0x8), _r(0x100), _r(0x400),
        _r(_IMS), _r(0x18), _r(0x5400), _r(0x5404), _r(0x5200), _r(0x28), _r(_ICR),
        _w(_MDIC, _mdic(1, 1, 0, 0x0100)), _w(_MDIC, _mdic(1, 1, 0x14, 0x0170)),
        _w(0x0, 0x8014_0240), _r(0x0), _w(_MDIC, _mdic(2, 1, 0)), _r(_MDIC),
        _w(_MDIC, _mdic(2, 1, 0x14)), _r(_MDIC), _w(0x0, 0x0014_0240), _r(0x0),
    ]  # fmt: skip
    return Scenario("CTRL.RST and CTRL.PHY_RST", tuple(steps))


def _io_bar() -> Scenario:
    steps = [
        Step("read", "io", 0x00), Step("write", "io", 0x00, 4, 0x08), Step("read", "io", 0x00),
        Step("read", "io", 0x04), Step("write", "io", 0x00, 4, 0xD0),
        Step("write", "io", 0x04, 4, 0x4), Step("read", "mmio", 0xD0), Step("read", "io", 0x04),
        Step("read", "io", 0x01, 1), Step("read", "io", 0x06, 2), Step("read", "io", 0x08),
        Step("read", "io", 0x3C),
    ]  # fmt: skip
    return Scenario("I/O BAR (IOADDR/IODATA)", tuple(steps))


def tx_descriptor(buffer: int, length: int, cmd: int, status: int = 0) -> bytes:
    """A 16-byte legacy transmit descriptor."""
    return struct.pack("<QHBBBBH", buffer, length, 0, cmd, status, 0, 0)


def _frame(index: int, length: int = 60) -> bytes:
    head = bytes.fromhex("ffffffffffff525400123456") + b"\x88\xb5"
    return (head + bytes([index]) * (length - len(head)))[:length]


def tx_ring_steps(cmds: tuple[int, ...]) -> list[Step]:
    """Plant a ring of len(cmds) descriptors (buffers after it) and program TDBAL..TDT."""
    ring = b""
    steps: list[Step] = []
    for i, cmd in enumerate(cmds):
        buf = BUF_BASE + 0x100 * i
        steps.append(Step("write", "ram", buf, data=_frame(i)))
        ring += tx_descriptor(buf, 60, cmd)
    steps += [
        Step("write", "ram", RING_BASE, data=ring),
        _w(_TDBAL, RING_BASE), _w(_TDBAH, 0), _w(_TDLEN, DESC_BYTES * len(cmds)),
        _w(_TDH, 0), _w(_TDT, 0),
    ]  # fmt: skip
    return steps


def _transmit() -> Scenario:
    rs_eop = _CMD_EOP | _CMD_IFCS | _CMD_RS
    cmds = (rs_eop, _CMD_IFCS, rs_eop, rs_eop | 0x10, _CMD_EOP, rs_eop, rs_eop, rs_eop)
    txdw, txqe = 1 << ICR_BITS["TXDW"], 1 << ICR_BITS["TXQE"]
    steps = tx_ring_steps(cmds)
    steps += [
        _w(_IMS, txdw), _w(_TDT, 1), _r(_TDH), _r(_ICR),  # TCTL.EN clear: nothing moves
        _w(_TCTL, _TCTL_EN_PSP), _r(_TDH), _r(_ICR), _w(_TDT, 3), _r(_TDH), _r(_ICR),
        _w(_IMC, txdw), _w(_IMS, txqe), _w(_TDT, 6), _r(_TDH), _r(_ICR),
        _r(0x40D4), _r(0x4080), _r(0x4090), _r(0x4094), _r(0x40F4), _r(0x40D8),
        _w(_TDT, 2), _r(_TDH), _r(_ICR), _w(_TDT, 2), _r(_ICR),  # wraps around
        _w(_TCTL, 0), _w(_TDT, 4), _r(_TDH), _w(_TCTL, _TCTL_EN_PSP), _r(_TDH), _r(_ICR),
    ]  # fmt: skip
    return Scenario("transmit ring with writeback", tuple(steps), ((RING_BASE, 8 * DESC_BYTES),))


def _narrow_accesses() -> Scenario:
    """1- and 2-byte accesses: QEMU widens them to 4 bytes at the same address."""
    ctrl, status, rctl = (MAC_REGISTERS.named(n).offset for n in ("CTRL", "STATUS", "RCTL"))
    steps = [
        _r(status + 1, 1), _r(status + 2, 2), _r(status + 3, 1),
        _w(rctl, 0xFFFF_FFFF), _w(rctl, 0x5A, 1), _r(rctl),  # RCTL[31:8] cleared
        _w(rctl, 0xFFFF_FFFF), _w(rctl + 2, 0x1234, 2), _r(rctl), _r(rctl + 1, 1),
        _w(ctrl + 1, 0x41, 1), _r(ctrl),  # the byte lands in CTRL[7:0]
        _w(_IMS + 1, 0x04, 1), _r(_IMS), _w(_IMC, 0xFFFF_FFFF),
        _w(_ICS + 2, 0x0201, 2), _r(_ICR + 3, 1), _r(_ICR),
        _w(_EERD, 0xABCD_0512), _r(_EERD), _r(_EERD + 2, 2),  # no START: stored as written
        _w(_EERD, 0x0001_0001), _r(_EERD), _w(_EERD, 0x0201), _r(_EERD),
    ]  # fmt: skip
    return Scenario("narrow register accesses, EERD without START", tuple(steps))


def _writeback_status() -> Scenario:
    """Which descriptors are written back, and which STA bits survive (EC, LC, TU do not)."""
    rps = 0x10
    ring = b""
    steps: list[Step] = []
    cmds = (
        (_CMD_EOP | rps, 0x0E),
        (_CMD_EOP | _CMD_RS, 0xFE),
        (_CMD_EOP, 0x0E),
        (_CMD_EOP | rps | _CMD_RS, 0x30),
    )
    for i, (cmd, sta) in enumerate(cmds):
        buf = BUF_BASE + 0x100 * i
        steps.append(Step("write", "ram", buf, data=_frame(i)))
        ring += tx_descriptor(buf, 60, cmd, sta)
    ring += bytes(DESC_BYTES * (RING_DESCRIPTORS - len(cmds)))
    steps += [
        Step("write", "ram", RING_BASE, data=ring),
        _w(_TDBAL, RING_BASE), _w(_TDBAH, 0), _w(_TDLEN, DESC_BYTES * RING_DESCRIPTORS),
        _w(_TDH, 0), _w(_TDT, 0), _r(_ICR), _w(_TCTL, _TCTL_EN_PSP),
        _w(_TDT, 1), _r(_ICR), _w(_TDT, len(cmds)), _r(_TDH), _r(_ICR),
    ]  # fmt: skip
    watch = ((RING_BASE, RING_DESCRIPTORS * DESC_BYTES),)
    return Scenario("transmit write-back for RS and RPS", tuple(steps), watch)


SCENARIOS: tuple[Scenario, ...] = (
    _reset_values(),
    _bar_sizing(),
    _eerd(),
    _eecd(),
    _phy(),
    _interrupts(),
    _ctrl_reset(),
    _io_bar(),
    _transmit(),
    _narrow_accesses(),
    _writeback_status(),
)

"""The e1000's receive sequences for ``verify --live``: frames from the wire into a live ring.

Why a kind of its own: the register sequences of :mod:`qtrace.devices.e1000.verify` write
every register with anything, the receive ring's too, but no frame ever arrives there.
Here the network backend (the test, :mod:`qtrace.verify.netdev`) sends frames while a
random driver runs the receive side: a planted ring of 8, 16 or 32 descriptors with
buffers of the size RCTL selects, the ring registers programmed once, then random actions
on what receive involves: frames of random sizes and addresses (shorter than Ethernet's
minimum, filling a buffer to the byte with the CRC, spanning several buffers, too long
without RCTL.LPE, too long for the descriptors there are), descriptors given back (RDT),
RCTL rewritten (each write holds receive for a second in QEMU, so most are followed by a
clock step past it), the interrupt registers, the receive counters, the address filters
(RAL/RAH, MTA), the delay timers (RDTR, RADV) and COMMAND writes (a flush point).

Held in these sequences (each for the reason given; the register sequences write these
bits freely): the ring's base, its length and the pointers stay inside the planted ring;
RCTL's loopback mode (LBM) stays 0; COMMAND stays IO | MEMORY | MASTER. The clocks are
aligned to a millisecond first, since QEMU's receive hold ends on a whole millisecond.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from qtrace.devices.e1000.model import DEFAULT_MAC, MAC_REGISTERS
from qtrace.devices.e1000.scenarios import DESC_BYTES
from qtrace.verify.steps import CLOCK_ALIGN, COMMAND_ENABLE, Step

__all__ = ["RECEIVE", "RX_BUF_BASE", "RX_RING_BASE", "generate_receive", "keeps_receive_holds"]

RECEIVE = "with frames arriving"
RX_RING_BASE = 0x0060_0000
"""Above the register sequences' transmit ring and the MiB its head may reach."""
RX_BUF_BASE = 0x0061_0000
_HOLD_NS = 1_100_000_000  # past QEMU's 1000 ms receive hold after an RCTL write
_RCTL_EN = 1 << 1
_RCTL_LBM = 0x3 << 6
_BSIZE_SEX = {  # buffer bytes -> RCTL BSIZE (17:16) | BSEX (25)
    256: 3 << 16, 512: 2 << 16, 1024: 1 << 16, 2048: 0,
    4096: 3 << 16 | 1 << 25, 8192: 2 << 16 | 1 << 25, 16384: 1 << 16 | 1 << 25,
}  # fmt: skip
_BUFFER_WEIGHTS = {256: 6, 512: 2, 1024: 2, 2048: 6, 4096: 1, 8192: 1, 16384: 1}
_MAX_PLANTED = 128 * 1024
_IRQ_CAUSES = (1 << 4) | (1 << 6) | (1 << 7)  # RXDMT0, RXO, RXT0
_COUNTERS = ("GPRC", "TPR", "TORL", "TORH", "MPC", "GORCL", "GORCH", "PRC64", "PRC1522",
             "BPRC", "MPRC", "RNBC", "ROC", "RUC", "CRCERRS")  # fmt: skip
_ACTIONS = {"frame": 32, "give-back": 14, "rdt": 4, "rdh": 2, "rctl": 6, "clock": 4,
            "icr": 10, "causes": 5, "status": 10, "counter": 8, "delay": 3, "filter": 4,
            "command": 2}  # fmt: skip
_MIN_ACTIONS, _MAX_ACTIONS = 10, 40
_FRAME_BUDGET = 48 * 1024
"""Frame bytes per sequence at most: what QEMU may hold unread must fit one read of its
stream netdev (64 KiB and a little), which the runner's model of it assumes."""
_VLAN_TAG = b"\x81\x00"  # VET's reset value: an 802.1Q tag


def _reg(name: str) -> int:
    return MAC_REGISTERS.named(name).offset


def _w(name: str, value: int) -> Step:
    return Step("write", "mmio", _reg(name), 4, value & 0xFFFF_FFFF)


def _r(name: str) -> Step:
    return Step("read", "mmio", _reg(name), 4)


class _Driver:
    """What the random driver knows of its ring while it draws a sequence."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.buffer = rnd.choices(tuple(_BUFFER_WEIGHTS), tuple(_BUFFER_WEIGHTS.values()))[0]
        self.count = min(rnd.choice((8, 16, 32)), max(8, _MAX_PLANTED // self.buffer))
        self.rdt = 0
        self.addresses = [DEFAULT_MAC]
        self.budget = _FRAME_BUDGET

    def rctl(self) -> int:
        """A random RCTL: the receiver on nine times in ten, the buffers the size planted
        two times in three, loopback off."""
        value = self.rnd.getrandbits(32) & ~_RCTL_LBM
        if self.rnd.randrange(10):
            value |= _RCTL_EN
        if self.rnd.randrange(3):
            value = value & ~(3 << 16 | 1 << 25) | _BSIZE_SEX[self.buffer]
        return value

    def frame(self) -> bytes:
        rnd = self.rnd
        kind = rnd.randrange(20)
        if kind < 12:
            size = rnd.randint(14, 1514)
        elif kind < 15:  # to a buffer's last byte, with the CRC, give or take one
            size = self.buffer * rnd.randint(1, 3) - 4 + rnd.randint(-1, 1)
        elif kind < 17:
            size = rnd.randint(1, 59)
        elif kind < 19:
            size = rnd.randint(1515, 4000)
        else:
            size = rnd.randint(4000, 16384)
        size = max(size, 1)
        pick = rnd.randrange(20)
        if pick < 7:
            dst = rnd.choice(self.addresses)
        elif pick < 12:
            dst = b"\xff" * 6
        elif pick < 15:
            dst = bytes([rnd.getrandbits(8) | 1]) + rnd.randbytes(5)
        else:
            dst = bytes([rnd.getrandbits(8) & ~1]) + rnd.randbytes(5)
        frame = bytearray((dst + rnd.randbytes(max(0, size - 6)))[:size])
        if frame[12:14] == _VLAN_TAG:  # VLAN frames are not generated (not modelled)
            frame[12] ^= 0x80
        return bytes(frame)

    def action(self) -> list[Step]:
        rnd = self.rnd
        [op] = rnd.choices(tuple(_ACTIONS), tuple(_ACTIONS.values()))
        if op == "frame":
            frame = self.frame()[: self.budget]
            self.budget -= len(frame)
            return [Step("write", "net", 0, data=frame)] if frame else []
        if op in ("give-back", "rdt"):
            step = rnd.randint(1, self.count - 1) if op == "give-back" else 0
            self.rdt = (self.rdt + step) % self.count if step else rnd.randrange(self.count)
            return [_w("RDT", self.rdt)]
        if op == "rdh":
            return [_w("RDH", rnd.randrange(self.count)), _r("RDH")]
        if op == "rctl":
            steps = [_w("RCTL", self.rctl()), _r("RCTL")]
            if rnd.randrange(5):
                steps.append(Step("write", "clock", 0, 8, _HOLD_NS))
            return steps
        if op == "clock":
            ns = _HOLD_NS if rnd.randrange(2) else rnd.randint(1_000, 50_000_000)
            return [Step("write", "clock", 0, 8, ns)]
        if op == "icr":  # mostly the read that clears, sometimes a write of 1s that clears
            return [_w("ICR", rnd.getrandbits(32))] if not rnd.randrange(5) else [_r("ICR")]
        if op == "causes":
            name = rnd.choice(("IMS", "IMC", "ICS"))
            value = _IRQ_CAUSES & rnd.getrandbits(32) if rnd.randrange(2) else rnd.getrandbits(32)
            return [_w(name, value), _r("ICR" if name == "ICS" else "IMS")]
        if op == "status":
            return [_r(rnd.choice(("RDH", "RDH", "RDT", "RCTL", "ICS", "STATUS")))]
        if op == "counter":
            return [_r(rnd.choice(_COUNTERS))]
        if op == "delay":
            name = rnd.choice(("RDTR", "RADV"))
            return [_w(name, rnd.getrandbits(16 if rnd.randrange(2) else 8)), _r(name)]
        if op == "filter":
            return self._filter()
        return [Step("write", "config", 0x04, 2, COMMAND_ENABLE)]

    def _filter(self) -> list[Step]:
        rnd = self.rnd
        if rnd.randrange(2):
            index = rnd.randrange(16)
            mac = bytes([rnd.getrandbits(8) & ~1]) + rnd.randbytes(5)
            valid = rnd.randrange(4) != 0
            self.addresses.append(mac)
            low = int.from_bytes(mac[:4], "little")
            high = int.from_bytes(mac[4:], "little") | (1 << 31 if valid else 0)
            return [_w(f"RAL[{index}]", low), _w(f"RAH[{index}]", high)]
        return [_w(f"MTA[{rnd.randrange(128)}]", rnd.getrandbits(32))]


def generate_receive(rnd: random.Random) -> list[Step]:
    """One receive sequence (see the module docstring), every choice from ``rnd``."""
    driver = _Driver(rnd)
    ring = b"".join(
        (RX_BUF_BASE + i * driver.buffer).to_bytes(8, "little") + bytes(8)
        for i in range(driver.count)
    )
    driver.rdt = driver.count - 1 if rnd.randrange(4) else rnd.randrange(driver.count)
    steps = [
        Step("write", "ram", RX_RING_BASE, data=ring),
        Step("write", "ram", RX_BUF_BASE, data=bytes(driver.count * driver.buffer)),
        Step("write", "clock", 0, 8, CLOCK_ALIGN),
        _w("RDBAL", RX_RING_BASE | rnd.getrandbits(4)),  # bits 3:0 are stored, not used
        _w("RDBAH", 0),
        _w("RDLEN", driver.count * DESC_BYTES),
        _w("RDH", 0),
        _w("RDT", driver.rdt),
        _w("IMS", rnd.getrandbits(32) if rnd.randrange(3) else _IRQ_CAUSES),
        _w("RCTL", driver.rctl()),
        Step("write", "clock", 0, 8, _HOLD_NS),
    ]
    for _ in range(rnd.randint(_MIN_ACTIONS, _MAX_ACTIONS)):
        steps += driver.action()
    return steps


def keeps_receive_holds(steps: Sequence[Step]) -> bool:
    """Whether ``steps`` keeps what :func:`generate_receive` holds: the ring registers
    written once, before any frame, with the planted ring; the pointers inside it; RCTL's
    loopback off; COMMAND as set up; the clock aligned before the first RCTL write. The
    shrinker tries only such sequences."""
    count = 0
    aligned = False
    ring = {"RDBAL": False, "RDBAH": False, "RDLEN": False}
    for step in steps:
        if step.space == "clock" and step.value == CLOCK_ALIGN:
            aligned = True
        if step.space == "net" and not all(ring.values()):
            return False
        if step.space == "config" and step.op == "write" and step.value != COMMAND_ENABLE:
            return False
        if step.space != "mmio" or step.op != "write":
            continue
        reg = MAC_REGISTERS.at(step.offset)
        name = reg.name if reg is not None else ""
        if name in ring:
            if ring[name] or (name == "RDBAL" and step.value & ~0xF != RX_RING_BASE):
                return False
            if name == "RDBAH" and step.value:
                return False
            ring[name] = True
            count = step.value // DESC_BYTES if name == "RDLEN" else count
        elif name in ("RDH", "RDT") and not 0 <= step.value < max(count, 1):
            return False
        elif name == "RCTL" and (step.value & _RCTL_LBM or not aligned):
            return False
    return True

"""Transmit and receive descriptor rings of the e1000 (legacy descriptors).

Why: the rings are where the device meets guest memory. The model follows SDM 3.2-3.4:
a ring is ``xDLEN / 16`` descriptors of 16 bytes at ``xDBAH:xDBAL``; hardware owns the
descriptors from head up to (not including) tail.

Transmit: from TDH to TDT, each descriptor's buffer is fetched by DMA and gathered until
a descriptor with EOP ends the frame, which goes to the sink. A descriptor with RS (or
RPS) gets DD written back into its status byte (EC, LC, TU cleared) and sets TXDW; a run
that ends with the ring empty sets TXQE. Extended (DEXT) descriptors are walked and their
data gathered, but the offloads they request (checksum insertion, TCP segmentation) are
not modelled and are reported as such.

Receive (SDM 3.2): a frame lands in the buffers of the descriptors at RDH, split over
several when it is larger than the RCTL buffer size; each descriptor gets its length and
status written back (DD; EOP on the last), RDH advances, RXT0 is set, and RXDMT0 when the
free descriptors fall to the RCTL.RDMTS threshold. The lengths count the frame's 4-byte
CRC unless RCTL.SECRC strips it; a frame without enough free descriptors for all of it is
dropped (RXO, MPC). What QEMU 10.2.2 does differently from the SDM, and the model with it,
is said where it happens (observed under qtest, issue 13): the CRC is counted in the
lengths but its bytes are never written, short frames are not padded, and the last
descriptor's status also has IXSM (checksum indication: ignore).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Protocol

from qtrace.devices.e1000.model.e1000_regs import ICR_BITS, RAH_AV
from qtrace.devices.e1000.model.e1000_stats import CounterHost, count_missed, count_rx, count_tx

__all__ = [
    "RingHost",
    "RxDescriptor",
    "RxOutcome",
    "TxDescriptor",
    "TxRun",
    "accepts",
    "describe_rx",
    "describe_tx",
    "oversized",
    "run_rx",
    "run_tx",
    "rx_buffer_size",
    "rx_descriptors_needed",
    "rx_free",
    "tx_causes",
]

DESC_BYTES = 16

TX_CMD_EOP = 0x01
TX_CMD_RS = 0x08
TX_CMD_RPS = 0x10  # report packet sent (82544GC/EI in the SDM); QEMU writes back for it too
TX_CMD_DEXT = 0x20
TX_DCMD_TSE = 0x04
TX_POPTS_CSUM = 0x03  # IXSM | TXSM
STA_DD = 0x01
# Excess collisions, late collision, transmit underrun: error bits a write-back clears.
STA_EC, STA_LC, STA_TU = 0x02, 0x04, 0x08
RX_STA_EOP = 0x02
RX_STA_IXSM = 0x04  # ignore checksum indication
RCTL_SECRC = 1 << 26  # strip the Ethernet CRC
CRC_BYTES = 4

_TX_LEGACY = struct.Struct("<QHBBBBH")  # buffer, length, CSO, CMD, STA, CSS, special
_RX_LEGACY = struct.Struct("<QHHBBH")  # buffer, length, checksum, status, errors, special
_RX_STATUS = 12  # the status byte's offset in a receive descriptor
# RDMTS: 1/2, 1/4, 1/8 of the ring (SDM 13.4.22); the reserved 11b is 1/16 in QEMU 10.2.2
# (observed under qtest, issue 13).
_RXDMT_SHIFT = {0: 1, 1: 2, 2: 3, 3: 4}


class RingHost(CounterHost, Protocol):
    """What ring processing needs from the device."""

    def dma_read(self, addr: int, size_bytes: int) -> bytes:
        """Read guest memory as bus master."""
        ...

    def dma_write(self, addr: int, data: bytes) -> None:
        """Write guest memory as bus master."""
        ...

    def note_unimplemented(self, feature: str) -> None:
        """Record that the guest used a feature the model does not model."""
        ...


@dataclass(frozen=True)
class TxDescriptor:
    """One descriptor a transmit pass processed (what ``--explain`` tells of it)."""

    index: int
    addr: int
    cmd: int
    length: int
    written_back: bool
    context: bool = False


@dataclass
class TxRun:
    """The outcome of one pass over the transmit ring."""

    frames: list[bytes] = field(default_factory=list)
    causes: int = 0
    descriptors: int = 0
    processed: list[TxDescriptor] = field(default_factory=list)


@dataclass(frozen=True)
class RxDescriptor:
    """One receive descriptor a frame went into (what ``--explain`` tells of it)."""

    index: int
    addr: int
    buffer: int
    length: int
    status: int


@dataclass(frozen=True)
class RxOutcome:
    """Whether a received frame was stored, the causes it raised and where it went."""

    stored: bool
    causes: int
    reason: str = ""
    descriptors: tuple[RxDescriptor, ...] = ()


_BASE_ALIGN = 0xF  # descriptor rings are 16-byte aligned: the base's bits 3:0 are ignored


def _ring(host: RingHost, prefix: str) -> tuple[int, int]:
    # SDM 13.4.38/13.4.43: xDBAL bits 3:0 are ignored (the SDM has them read 0). Observed in
    # QEMU 10.2.2: they are stored and read back as written, but the transmit ring's
    # descriptor fetches still ignore them (qtest: TDBAL = base | 8 fetches the descriptor at
    # base). The receive ring does the same here; no frame reaches QEMU to check it.
    base = host.reg(f"{prefix}DBAH") << 32 | (host.reg(f"{prefix}DBAL") & ~_BASE_ALIGN)
    return base, host.reg(f"{prefix}DLEN") // DESC_BYTES


def run_tx(host: RingHost, pending: bytearray) -> TxRun:
    """Process descriptors from TDH to TDT.

    Args:
        host: The device.
        pending: Bytes gathered so far for a frame whose EOP has not been seen; kept
            by the device across runs, updated in place.

    Returns:
        The frames completed, the interrupt causes to set, and how many descriptors ran.
    """
    run = TxRun(causes=1 << ICR_BITS["TXQE"])
    base, _count = _ring(host, "T")
    ring_bytes = host.reg("TDLEN")
    start = head = host.reg("TDH")
    # Observed in QEMU 10.2.2: the descriptor at TDH is processed even when TDLEN is 0 or
    # TDH lies beyond the ring; the head wraps to 0 once it passes TDLEN, and a pass stops
    # at TDT, when the head comes back to where it started, or (qtest, issue 13) after that
    # one descriptor when TDH started beyond the ring (TDLEN 0x80, TDH 100, TDT 50: TDH
    # reads 0 afterwards and descriptors 0-7 are not touched).
    outside = start * DESC_BYTES >= ring_bytes
    while head != host.reg("TDT"):
        addr = base + head * DESC_BYTES
        descriptor = host.dma_read(addr, DESC_BYTES)
        buffer, length, _cso, cmd, sta, _css, _special = _TX_LEGACY.unpack(descriptor)
        context = False
        if cmd & TX_CMD_DEXT:
            length, context = _extended(host, descriptor)
        if length:
            pending += host.dma_read(buffer, length)
        if cmd & TX_CMD_EOP and not context:
            frame = bytes(pending)
            pending.clear()
            count_tx(host, frame)
            run.frames.append(frame)
        written_back = bool(cmd & (TX_CMD_RS | TX_CMD_RPS))
        if written_back:
            # QEMU 10.2.2 (observed, and in its txdesc_writeback): RS or RPS asks for a
            # write-back, one 4-byte DMA write of the descriptor's last dword: STA with DD
            # set and EC, LC, TU cleared (nothing went wrong on the wire), CSS and the
            # special field as fetched.
            status = (sta | STA_DD) & ~(STA_EC | STA_LC | STA_TU)
            host.dma_write(addr + 12, bytes([status]) + descriptor[13:16])
            run.causes |= 1 << ICR_BITS["TXDW"]
        run.processed.append(TxDescriptor(head, addr, cmd, length, written_back, context))
        head += 1
        if head * DESC_BYTES >= ring_bytes:
            head = 0
        host.set_reg("TDH", head)
        run.descriptors += 1
        if head == start or outside:
            break
    return run


_TX_CMD_NAMES = (
    (TX_CMD_EOP, "EOP"), (0x02, "IFCS"), (0x04, "IC"), (TX_CMD_RS, "RS"),
    (TX_CMD_RPS, "RPS"), (TX_CMD_DEXT, "DEXT"), (0x40, "VLE"), (0x80, "IDE"),
)  # fmt: skip


def describe_tx(run: TxRun) -> list[str]:
    """What a transmit pass did, one line per descriptor and frame (for ``--explain``)."""
    lines = []
    for d in run.processed:
        cmd = "|".join(name for bit, name in _TX_CMD_NAMES if d.cmd & bit) or "none"
        kind = "context descriptor" if d.context else f"{d.length} bytes of data"
        line = f"descriptor {d.index} fetched at {d.addr:#x}: CMD {cmd}, {kind}"
        if d.cmd & TX_CMD_EOP and not d.context:
            line += ", end of frame"
        if d.written_back:
            line += f"; status written back at {d.addr + 12:#x} (DD set, EC/LC/TU clear)"
        lines.append(line)
    lines += [f"frame of {len(frame)} bytes sent (no CRC)" for frame in run.frames]
    return lines


def tx_causes(run: TxRun) -> str:
    """Why a transmit pass raises its causes, in the SDM's terms (for ``--explain``)."""
    why = "TXQE: the pass ended with the transmit queue empty"
    if run.causes & 1 << ICR_BITS["TXDW"]:
        why = "TXDW: a descriptor with RS/RPS was written back; " + why
    return why


def _extended(host: RingHost, descriptor: bytes) -> tuple[int, bool]:
    """Data length and "is a context descriptor" for an extended (DEXT) descriptor."""
    dword2 = int.from_bytes(descriptor[8:12], "little")
    if (dword2 >> 20) & 0xF == 0:  # DTYP 0000b: context descriptor, offload parameters only
        host.note_unimplemented("tx offload context descriptor")
        return 0, True
    if (dword2 >> 24) & TX_DCMD_TSE:
        host.note_unimplemented("tx TCP segmentation (TSE)")
    if descriptor[13] & TX_POPTS_CSUM:
        host.note_unimplemented("tx checksum insertion (POPTS.IXSM/TXSM)")
    return dword2 & 0xF_FFFF, False


def rx_buffer_size(rctl: int) -> int:
    """Receive buffer size selected by RCTL.BSIZE and RCTL.BSEX (SDM 13.4.22)."""
    bsize = (rctl >> 16) & 0x3
    if rctl & (1 << 25):  # BSEX: 16x the size, 00b reserved
        return {0: 2048, 1: 16384, 2: 8192, 3: 4096}[bsize]
    return {0: 2048, 1: 1024, 2: 512, 3: 256}[bsize]


def _mta_hash(dst: bytes, mo: int) -> int:
    """The 12-bit multicast table index for RCTL.MO = ``mo`` (SDM 13.4.22)."""
    shift = (4, 3, 2, 0)[mo]
    return ((dst[4] >> shift) | (dst[5] << (8 - shift))) & 0xFFF


def accepts(host: CounterHost, frame: bytes) -> bool:
    """Whether the receive filters (RCTL, RAL/RAH, MTA) accept ``frame`` (SDM 3.2.1).

    Broadcast is taken by RCTL.BAM, other multicast by MPE, unicast by UPE; then an exact
    match with one of the 16 valid receive addresses takes it, and the MTA hash (RCTL.MO).
    Observed in QEMU 10.2.2 (qtest, issue 13), where the SDM has the MTA for multicast
    only: the hash takes any frame, unicast and broadcast too (MPE does not take
    broadcast); a frame shorter than its destination address is filtered as if zeros
    followed (then stored as it is).
    """
    rctl = host.reg("RCTL")
    dst = frame[:6].ljust(6, b"\0")
    multicast = bool(dst[0] & 1)
    if dst == b"\xff" * 6:
        promiscuous = rctl & (1 << 15)  # BAM
    else:
        promiscuous = rctl & (1 << 4 if multicast else 1 << 3)  # MPE, UPE
    if promiscuous:
        return True
    for i in range(16):
        rah = host.reg(f"RAH[{i}]")
        if rah & RAH_AV and dst == (host.reg(f"RAL[{i}]") | (rah & 0xFFFF) << 32).to_bytes(
            6, "little"
        ):
            return True
    index = _mta_hash(dst, (rctl >> 12) & 0x3)
    return bool(host.reg(f"MTA[{index >> 5}]") >> (index & 31) & 1)


RCTL_LPE = 1 << 5  # long packet enable
RCTL_SBP = 1 << 2  # store bad packets
MAX_FRAME_BYTES = 1522  # with the CRC, without LPE: an 802.1Q-tagged Ethernet frame
MAX_LONG_FRAME_BYTES = 16384  # with LPE


def oversized(rctl: int, frame_bytes: int) -> bool:
    """Whether a frame of ``frame_bytes`` (no CRC) is too long to receive: longer, with its
    CRC, than 1522 bytes, or 16384 with RCTL.LPE (SDM 13.4.22). Observed in QEMU 10.2.2:
    RCTL.SBP stores such a frame anyway."""
    limit = MAX_LONG_FRAME_BYTES if rctl & RCTL_LPE else MAX_FRAME_BYTES
    return not rctl & RCTL_SBP and frame_bytes + CRC_BYTES > limit


def rx_free(host: RingHost) -> int:
    """Receive descriptors the hardware owns: from RDH up to, not including, RDT (SDM
    3.2.6); none when RDH is beyond the ring or the ring has no descriptors."""
    _base, count = _ring(host, "R")
    head, tail = host.reg("RDH"), host.reg("RDT")
    return (tail - head) % count if count and head < count else 0


def rx_descriptors_needed(rctl: int, frame_bytes: int) -> int:
    """How many buffers a frame of ``frame_bytes`` (no CRC) fills under ``rctl``: its CRC
    counts unless SECRC strips it."""
    total = frame_bytes + (0 if rctl & RCTL_SECRC else CRC_BYTES)
    return -(-total // rx_buffer_size(rctl))


def run_rx(host: RingHost, frame: bytes) -> RxOutcome:
    """Store ``frame`` (no CRC) in the receive ring, or drop it for want of descriptors.

    Per descriptor: the 16-byte descriptor is read, the buffer written, the descriptor
    written back. Observed in QEMU 10.2.2 (qtest, issue 13), where the SDM has hardware
    write the status afresh: the write-back keeps what the descriptor held (buffer address,
    checksum, errors, and the status bits other than DD and EOP, so a reused descriptor
    keeps an earlier IXSM), sets the length and clears the VLAN field, with DD clear; then
    the status byte alone is written again with DD set.
    """
    rctl = host.reg("RCTL")
    size = rx_buffer_size(rctl)
    total = len(frame) + (0 if rctl & RCTL_SECRC else CRC_BYTES)
    needed = -(-total // size)
    if rx_free(host) < needed:
        why = f"{needed} receive descriptors needed, {rx_free(host)} free"
        count_missed(host)
        return RxOutcome(False, 1 << ICR_BITS["RXO"], why)
    base, count = _ring(host, "R")
    head = host.reg("RDH")
    done = 0
    stored: list[RxDescriptor] = []
    for _ in range(needed):
        addr = base + head * DESC_BYTES
        descriptor = host.dma_read(addr, DESC_BYTES)
        buffer = int.from_bytes(descriptor[:8], "little")
        length = min(size, total - done)
        data = frame[done : done + length]  # observed: the CRC is counted, never written
        if data:
            host.dma_write(buffer, data)
        done += length
        _buffer, _length, csum, old, errors, _special = _RX_LEGACY.unpack(descriptor)
        status = old & ~(STA_DD | RX_STA_EOP) | (RX_STA_EOP | RX_STA_IXSM if done >= total else 0)
        host.dma_write(addr, _RX_LEGACY.pack(buffer, length, csum, status, errors, 0))
        host.dma_write(addr + _RX_STATUS, bytes([status | STA_DD]))
        stored.append(RxDescriptor(head, addr, buffer, length, status | STA_DD))
        head = (head + 1) % count
    host.set_reg("RDH", head)
    count_rx(host, frame)
    causes = 1 << ICR_BITS["RXT0"]
    threshold = count >> _RXDMT_SHIFT[(rctl >> 8) & 0x3]
    if rx_free(host) <= threshold:
        causes |= 1 << ICR_BITS["RXDMT0"]
    return RxOutcome(True, causes, descriptors=tuple(stored))


def describe_rx(frame: bytes, outcome: RxOutcome) -> list[str]:
    """What receiving a frame did, one line per descriptor (for ``--explain``)."""
    if not outcome.stored:
        return [f"frame of {len(frame)} bytes dropped: {outcome.reason} (RXO, MPC)"]
    lines = []
    for d in outcome.descriptors:
        eop = ", end of packet" if d.status & RX_STA_EOP else ""
        lines.append(
            f"descriptor {d.index} at {d.addr:#x}: buffer {d.buffer:#x}, length {d.length}, "
            f"status {d.status:#04x} (DD{eop})"
        )
    return lines

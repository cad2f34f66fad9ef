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

Receive: a frame lands in the buffers of the descriptors at RDH (split over several when
larger than the RCTL buffer size), each gets its length and DD (EOP on the last) written
back, RDH advances, RXT0 is set, and RXDMT0 when the free descriptors fall to the
RCTL.RDMTS threshold. With too few descriptors the frame is dropped (RXO, RNBC, MPC).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Protocol

from qtrace.devices.e1000.model.e1000_regs import ICR_BITS, RAH_AV
from qtrace.devices.e1000.model.e1000_stats import CounterHost, count_missed, count_rx, count_tx

__all__ = [
    "RingHost",
    "RxOutcome",
    "TxDescriptor",
    "TxRun",
    "accepts",
    "describe_tx",
    "run_rx",
    "run_tx",
    "rx_buffer_size",
    "tx_causes",
]

DESC_BYTES = 16
MIN_FRAME_BYTES = 60  # without CRC; shorter frames are padded, as on the wire

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

_TX_LEGACY = struct.Struct("<QHBBBBH")  # buffer, length, CSO, CMD, STA, CSS, special
_RXDMT_SHIFT = {0: 1, 1: 2, 2: 3}  # RDMTS: 1/2, 1/4, 1/8 of the ring


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
class RxOutcome:
    """Whether a received frame was stored, and the causes it raised."""

    stored: bool
    causes: int
    reason: str = ""


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
    """Whether the receive filters (RCTL, RAL/RAH, MTA) accept ``frame``."""
    rctl = host.reg("RCTL")
    dst = frame[:6]
    if len(dst) < 6:
        return False
    if dst == b"\xff" * 6 and rctl & (1 << 15):  # BAM
        return True
    if dst[0] & 1:
        if rctl & (1 << 4):  # MPE
            return True
        index = _mta_hash(dst, (rctl >> 12) & 0x3)
        return bool(host.reg(f"MTA[{index >> 5}]") >> (index & 31) & 1)
    if rctl & (1 << 3):  # UPE
        return True
    for i in range(16):
        rah = host.reg(f"RAH[{i}]")
        if rah & RAH_AV and dst == (host.reg(f"RAL[{i}]") | (rah & 0xFFFF) << 32).to_bytes(
            6, "little"
        ):
            return True
    return False


def run_rx(host: RingHost, frame: bytes) -> RxOutcome:
    """Store ``frame`` (no CRC) in the receive ring, or drop it for want of descriptors."""
    frame = frame.ljust(MIN_FRAME_BYTES, b"\0")
    base, count = _ring(host, "R")
    head, tail = host.reg("RDH"), host.reg("RDT")
    size = rx_buffer_size(host.reg("RCTL"))
    chunks = [frame[i : i + size] for i in range(0, len(frame), size)]
    free = (tail - head) % count if count and head < count else 0
    if free < len(chunks):
        count_missed(host)
        return RxOutcome(False, 1 << ICR_BITS["RXO"], "no free receive descriptors")
    for i, chunk in enumerate(chunks):
        addr = base + head * DESC_BYTES
        buffer = int.from_bytes(host.dma_read(addr, 8), "little")
        host.dma_write(buffer, chunk)
        status = STA_DD | (RX_STA_EOP if i == len(chunks) - 1 else 0)
        host.dma_write(addr + 8, struct.pack("<HHBBH", len(chunk), 0, status, 0, 0))
        head = (head + 1) % count
    host.set_reg("RDH", head)
    count_rx(host, frame)
    causes = 1 << ICR_BITS["RXT0"]
    threshold = count >> _RXDMT_SHIFT.get((host.reg("RCTL") >> 8) & 0x3, 3)
    if (tail - head) % count <= threshold:
        causes |= 1 << ICR_BITS["RXDMT0"]
    return RxOutcome(True, causes)

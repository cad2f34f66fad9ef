"""Receive (SDM 3.2, 13.4.22) as the e1000 model does it, with what QEMU 10.2.2 was seen to
do where it differs (docs/refemu.md, issue 13): lengths with the CRC, descriptors spanning
a frame, the write-back keeping the descriptor's other status bits, RXO for too few
descriptors, the thresholds, the filters, the RCTL hold and the backend's queue."""

from __future__ import annotations

import struct

from refemu_nic import Nic

from qtrace.devices.e1000.model.e1000 import RX_HOLD_MS

ICR, IMS, RCTL, MPC, GPRC, TORL = 0x00C0, 0x00D0, 0x0100, 0x4010, 0x4074, 0x40C0
RDBAL, RDBAH, RDLEN, RDH, RDT = 0x2800, 0x2804, 0x2808, 0x2810, 0x2818
MTA0 = 0x5200
RXDMT0, RXO, RXT0 = 1 << 4, 1 << 6, 1 << 7
EN, MPE, BAM, LPE, SBP, SECRC = 1 << 1, 1 << 4, 1 << 15, 1 << 5, 1 << 2, 1 << 26
BSIZE_256 = 3 << 16
RING, BUFFERS, DESCS, BUF_BYTES = 0x20000, 0x100000, 8, 0x800
OURS = bytes.fromhex("525400123456")
MS = 1_000_000


def ring(nic: Nic, tail: int, rctl: int = EN | BAM, held: bool = False) -> None:
    """An 8-descriptor ring, RDH 0, RDT ``tail``; RCTL written, its hold over unless
    ``held``."""
    for i in range(DESCS):
        nic.machine.memory.write(RING + 16 * i, struct.pack("<QQ", BUFFERS + i * BUF_BYTES, 0))
    for offset, value in ((RDBAL, RING), (RDBAH, 0), (RDLEN, DESCS * 16), (RDH, 0), (RDT, tail)):
        nic.wr(offset, value)
    nic.wr(RCTL, rctl)
    if not held:
        nic.dev.advance(RX_HOLD_MS * MS)


def descriptor(nic: Nic, index: int) -> tuple[int, int, int]:
    """(length, status, errors) of descriptor ``index``."""
    _buffer, length, _csum, status, errors, _special = struct.unpack(
        "<QHHBBH", nic.machine.memory.read(RING + 16 * index, 16)
    )
    return length, status, errors


def frame(size: int, dst: bytes = OURS) -> bytes:
    return (dst + bytes(range(256)) * (size // 256 + 1))[:size]


def test_the_length_counts_the_crc_whose_bytes_are_not_written(nic: Nic) -> None:
    ring(nic, tail=4)
    nic.machine.memory.write(BUFFERS, b"\xee" * 64)
    assert nic.dev.receive(frame(30))  # shorter than Ethernet's 60: not padded (QEMU)
    assert descriptor(nic, 0) == (34, 0x07, 0)  # DD | EOP | IXSM
    assert nic.machine.memory.read(BUFFERS, 34) == frame(30) + b"\xee" * 4
    assert (nic.rd(RDH), nic.rd(GPRC), nic.rd(TORL)) == (1, 1, 34)


def test_secrc_strips_the_crc_from_the_length(nic: Nic) -> None:
    ring(nic, tail=4, rctl=EN | BAM | SECRC)
    assert nic.dev.receive(frame(100))
    assert descriptor(nic, 0)[0] == 100


def test_a_frame_spans_descriptors_of_the_buffer_size(nic: Nic) -> None:
    ring(nic, tail=7, rctl=EN | BAM | BSIZE_256)
    assert nic.dev.receive(frame(252))  # 252 + 4 fills one 256-byte buffer exactly
    assert nic.dev.receive(frame(254))  # 254 + 4: the last 2 CRC bytes take a descriptor
    assert [descriptor(nic, i)[:2] for i in range(3)] == [(256, 0x07), (256, 0x01), (2, 0x07)]
    assert nic.rd(RDH) == 3


def test_a_reused_descriptor_keeps_its_other_status_bits(nic: Nic) -> None:
    """QEMU keeps what the descriptor held except DD and EOP: IXSM from an earlier use."""
    ring(nic, tail=0, rctl=EN | BAM | BSIZE_256)
    nic.machine.memory.write(RING + 12, bytes([0x07 | 0x20]))  # DD EOP IXSM and TCPCS
    nic.wr(RDT, 3)
    assert nic.dev.receive(frame(300))
    assert descriptor(nic, 0)[1] == 0x25  # DD kept from IXSM|TCPCS, EOP cleared


def test_too_few_descriptors_drop_the_frame_with_rxo(nic: Nic) -> None:
    ring(nic, tail=1, rctl=EN | BAM | BSIZE_256)
    nic.rd(ICR)
    assert not nic.dev.receive(frame(600))  # three descriptors needed, one free
    assert nic.rd(ICR) == RXO and nic.rd(RDH) == 0
    assert nic.rd(MPC) == 1 and nic.rd(MPC) == 1  # QEMU: MPC is not cleared by a read


def test_rxdmt0_at_the_threshold_the_reserved_rdmts_is_a_sixteenth(nic: Nic) -> None:
    ring(nic, tail=5)  # RDMTS 0: half of 8
    nic.rd(ICR)
    nic.dev.receive(frame(60))
    assert nic.rd(ICR) == RXT0 | RXDMT0  # 4 free <= 4
    nic2 = Nic()
    ring(nic2, tail=7, rctl=EN | BAM | 3 << 8)  # 11b: 1/16 of 8 descriptors: none
    nic2.rd(ICR)
    nic2.dev.receive(frame(60))
    assert nic2.rd(ICR) == RXT0


def test_long_frames_need_lpe_unless_sbp(nic: Nic) -> None:
    ring(nic, tail=7)
    assert nic.dev.receive(frame(1518)) and not nic.dev.receive(frame(1519))  # 1522 with CRC
    nic.wr(RCTL, EN | BAM | LPE)
    nic.dev.advance(RX_HOLD_MS * MS)
    assert nic.dev.receive(frame(2000))
    nic.wr(RCTL, EN | BAM | SBP)
    nic.dev.advance(RX_HOLD_MS * MS)
    assert nic.dev.receive(frame(3000))


def test_filters_broadcast_needs_bam_the_hash_takes_any_address(nic: Nic) -> None:
    ring(nic, tail=7, rctl=EN | MPE)
    assert not nic.dev.receive(frame(60, b"\xff" * 6))  # MPE does not take broadcast
    assert nic.dev.receive(b"\x93")  # shorter than an address: filtered as if zeros followed
    assert descriptor(nic, 0)[0] == 5  # and stored with its length
    assert nic.dev.receive(frame(60, bytes.fromhex("01005e000001")))
    other = bytes.fromhex("bc1a986f2040")
    assert not nic.dev.receive(frame(60, other))
    nic.wr(MTA0, 1 << 8)  # MO 0: hash of bc:1a:98:6f:20:40 is 0x402; MO 2 (below) is 8
    nic.wr(RCTL, EN | 2 << 12)
    nic.dev.advance(RX_HOLD_MS * MS)
    assert nic.dev.receive(frame(60, other))  # QEMU hashes unicast too


def test_the_backend_holds_frames_the_device_cannot_take(nic: Nic) -> None:
    """Observed in QEMU 10.2.2: a frame waits (and those after it, unread) until a flush
    point; the RCTL hold lasts 1000 ms of virtual time."""
    ring(nic, tail=0, held=True)  # ring full and RCTL's hold running
    nic.dev.offer(frame(60))
    nic.dev.offer(frame(61))
    assert nic.dev.frames_waiting == (1, 1)
    nic.dev.advance((RX_HOLD_MS - 1) * MS)
    assert nic.dev.frames_waiting == (1, 1)
    nic.wr(RDT, 0)  # leaves no free descriptor: no flush
    nic.dev.advance(MS)  # the hold is over: the queued frame meets a full ring: RXO
    assert nic.dev.frames_waiting == (1, 0) and nic.rd(MPC) == 1  # the next one read, queued
    nic.wr(RDT, 3)  # a flush point
    assert nic.dev.frames_waiting == (0, 0) and nic.rd(RDH) == 1


def test_frames_queued_while_the_receiver_is_off_are_dropped_at_the_flush(nic: Nic) -> None:
    ring(nic, tail=4, rctl=BAM)
    nic.dev.offer(frame(60))
    assert nic.dev.frames_waiting == (1, 0)
    nic.wr(RDT, 5)  # flush: the receiver is off, the frame is dropped (no counter)
    assert nic.dev.frames_waiting == (0, 0) and nic.rd(MPC) == 0 and nic.rd(RDH) == 0

"""Transmit and receive with legacy descriptors (SDM 3.2-3.4), DMA through guest RAM."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from refemu_nic import Nic

ICR, IMS, RCTL, TCTL = 0x00C0, 0x00D0, 0x0100, 0x0400
TDBAL, TDBAH, TDLEN, TDH, TDT = 0x3800, 0x3804, 0x3808, 0x3810, 0x3818
RDBAL, RDBAH, RDLEN, RDH, RDT = 0x2800, 0x2804, 0x2808, 0x2810, 0x2818
TPT, GPTC, TOTL, TOTH, TPR, GPRC, RNBC = 0x40D4, 0x4080, 0x40C8, 0x40CC, 0x40D0, 0x4074, 0x40A0
TXDW, TXQE, RXO, RXT0 = 1 << 0, 1 << 1, 1 << 6, 1 << 7
EOP, RS, RPS = 0x01, 0x08, 0x10
GOTCL, PTC64, BPTC = 0x4090, 0x40D8, 0x40F4
TX_RING, RX_RING, BUFFERS = 0x10000, 0x20000, 0x100000
DESCS = 8  # the smallest ring TDLEN allows (128 bytes)


def setup_tx(nic: Nic) -> None:
    nic.wr(TDBAL, TX_RING)
    nic.wr(TDBAH, 0)
    nic.wr(TDLEN, DESCS * 16)
    nic.wr(TDH, 0)
    nic.wr(TDT, 0)
    nic.wr(TCTL, 1 << 1)  # EN


def put_tx(nic: Nic, index: int, payload: bytes, cmd: int) -> None:
    buffer = BUFFERS + index * 0x800
    nic.machine.memory.write(buffer, payload)
    nic.machine.memory.write(
        TX_RING + 16 * index, struct.pack("<QHBBBBH", buffer, len(payload), 0, cmd, 0, 0, 0)
    )


def tx_status(nic: Nic, index: int) -> int:
    return nic.machine.memory.read(TX_RING + 16 * index + 12, 1)[0]


def test_transmit_hands_frame_to_sink_writes_dd_and_sets_txdw(nic: Nic) -> None:
    sent: list[bytes] = []
    nic.dev.tx_sink = sent.append
    setup_tx(nic)
    nic.rd(ICR)
    frame = bytes(range(60))
    put_tx(nic, 0, frame[:20], 0)
    put_tx(nic, 1, frame[20:], EOP | RS)
    nic.wr(TDT, 2)
    assert sent == [frame]
    assert nic.rd(TDH) == 2
    assert tx_status(nic, 0) & 1 == 0  # no RS: no write-back
    assert tx_status(nic, 1) & 1 == 1  # DD
    assert nic.rd(ICR) & (TXDW | TXQE) == TXDW | TXQE


def test_writeback_is_one_dword_write_keeping_css_and_special(nic: Nic) -> None:
    """Observed in QEMU 10.2.2: one 4-byte DMA write, STA | DD, CSS and special as fetched."""
    transfers: list[tuple[str, int, bytes]] = []
    nic.dev.pci.dma_listeners.append(lambda op, addr, data: transfers.append((op, addr, data)))
    setup_tx(nic)
    nic.machine.memory.write(BUFFERS, bytes(60))
    descriptor = struct.pack("<QHBBBBH", BUFFERS, 60, 0, EOP | RS, 0xF0, 0x12, 0x3456)
    nic.machine.memory.write(TX_RING, descriptor)
    nic.wr(TDT, 1)
    assert transfers == [
        ("read", TX_RING, descriptor),
        ("read", BUFFERS, bytes(60)),
        ("write", TX_RING + 12, bytes([0xF1, 0x12, 0x56, 0x34])),
    ]


def test_transmit_statistics_count_and_clear(nic: Nic) -> None:
    setup_tx(nic)
    put_tx(nic, 0, b"\x02" * 60, EOP | RS)
    nic.wr(TDT, 1)
    assert (nic.rd(TPT), nic.rd(GPTC)) == (1, 1)
    assert nic.rd(TOTL) == 64  # octets include the 4-byte CRC
    assert nic.rd(TOTH) == 0
    assert (nic.rd(TPT), nic.rd(GPTC), nic.rd(TOTL)) == (0, 0, 0)


def test_gated_transmit_statistics_are_counted_but_read_zero(nic: Nic) -> None:
    """QEMU counts GOTC, the PTC buckets and BPTC/MPTC, but their access flag is never set,
    so guests read 0 (issue 16 #9: not "no network backend"). The model counts them as
    the SDM says and lets the register map's gating hide them."""
    setup_tx(nic)
    put_tx(nic, 0, b"\xff" * 6 + bytes(54), EOP | RS)  # a 60-byte broadcast frame
    nic.wr(TDT, 1)
    dev = nic.dev
    assert (dev.reg("GOTCL"), dev.reg("PTC64"), dev.reg("BPTC"), dev.reg("MPTC")) == (64, 1, 1, 0)
    assert [nic.rd(GOTCL), nic.rd(PTC64), nic.rd(BPTC)] == [0, 0, 0]
    assert nic.rd(TPT) == 1


def test_writeback_for_rps_clears_the_error_bits(nic: Nic) -> None:
    """QEMU writes back for RPS as for RS, with DD set and EC, LC, TU cleared (issue 16 #10)."""
    transfers: list[tuple[str, int, bytes]] = []
    nic.dev.pci.dma_listeners.append(lambda op, addr, data: transfers.append((op, addr, data)))
    setup_tx(nic)
    nic.rd(ICR)
    nic.machine.memory.write(BUFFERS, bytes(60))
    descriptor = struct.pack("<QHBBBBH", BUFFERS, 60, 0, EOP | RPS, 0xFE, 0x12, 0x3456)
    nic.machine.memory.write(TX_RING, descriptor)
    nic.wr(TDT, 1)
    assert transfers[-1] == ("write", TX_RING + 12, bytes([0xF1, 0x12, 0x56, 0x34]))
    assert nic.rd(ICR) & TXDW


def test_disabled_transmitter_does_not_fetch(nic: Nic) -> None:
    setup_tx(nic)
    nic.wr(TCTL, 0)
    put_tx(nic, 0, b"\x02" * 60, EOP | RS)
    nic.wr(TDT, 1)
    assert nic.rd(TDH) == 0 and nic.dev.transmitted == []
    nic.wr(TCTL, 1 << 1)  # enabling it processes what is pending
    assert nic.rd(TDH) == 1 and len(nic.dev.transmitted) == 1


@settings(max_examples=30)
@given(st.lists(st.integers(1, DESCS - 1), min_size=1, max_size=6))
def test_tx_ring_wraps_around(batches: list[int]) -> None:
    nic = Nic()
    setup_tx(nic)
    head = sent = 0
    for batch in batches:
        for i in range(batch):
            index = (head + i) % DESCS
            put_tx(nic, index, bytes([sent + i & 0xFF]) * 64, EOP | RS)
        nic.rd(ICR)
        head = (head + batch) % DESCS
        nic.wr(TDT, head)
        assert nic.rd(TDH) == head
        sent += batch
        assert nic.rd(ICR) & TXDW
        assert all(tx_status(nic, (head - 1 - k) % DESCS) & 1 for k in range(batch))
    assert [f[0] for f in nic.dev.transmitted] == [i & 0xFF for i in range(sent)]


def setup_rx(nic: Nic, tail: int) -> None:
    for i in range(DESCS):
        nic.machine.memory.write(
            RX_RING + 16 * i, struct.pack("<QQ", BUFFERS + 0x10000 + i * 0x800, 0)
        )
    nic.wr(RDBAL, RX_RING)
    nic.wr(RDBAH, 0)
    nic.wr(RDLEN, DESCS * 16)
    nic.wr(RDH, 0)
    nic.wr(RDT, tail)
    nic.wr(RCTL, 1 << 1 | 1 << 15)  # EN, BAM; 2048-byte buffers


def test_injected_frame_lands_at_rdh(nic: Nic) -> None:
    setup_rx(nic, tail=4)
    nic.wr(IMS, RXT0)
    frame = (
        bytes.fromhex("525400123456")
        + bytes.fromhex("020000000001")
        + b"\x08\x00"
        + bytes(range(100))
    )
    assert nic.dev.receive(frame)
    length, _csum, status, errors, _special = struct.unpack(
        "<HHBBH", nic.machine.memory.read(RX_RING + 8, 8)
    )
    # The length counts the CRC (RCTL.SECRC clear), whose bytes are not written (observed
    # in QEMU 10.2.2); DD | EOP | IXSM.
    assert length == len(frame) + 4 and status == 0x07 and errors == 0
    assert nic.machine.memory.read(BUFFERS + 0x10000, len(frame) + 4) == frame + bytes(4)
    assert nic.rd(RDH) == 1
    assert nic.rd(ICR) & RXT0
    assert (nic.rd(TPR), nic.rd(GPRC)) == (1, 1)


def test_frame_for_someone_else_is_filtered(nic: Nic) -> None:
    setup_rx(nic, tail=4)
    assert not nic.dev.receive(bytes.fromhex("02aabbccddee") + bytes(60))
    assert nic.rd(RDH) == 0


def test_no_descriptors_drops_the_frame(nic: Nic) -> None:
    setup_rx(nic, tail=0)  # head == tail: the ring is empty
    assert not nic.dev.receive(b"\xff" * 6 + bytes(60))
    assert nic.rd(RDH) == 0
    assert nic.dev.reg("RNBC") == 1  # counted, but gated in QEMU: a guest reads 0
    assert nic.rd(RNBC) == 0
    assert nic.rd(ICR) & RXO


def test_ring_base_low_bits_read_back_but_dma_ignores_them(nic: Nic) -> None:
    """Observed in QEMU 10.2.2 (issue 13): TDBAL/RDBAL keep bits 3:0 as written (the SDM
    has them read 0); the descriptor fetch still starts at the 16-byte aligned base."""
    setup_tx(nic)
    nic.wr(TDBAL, TX_RING | 0xF)
    nic.wr(RDBAL, RX_RING | 0x9)
    assert (nic.rd(TDBAL), nic.rd(RDBAL)) == (TX_RING | 0xF, RX_RING | 0x9)
    put_tx(nic, 0, b"\x02" * 60, EOP | RS)
    nic.wr(TDT, 1)
    assert tx_status(nic, 0) & 1 == 1  # DD written at TX_RING + 12, not TX_RING + 0xF + 12
    assert nic.rd(TPT) == 1


def test_a_pass_from_beyond_the_ring_runs_one_descriptor(nic: Nic) -> None:
    """Observed in QEMU 10.2.2 (issue 13): TDH beyond TDLEN processes the descriptor at TDH,
    wraps the head to 0 and stops there, whatever TDT is (the model used to loop)."""
    setup_tx(nic)
    for index in range(DESCS):
        put_tx(nic, index, b"\x02" * 60, EOP | RS)
    nic.wr(TDH, 100)
    nic.wr(TDT, 50)
    assert nic.rd(TDH) == 0
    assert [tx_status(nic, i) & 1 for i in range(DESCS)] == [0] * DESCS
    nic.wr(TDLEN, 0)
    nic.wr(TDH, 5)
    nic.wr(TDT, 3)
    assert nic.rd(TDH) == 0 and tx_status(nic, 5) & 1 == 1 and tx_status(nic, 0) & 1 == 0

"""Interrupt cause/mask logic (SDM 13.4.17-13.4.21) and the INTx line."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from refemu_nic import Nic

ICR, ICS, IMS, IMC = 0x00C0, 0x00C8, 0x00D0, 0x00D8
TXDW, TXQE, LSC = 1 << 0, 1 << 1, 1 << 2


def test_ims_reads_back_after_writing_0x1f_and_icr_starts_clear(nic: Nic) -> None:
    nic.wr(IMS, 0x1F)  # what the probe guest did in QEMU 10.2.2
    assert nic.rd(IMS) == 0x1F
    assert nic.rd(ICR) == 0


def test_ics_sets_causes_and_icr_read_clears_them(nic: Nic) -> None:
    nic.wr(ICS, TXDW | LSC)
    assert nic.rd(ICR) == TXDW | LSC
    assert nic.rd(ICR) == 0


def test_line_follows_icr_and_ims(nic: Nic) -> None:
    edges: list[bool] = []
    nic.dev.irq.subscribe(edges.append)
    nic.wr(ICS, LSC)
    assert not nic.dev.irq_level  # masked
    nic.wr(IMS, LSC)
    assert nic.dev.irq_level
    nic.wr(IMC, LSC)
    assert not nic.dev.irq_level
    nic.wr(IMS, LSC)
    nic.rd(ICR)  # reading clears the cause and drops the line
    assert not nic.dev.irq_level
    assert edges == [True, False, True, False]


def test_ims_sets_and_imc_clears_only_named_bits(nic: Nic) -> None:
    nic.wr(IMS, TXDW | TXQE)
    nic.wr(IMS, LSC)
    assert nic.rd(IMS) == TXDW | TXQE | LSC
    nic.wr(IMC, TXQE)
    assert nic.rd(IMS) == TXDW | LSC


def test_icr_write_one_clears(nic: Nic) -> None:
    nic.wr(ICS, TXDW | LSC)
    nic.wr(ICR, TXDW)
    assert nic.rd(ICR) == LSC


CAUSE_BITS = 0x1F6DF  # the cause bits the SDM defines for ICR/IMS (bits 0-4, 6-7, 9-10, 12-16)
_ops = st.lists(
    st.tuples(st.sampled_from(["ics", "ims", "imc", "icr"]), st.integers(0, 0xFFFFFFFF)),
    max_size=30,
)


@given(_ops)
def test_line_level_is_icr_and_ims_for_any_sequence(ops: list[tuple[str, int]]) -> None:
    nic = Nic()
    icr = ims = 0
    for op, value in ops:
        value &= CAUSE_BITS
        if op == "ics":
            nic.wr(ICS, value)
            icr |= value
        elif op == "ims":
            nic.wr(IMS, value)
            ims |= value
        elif op == "imc":
            nic.wr(IMC, value)
            ims &= ~value
        else:
            assert nic.rd(ICR) == icr
            icr = 0
        assert nic.dev.irq_level == bool(icr & ims)
    assert nic.rd(IMS) == ims

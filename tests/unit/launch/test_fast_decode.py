"""The fast collector's offline decoding: tsave frames, the raw-block unwind, self-checks."""

from __future__ import annotations

import struct

import pytest

from qtrace.launch.fast.checks import FALLBACK_HINT, FastChecks
from qtrace.launch.fast.tsave import (
    AGENT_REGBLOCK_BYTES,
    AMD64_REG_OFFSETS,
    TsaveFormatError,
    parse_tsave,
)
from qtrace.launch.fast.unwind import TCG_FRAME, unwind


def _regblock(**regs: int) -> bytes:
    block = bytearray(AGENT_REGBLOCK_BYTES)
    for name, value in regs.items():
        offset = AMD64_REG_OFFSETS[name]
        block[offset : offset + 8] = value.to_bytes(8, "little")
    return bytes(block)


def _frame(tracepoint: int, body: bytes) -> bytes:
    return struct.pack("<HI", tracepoint, len(body)) + body


def _file(*frames: bytes) -> bytes:
    header = b"\x7fTRACE0\nR 974\nstatus 0;tfull:0;tframes:3;tsize:a00000\ntp T1:55:E:0:0\n\n"
    return header + b"".join(frames) + b"\0\0"


def test_frames_give_registers_memory_and_variables_with_the_agent_layout() -> None:
    body = (
        b"R" + _regblock(rdi=0x1234, rsi=8, rsp=0x7000, rip=0x5555_0000_1000)
        + b"M" + struct.pack("<QH", 0x7000, 4) + b"\x01\x02\x03\x04"
        + b"V" + struct.pack("<iq", 2, 99)
    )
    trace = parse_tsave(_file(_frame(1, body), _frame(2, bytes(300))))
    first, zeroed = trace.frames
    assert first.tracepoint == 1
    regs = first.regs
    assert (regs["rdi"], regs["rsi"], regs["rip"]) == (0x1234, 8, 0x5555_0000_1000)
    assert first.block_at(0x7000) == b"\x01\x02\x03\x04"
    assert first.variables == {2: 99}
    assert zeroed.zeroed and not zeroed.regs


def test_an_unknown_block_is_undecodable_not_a_crash() -> None:
    trace = parse_tsave(_file(_frame(1, b"Qxyz")))
    assert trace.frames[0].undecodable is not None


@pytest.mark.parametrize(
    "data", [b"not a trace", b"\x7fTRACE0\nR 10\n", _file()[:-2] + b"\x01\x00\xff"]
)
def test_bad_files_are_refused(data: bytes) -> None:
    with pytest.raises(TsaveFormatError):
        parse_tsave(data)


def _stack(base: int, words: dict[int, int], size: int = 0x800) -> bytes:
    block = bytearray(size)
    for addr, value in words.items():
        block[addr - base : addr - base + 8] = value.to_bytes(8, "little")
    return bytes(block)


def test_the_frame_pointer_chain_is_followed_inside_the_block() -> None:
    base = 0x7000
    block = _stack(base, {0x7010: 0x7040, 0x7018: 0xA1, 0x7040: 0x7080, 0x7048: 0xA2,
                          0x7080: 0x9000, 0x7088: 0xA3})
    assert unwind(0xA0, 0x7010, base, block, lambda pc: False) == (0xA0, 0xA1, 0xA2, 0xA3)


def test_a_return_into_generated_code_takes_the_tcg_rule() -> None:
    """The helper's saved rbp is env, not a frame: the TCG frame's caller is found by rule."""
    base = 0x7000
    helper_rbp = 0x7020
    cfa = helper_rbp + 16 + TCG_FRAME.cfa_offset
    block = _stack(base, {helper_rbp: 0xDEAD_BEEF, helper_rbp + 8: 0xC0DE,
                          cfa - 8: 0xB1, cfa + TCG_FRAME.saved_rbp_at: cfa + 0x20,
                          cfa + 0x28: 0xB2, cfa + 0x20: 0x1_0000}, size=0x1000)
    pcs = unwind(0xA0, helper_rbp, base, block, lambda pc: pc == 0xC0DE)
    assert pcs == (0xA0, 0xC0DE, 0xB1, 0xB2)


def test_checks_say_what_was_lost_and_point_to_the_breakpoint_collector() -> None:
    clean = FastChecks(10, 10, 10, 0, 0, False)
    assert clean.ok and "hint" not in clean.record()
    lossy = FastChecks(12, 10, 9, 1, 0, True)
    record = lossy.record()
    assert record["ok"] is False and record["hint"] == FALLBACK_HINT
    assert len(lossy.problems()) == 3


def test_a_frame_with_no_data_is_zeroed() -> None:
    """gdbserver's full buffer still takes a few frames' headers, with no data."""
    frames = parse_tsave(_file(_frame(1, b"V" + struct.pack("<iq", 3, 7)), _frame(1, b""))).frames
    assert [f.zeroed for f in frames] == [False, True]
    assert frames[0].variables == {3: 7}

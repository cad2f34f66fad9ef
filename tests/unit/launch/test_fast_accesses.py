"""Pairing a fast run's handler entries with the read values, from synthetic frames."""

from __future__ import annotations

from qtrace.launch.fast.decode import Role, decode_accesses
from qtrace.launch.fast.tsave import Frame

OPAQUE = 0x5555_0000_1C20
ROLES = {2: Role("read", "dev_read"), 3: Role("write", "dev_write"), 4: Role("value")}


def _regs(**values: int) -> dict[str, int]:
    regs = dict.fromkeys(("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip"), 0)
    regs.update(values)
    return regs


def _entry(index: int, tp: int, rbp: int, accessor_rbp: int, **args: int) -> Frame:
    rsp = rbp - 0x30
    block = bytearray(0x100)
    block[0x30:0x38] = accessor_rbp.to_bytes(8, "little")
    regs = _regs(rip=0x5555_0000_009F, rbp=rbp, rsp=rsp, rdi=OPAQUE, **args)
    return Frame(index, tp, regs, ((rsp, bytes(block)),))


def test_a_read_gets_the_value_of_its_own_accessor_frame() -> None:
    frames = (
        _entry(0, 2, 0x7000, 0x7100, rsi=8, rdx=4),
        Frame(1, 4, _regs(rbp=0x7900, rcx=0xDEAD)),  # another device's read: ignored
        Frame(2, 4, _regs(rbp=0x7100, rcx=0x80080783)),
        _entry(3, 3, 0x7000, 0x7100, rsi=0xD0, rdx=0x1F, rcx=4),
        _entry(4, 2, 0x7000, 0x7100, rsi=0xC0, rdx=4),
        Frame(5, 4, _regs(), zeroed=True),
    )
    decoded = decode_accesses(frames, ROLES, {OPAQUE}, lambda pc: False)
    got = [(a.op, a.offset, a.size, a.value) for a in decoded.accesses]
    assert got == [("read", 8, 4, 0x80080783), ("write", 0xD0, 4, 0x1F), ("read", 0xC0, 4, None)]
    assert decoded.reads_without_value == 1


def test_other_devices_entries_are_left_out() -> None:
    frame = _entry(0, 3, 0x7000, 0x7100, rsi=0, rdx=1, rcx=4)
    decoded = decode_accesses((frame,), ROLES, {OPAQUE + 8}, lambda pc: False)
    assert decoded.accesses == []

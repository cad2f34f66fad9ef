"""Reading a fast run's accessor frames as device accesses, from synthetic frames laid out
as the debug build's accessors lay out theirs (arguments spilled below ``rbp``)."""

from __future__ import annotations

from qtrace.launch.fast.decode import Role, decode_accesses
from qtrace.launch.fast.tsave import Frame

MR, OTHER_MR = 0x5555_0000_1C20, 0x5555_0000_9000
SLOTS = {"rdi": -0x28, "rsi": -0x30, "rcx": -0x3C}
READ = Role("read", SLOTS, "rcx")
WRITE = Role("write", SLOTS, "rdi", "rsi", "rdx")
ROLES = {1: READ, 2: WRITE, 3: Role("arm")}
RBP = 0x7000
RSP = RBP - 0x50
VALUE_AT = 0x6F00


def _regs(**values: int) -> dict[str, int]:
    regs = dict.fromkeys(("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9"), 0)
    regs.update(rip=0x5555_0000_00A0, rbp=RBP, rsp=RSP, **values)
    return regs


def _block(mr: int, offset: int, size: int) -> bytes:
    block = bytearray(0x100)
    for slot, value in ((-0x28, mr), (-0x30, offset)):
        at = RBP + slot - RSP
        block[at : at + 8] = value.to_bytes(8, "little")
    at = RBP - 0x3C - RSP
    block[at : at + 8] = (0xDEAD_0000_0000_0000 | size).to_bytes(8, "little")  # a u32 slot
    return bytes(block)


def _read(index: int, mr: int, offset: int, value: int) -> Frame:
    return Frame(index, 1, _regs(rcx=value), ((RSP, _block(mr, offset, 4)),))


def _write(index: int, mr: int, offset: int, stored: int, shift: int, mask: int) -> Frame:
    memory = ((RSP, _block(mr, offset, 4)), (VALUE_AT, stored.to_bytes(8, "little")))
    return Frame(index, 2, _regs(rdi=VALUE_AT, rsi=shift, rdx=mask), memory)


def test_reads_and_writes_of_the_device_decode_in_order_after_the_marker() -> None:
    frames = (
        _read(0, MR, 0x8, 0x1),  # firmware, before the start marker
        Frame(1, 3, _regs()),
        _read(2, MR, 0x8, 0x80080783),
        _read(3, OTHER_MR, 0x0, 0xFF),  # another device's region
        _write(4, MR, 0xD0, 0x1F, 0, 0xFFFFFFFF),
        _write(5, MR, 0xD4, 0xAABB_CCDD_0000_0000, 32, 0xFFFFFFFF),  # upper half of 8 bytes
        Frame(6, 1, {}, zeroed=True),
    )
    decoded = decode_accesses(frames, ROLES, {MR}, lambda pc: False)
    got = [(a.op, a.offset, a.size, a.value) for a in decoded.accesses]
    assert got == [("read", 0x8, 4, 0x80080783), ("write", 0xD0, 4, 0x1F),
                   ("write", 0xD4, 4, 0xAABBCCDD)]  # fmt: skip
    assert (decoded.before_arming, decoded.other_devices) == (1, 1)


def test_a_negative_shift_shifts_left() -> None:
    frame = _write(0, MR, 0, 0xAB, (1 << 32) - 8, 0xFFFF)  # shift -8 as a 32-bit int
    [access] = decode_accesses((frame,), {2: WRITE}, {MR}, lambda pc: False).accesses
    assert access.value == 0xAB00


def test_a_frame_without_its_stack_words_or_value_block_is_counted_not_guessed() -> None:
    no_block = Frame(0, 1, _regs(rcx=1))
    no_value = Frame(1, 2, _regs(rdi=VALUE_AT), ((RSP, _block(MR, 0, 4)),))
    decoded = decode_accesses((no_block, no_value), {1: READ, 2: WRITE}, {MR}, lambda pc: False)
    assert decoded.accesses == [] and decoded.frames_without_arguments == 2

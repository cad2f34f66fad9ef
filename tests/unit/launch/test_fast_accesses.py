"""Reading a fast run's frames as device accesses, from synthetic frames whose trace state
variables and stack block are laid out as the actions (qtrace.launch.fast.actions) collect
them."""

from __future__ import annotations

from qtrace.launch.fast.actions import variables
from qtrace.launch.fast.decode import Role, decode_accesses, variable_numbers
from qtrace.launch.fast.tsave import Frame
from tests.unit.launch.fast_frames import BP, SP, chain

MR, OTHER_MR = 0x5555_0000_1C20, 0x5555_0000_9000
READ_AT, WRITE_AT = 0x5555_0000_04DF, 0x5555_0000_067F
ROLES = {1: Role("read", address=READ_AT), 2: Role("write", address=WRITE_AT),
         3: Role("arm", address=0x5555_0000_0234)}  # fmt: skip
ACCESSORS_ONLY = {n: r for n, r in ROLES.items() if r.kind != "arm"}  # armed from the start
NUMBERS = {name: number for number, name in enumerate(variables(), start=2)}




def _frame(index: int, tp: int, block: bytes = b"", **values: int) -> Frame:
    got = {f"q_{k}": v for k, v in values.items()}
    memory = ((got["q_sp"], block or bytes(0x100)),) if "q_sp" in got else ()
    return Frame(index, tp, memory=memory, variables={NUMBERS[k]: v for k, v in got.items()})




def _read(index: int, mr: int, off: int, val: int, block: bytes = b"") -> Frame:
    return _frame(index, 1, block, mr=mr, off=off, size=4, val=val, sp=SP, bp=BP)


def test_the_header_names_each_variables_number() -> None:
    header = ("R 970", "tsv 1:0:1:74726163655f74696d657374616d70", "tsv 2:0:0:715f6d72")
    assert variable_numbers(header) == {"trace_timestamp": 1, "q_mr": 2}


def test_reads_and_writes_of_the_device_decode_in_order_after_the_marker() -> None:
    block = chain((BP + 0x20, 0xA1), (BP + 0x40, 0xA2), (0, 0xA3))
    frames = (
        _read(0, MR, 0x8, 0x1),  # firmware, before the start marker
        _frame(1, 3, sp=SP),
        _read(2, MR, 0x8, 0x80080783, block),
        _read(3, OTHER_MR, 0x0, 0xFF),  # another device's region
        _frame(4, 2, mr=MR, off=0xD0, size=4, val=0x1F, shift=0, mask=0xFFFFFFFF, sp=SP, bp=BP),
        _frame(5, 2, mr=MR, off=0xD4, size=4, val=-0x5544_3323_0000_0000, shift=32,
               mask=0xFFFFFFFF, sp=SP, bp=BP),  # the agent's signed 64 bits: 0xAABBCCDD...
        Frame(6, 1, zeroed=True),
    )  # fmt: skip
    decoded = decode_accesses(frames, ROLES, {MR}, NUMBERS, lambda pc: False)
    got = [(a.op, a.offset, a.size, a.value) for a in decoded.accesses]
    assert got == [("read", 0x8, 4, 0x80080783), ("write", 0xD0, 4, 0x1F),
                   ("write", 0xD4, 4, 0xAABBCCDD)]  # fmt: skip
    assert decoded.accesses[0].pcs == (READ_AT, 0xA1, 0xA2, 0xA3)  # unwound from the block
    assert decoded.accesses[0].sp == SP
    assert (decoded.before_arming, decoded.other_devices) == (1, 1)


def test_a_negative_shift_shifts_left() -> None:
    frame = _frame(0, 2, mr=MR, off=0, size=2, val=0xAB, shift=(1 << 32) - 8, mask=0xFFFF,
                   sp=SP, bp=BP)  # fmt: skip
    [access] = decode_accesses((frame,), ACCESSORS_ONLY, {MR}, NUMBERS, lambda pc: False).accesses
    assert access.value == 0xAB00


def test_a_frame_without_its_values_is_counted_not_guessed() -> None:
    no_value = _frame(0, 1, mr=MR, off=0, size=4, sp=SP, bp=BP)
    no_mask = _frame(1, 2, mr=MR, off=0, size=4, val=1, shift=0, sp=SP, bp=BP)
    no_block = Frame(2, 1, variables={NUMBERS[f"q_{k}"]: 1 for k in ("mr", "off", "size", "val",
                                                                     "sp", "bp")})  # fmt: skip
    decoded = decode_accesses((no_value, no_mask, no_block), ACCESSORS_ONLY, {MR}, NUMBERS,
                              lambda pc: False)  # fmt: skip
    assert decoded.accesses == [] and decoded.frames_without_values == 3

"""Reading a fast run's frames as device accesses, from synthetic frames whose trace state
variables are laid out as the actions (qtrace.launch.fast.actions) set them."""

from __future__ import annotations

from qtrace.launch.fast.actions import variables
from qtrace.launch.fast.decode import Role, decode_accesses, variable_numbers
from qtrace.launch.fast.tsave import Frame

MR, OTHER_MR = 0x5555_0000_1C20, 0x5555_0000_9000
READ_AT, WRITE_AT = 0x5555_0000_04DF, 0x5555_0000_067F
ROLES = {1: Role("read", address=READ_AT), 2: Role("write", address=WRITE_AT),
         3: Role("arm", address=0x5555_0000_0234)}  # fmt: skip
ACCESSORS_ONLY = {n: r for n, r in ROLES.items() if r.kind != "arm"}  # armed from the start
NUMBERS = {name: number for number, name in enumerate(variables(), start=2)}


def _frame(index: int, tp: int, chain: tuple[int, ...] = (), **values: int) -> Frame:
    got = {f"q_{k}": v for k, v in values.items()}
    for k, (ret, hop) in enumerate(chain, start=1):
        got[f"q_r{k}"], got[f"q_g{k}"] = ret, hop
    return Frame(index, tp, variables={NUMBERS[k]: v for k, v in got.items()})


def _read(index: int, mr: int, off: int, val: int, chain: tuple[int, ...] = ()) -> Frame:
    return _frame(index, 1, chain, mr=mr, off=off, size=4, val=val, sp=0x7F00)


def test_the_header_names_each_variables_number() -> None:
    header = ("R 970", "tsv 1:0:1:74726163655f74696d657374616d70", "tsv 2:0:0:715f6d72")
    assert variable_numbers(header) == {"trace_timestamp": 1, "q_mr": 2}


def test_reads_and_writes_of_the_device_decode_in_order_after_the_marker() -> None:
    chain = ((0xA1, 0), (0xA2, 0xB2), (0xA3, 0), (0, 0))  # a TCG hop after the second
    frames = (
        _read(0, MR, 0x8, 0x1),  # firmware, before the start marker
        _frame(1, 3, sp=0x7F00),
        _read(2, MR, 0x8, 0x80080783, chain),
        _read(3, OTHER_MR, 0x0, 0xFF),  # another device's region
        _frame(4, 2, mr=MR, off=0xD0, size=4, val=0x1F, shift=0, mask=0xFFFFFFFF, sp=1),
        _frame(5, 2, mr=MR, off=0xD4, size=4, val=-0x5544_3323_0000_0000, shift=32,
               mask=0xFFFFFFFF, sp=1),  # the agent's signed 64 bits: 0xAABBCCDD00000000
        Frame(6, 1, zeroed=True),
    )  # fmt: skip
    decoded = decode_accesses(frames, ROLES, {MR}, NUMBERS)
    got = [(a.op, a.offset, a.size, a.value) for a in decoded.accesses]
    assert got == [("read", 0x8, 4, 0x80080783), ("write", 0xD0, 4, 0x1F),
                   ("write", 0xD4, 4, 0xAABBCCDD)]  # fmt: skip
    assert decoded.accesses[0].pcs == (READ_AT, 0xA1, 0xA2, 0xB2, 0xA3)
    assert decoded.accesses[0].sp == 0x7F00
    assert (decoded.before_arming, decoded.other_devices) == (1, 1)


def test_a_negative_shift_shifts_left() -> None:
    frame = _frame(0, 2, mr=MR, off=0, size=2, val=0xAB, shift=(1 << 32) - 8, mask=0xFFFF, sp=1)
    [access] = decode_accesses((frame,), ACCESSORS_ONLY, {MR}, NUMBERS).accesses
    assert access.value == 0xAB00


def test_a_frame_without_its_values_is_counted_not_guessed() -> None:
    no_value = _frame(0, 1, mr=MR, off=0, size=4, sp=1)
    no_mask = _frame(1, 2, mr=MR, off=0, size=4, val=1, shift=0, sp=1)
    decoded = decode_accesses((no_value, no_mask), ACCESSORS_ONLY, {MR}, NUMBERS)
    assert decoded.accesses == [] and decoded.frames_without_values == 2
